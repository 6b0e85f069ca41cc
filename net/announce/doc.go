// Package announce checks that an address is free on the segment and tells
// the segment who owns it: ARP probes and announcements for IPv4 (RFC 826,
// RFC 5227), Duplicate Address Detection and unsolicited Neighbor
// Advertisements for IPv6 (RFC 4861, RFC 4862).
//
// Frames are built and read whole on packet sockets (AF_PACKET), so a probe
// can go out from the unspecified address before the address exists on the
// host and an interface without any IPv4 or IPv6 address can still announce.
package announce
