// Package gupbench holds the replicated-update benchmark (make bench-gup):
// update latency with one client issuing updates one at a time (p50, p99)
// and updates per second with 16 clients at once, for Wolfpack's GUP at
// 2, 4, 8 and 16 nodes and for etcd 3.4 at 3 members, measured with the
// same load (testbed/loadgen) in the same session, runs of the systems
// interleaved, and reported as ratios to etcd.
//
// TestIntegrationBenchGUP runs only with WOLFPACK_BENCH_GUP naming the
// systems ("etcd", "wolfpack", comma-separated); the systems are a table
// in bench_linux_test.go, each a function that brings up one size for one
// run and hands back its clients. The package has no code of its own.
package gupbench
