// Package nscluster runs a Wolfpack cluster of real clusterd processes, each
// in its own Linux network namespace, on one machine (docs/design.md, "Tests:
// three rings", ring 2), for
// integration tests run as root.
//
// # Layout
//
// A rig has a per-run prefix wpn<pid>x<seq> (the creating process's pid, so
// that a later run can sweep what a killed run left behind). Every bridge
// lives in a namespace of the rig's own; nothing is created in, addressed in,
// or sent from the host's network namespace.
//
//	<prefix>-fab    fabric: bridges pub, priv1, priv2 (PrivateNets of them),
//	                stor; the fabric end of every veth, named n<N>-<bridge>
//	                (st, cl for the storage and client namespaces)
//	<prefix>-n<N>   node N: eth0 public 10.97.0.(10+N), eth<K> private network
//	                K 10.97.K.(10+N), the next eth storage 10.98.0.(10+N)
//	<prefix>-st     tgtd (package iscsitest) on eth0 10.98.0.1:3260, one LUN
//	<prefix>-cl     the client: eth0 public 10.97.0.100
//
// Networks are cut at the fabric end of a node's veth (Cut, Restore): the
// link goes down on both sides and no packet crosses in either direction,
// like a pulled cable. Partition moves the fabric ends of the private
// networks onto one bridge per group; the public and storage networks stay
// whole, so the quorum disk can arbitrate.
//
// # Processes
//
// Each node's daemon runs as `ip netns exec <prefix>-n<N> BINARY -config
// FILE` with clusterd's own config file (internal/config's File, written by
// its WriteFile; Node.Config, edited through Start); its
// stdout and stderr go to <Dir>/node<N>.log, and every JSON line (slog's JSON
// handler) becomes an Event in the cluster's event stream, which tests wait
// on (WaitEvent) instead of sleeping. The admin socket is a file on the host,
// so Status dials it directly and answers clusterapi's Status.
//
// # Resources and the client's instruments
//
// The rig builds cmd/resmon beside the clusterd it builds (clusterd looks
// there first); each node's resmon keeps its state directory under Dir.
// For the failover tests (package failover): Prober (testbed/probe's,
// started in the client namespace: a client sending sequence-numbered
// datagrams to testbed/probe/echo every few ms: who answered, the longest
// silence),
// CaptureARP (every ARP frame on the client's interface), WatchAddr (an
// address's presence in nodes' namespaces, sampled by netlink), Crash (a
// node's every process SIGKILLed and its links down, as the kernel of a
// crashed machine would leave it) and Reboot, Node.Procs, ResmonPid,
// KillResmon, MAC. Node.Stop and Cont freeze and thaw clusterd alone.
//
// # A peer in the same layout: keepalived
//
// For the race against keepalived (failover's TestIntegrationBenchRace) a
// rig whose nodes are all Deferred runs no clusterd; Node.StartKeepalived
// runs keepalived (Debian's 2.2.7, VRRP only, --dont-fork, pid files and
// log under Dir) in the node's namespace with one VRRP instance (VRRPv2 or
// v3, the advert interval, the virtual address on eth0; state BACKUP with
// nopreempt). Crash takes it down with everything else in the namespace;
// Revive is Reboot without starting clusterd (the namespace as a rebooted
// machine's: the rig's addresses only, links up), and
// KeepalivedProc.Term is keepalived's planned stop (SIGTERM: a master
// sends priority 0).
// Namespace work from the test process goes through netns.Visit, never
// netns.Do: Do's thread dies, and PR_SET_PDEATHSIG then kills the daemons
// and tgtd that thread forked.
//
// # Teardown
//
// Close kills every process the rig started (and anything else left in its
// namespaces), stops tgtd, deletes the namespaces (and with them the bridges
// and veths) and removes Dir, unless the test failed: then Dir is renamed to
// $TMPDIR/wolfpack-nscluster-<prefix>-* and the tail of every node's log is
// printed. New registers Close with t.Cleanup; SIGINT and SIGTERM also close
// open rigs; daemons die with the test process (PDEATHSIG); and New sweeps
// the namespaces and directories of runs whose process is gone. Namespaces,
// ip scripts and the sweep are testbed/netns's.
package nscluster
