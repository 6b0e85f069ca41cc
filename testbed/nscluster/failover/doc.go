// Package failover holds ring-2 tests of the failover manager, resmon and
// the resource types (docs/resources.md) with real processes: clusterd and
// resmon on every node of the nscluster rig, a virtual server (a group with
// an ip_address, a network_name and a generic_application running
// testbed/probe/echo) created through the admin API, and a client in the
// client namespace that sends a datagram to the virtual address every
// 10 ms (nscluster's Prober), captures ARP, and watches the address on each
// node. The tests are TestIntegration* (root, tgt; skipped otherwise):
// an owner crashed, frozen, partitioned, or its clusterd (then restarted:
// it rejoins) or resmon killed; the application killed past its restart
// threshold; a planned move; failback. Each logs what it measured as
// key=value (outage_ms=...). TestIntegrationBadInput gives the running
// cluster bad input of every kind (node files, the cluster command, the
// admin API on the socket and on TCP) and checks that each is refused
// naming the problem and that nothing changes: the database, the address,
// the application, the client's answers.
//
// TestIntegrationBenchFailover (WOLFPACK_BENCH_FAILOVER=N) repeats the
// crash failover N times and reports the median and p95 of the outage and
// of the lease wait.
//
// TestIntegrationBenchRace (WOLFPACK_BENCH_RACE=N, make bench-race) races
// keepalived 2.2.7 (VRRPv2 advert 1 s, VRRPv3 advert 0.1 s) against
// Wolfpack at the timing profiles default and fast, each on a rig of its
// own in the same namespace layout with the same probe: N rounds of a
// node crash then a planned move on every system, and the medians, p95
// and the ratios Wolfpack/keepalived.
package failover
