// Package probe holds a client's instruments for the failover tests of
// both rigs (testbed/nscluster in namespaces, testbed/matrix in QEMU
// guests): Prober sends a sequence-numbered datagram to the echo server
// (testbed/probe/echo) every few milliseconds and records who answered
// and the longest silence; Frames records, from a packet socket, the
// Ethernet source of every answer (which MAC answered which probe);
// NameProber asks for a name by mDNS just as often and records each
// answer and who sent it.
package probe
