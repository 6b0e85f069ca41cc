// Package etcdrig runs an etcd 3.4 cluster (Debian's etcd-server) in Linux
// network namespaces, the peer the replicated-update benchmark (make
// bench-gup, testbed/gupbench) compares GUP with. It is laid out as
// testbed/nscluster lays out Wolfpack, so that the two systems see the
// same network: one namespace per member on one bridge, and a client
// namespace on the same bridge.
//
// # Layout
//
// A rig has a per-run prefix wpe<pid>x<seq> (testbed/netns's Unique; Start
// sweeps what a killed run left behind). Nothing is created in, addressed
// in, or sent from the host's network namespace.
//
//	<prefix>-fab   fabric: bridge pub; the fabric end of every veth, m<N> and cl
//	<prefix>-m<N>  member N: eth0 10.97.0.(10+N)/24, etcd on :2379 (clients) and :2380 (peers)
//	<prefix>-cl    the client: eth0 10.97.0.100/24
//
// The addresses are nscluster's public network, in a fabric of the rig's
// own.
//
// # Processes and data
//
// Member N runs as `ip netns exec <prefix>-m<N> etcd --name mN ...` with
// a static initial cluster, etcd's defaults otherwise (heartbeat 100 ms,
// election 1 s, an fdatasync of the WAL before a member acknowledges an
// entry), the environment emptied but for PATH (etcd reads ETCD_*
// variables), its output in <Dir>/mN.log and its data in <Dir>/mN.etcd.
// Dir is a new directory under Config.DataDir, by default os.TempDir():
// the file system the tgt LUN of nscluster's quorum disk lives on too
// (iscsitest puts the backing file in the test's TempDir), so both systems
// write their logs to the same disk. The two do not sync alike: etcd
// fdatasyncs its WAL (on a disk with a write-back cache, a cache flush);
// tgt's default backing store answers a WRITE with FUA after
// sync_file_range(2) of the written range, which waits for the page cache
// to write it but flushes neither the device's cache nor the file's
// metadata. BENCHMARKS.md, "Replicated updates", gives what that costs on
// the benchmark's machine.
//
// # Clients
//
// The benchmark's clients run in the test process and connect from the
// client namespace (Rig.Dial opens each socket there: testbed/netns's Do),
// so every request crosses the bridge as a remote client's would. Gateway
// is the benchmark's client: HTTP/1.1 and JSON to etcd's gRPC gateway, no
// etcd client library. GRPC speaks gRPC itself (KV.Put only), to measure
// what the gateway adds. Each client has its own transport and keeps one
// connection.
//
// # Teardown
//
// Close kills every member (SIGKILL: the data goes with the rig), deletes
// the namespaces and removes Dir; New registers it with t.Cleanup, SIGINT and
// SIGTERM close open rigs, members die with the test process (PDEATHSIG),
// and Start sweeps the namespaces and directories of runs whose process is
// gone.
package etcdrig
