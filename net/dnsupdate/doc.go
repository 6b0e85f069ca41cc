// Package dnsupdate keeps a virtual server's network name in a DNS zone:
// RFC 2136 dynamic updates signed with TSIG (RFC 8945) replace the name's A
// and AAAA records when it comes online and remove them when it goes
// offline.
//
// # Ownership
//
// Next to its addresses the name carries a TXT record,
// "wolfpack-owner=<Owner>", where Owner names the virtual server (for
// example cluster/group), not the node: any node bringing that virtual
// server online may replace its addresses, and nobody else may. Every update
// carries a prerequisite (RFC 2136 §2.4) that the server checks atomically
// with the change:
//
//   - Register tries "name not in use" (§2.4.5) and adds the owner TXT and
//     the addresses. If the name is in use (YXDOMAIN), it tries again with
//     "the TXT RRset is exactly our owner record" (§2.4.2) and replaces the
//     A and AAAA RRsets. If that fails too (NXRRSET) the name belongs to
//     someone else, registered by hand or by another owner later than us:
//     nothing is changed and the error names the owner found.
//   - Deregister deletes the A, AAAA and TXT RRsets under the same
//     ownership prerequisite; a name that has no owner record any more is
//     already gone, one with another owner is left alone.
package dnsupdate
