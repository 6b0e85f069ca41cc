// Command cluster is the Wolfpack administration tool (in the manner of
// cluster.exe and pcs): status asks a running clusterd; the disk and quorum
// commands work on a shared LUN directly and need no running cluster; ca
// makes the certificates of the streams between nodes.
package main

import "github.com/wolfpack-ha/wolfpack/cmd/internal/clustercli"

func main() { clustercli.Main() }
