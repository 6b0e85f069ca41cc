// Command resmon is Wolfpack's resource monitor: clusterd starts it with a
// socketpair as fd 3 (internal/resmon) and it hosts the built-in resource
// types. Logs are JSON lines on stderr.
package main

import "github.com/wolfpack-ha/wolfpack/cmd/internal/resmonmain"

func main() { resmonmain.Main() }
