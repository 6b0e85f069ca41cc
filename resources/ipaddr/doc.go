// Package ipaddr is the ip_address resource type: a virtual address added
// with net/vip, announced with net/announce and watched with net/linkwatch
// (docs/resources.md, docs/net.md).
package ipaddr
