// Package mdns answers for a virtual server's network name on one
// interface by Multicast DNS (RFC 6762): it probes for the name (§8.1),
// announces its A and AAAA records at least twice with the cache-flush bit
// (§8.3, §10.2), answers A, AAAA and ANY queries (multicast, unicast on the
// QU bit, and legacy unicast for one-shot resolvers such as dig, §6.7), and
// sends goodbyes with TTL 0 when it stops (§10.1), so that clients drop
// the old answer at once instead of at its TTL.
//
// It serves over IPv4 (224.0.0.251) and IPv6 (ff02::fb); both carry the A
// and AAAA records. Not implemented: conflict tie-breaking between two
// hosts probing at the same moment (§8.2: the cluster gives a name one
// owner) and negative answers (NSEC, §6.1).
package mdns
