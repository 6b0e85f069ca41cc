// Package net holds what makes a virtual server's IP address and network
// name follow it from node to node, so that clients keep using them while
// the server behind them changes. It is documentation only; the mechanisms
// are its subpackages, which the IP Address and Network Name resource types
// call:
//
//	vip        add and remove a virtual IPv4 or IPv6 address (netlink), on the
//	           interface named or on the one whose subnet holds it (IPaddr2's
//	           findif); a duplicate check first
//	announce   the duplicate check (ARP probe, RFC 5227; IPv6 DAD, RFC 4862)
//	           and the announcements that move clients at once (gratuitous
//	           ARP in request and reply form; unsolicited neighbour
//	           advertisements with the override flag)
//	linkwatch  reports carrier loss, the link going down or away, and the
//	           address vanishing, from a netlink subscription
//	mdns       an mDNS responder for the network name (RFC 6762)
//	dnsupdate  the network name in a DNS zone: RFC 2136 updates signed with
//	           TSIG (RFC 8945), with an ownership prerequisite
//
// Every constructor opens the sockets and netlink handles it needs in the
// network namespace of the calling thread; nothing afterwards depends on the
// thread a goroutine runs on. docs/net.md describes the defaults and the
// figures measured in network namespaces.
package net
