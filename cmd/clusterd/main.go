// Command clusterd is the Wolfpack cluster service (docs/design.md,
// "Components"): heartbeats on every private network, join through a
// sponsor or form on the quorum disk, regroup, GUP and the database,
// resmon; leave on SIGTERM. See docs/clusterd.md.
//
//	clusterd [-config /etc/wolfpack/node.toml] [-log-level debug|info]
//	clusterd --check-config [-config FILE]
//	clusterd --version
//
// Exit status: 0 after a planned stop (or a valid node file, or the
// version), 3 after a halt (pruned, lost the arbitration, lost quorum), 4
// when the node is evicted (regrouped out, or its join refused: `cluster
// node add` first), 1 on any other error (a node file that does not parse
// or validate among them), 2 for a bad command line.
package main

import "github.com/wolfpack-ha/wolfpack/cmd/internal/clusterdmain"

func main() { clusterdmain.Main() }
