// Package membership holds ring-2 tests of clusterd's membership (heartbeat,
// join, regroup, partition survival): real daemons in network namespaces on
// the nscluster rig, a real quorum LUN on tgt. The tests are TestIntegration*
// (root); the benchmarks and the CPU-hog soak run only when asked
// (make bench-membership, make soak).
package membership
