// Package netname is the network_name resource type: a virtual server's
// name answered by an mDNS responder (net/mdns) or registered in a DNS zone
// by dynamic update (net/dnsupdate) (docs/resources.md, docs/net.md).
package netname
