// Package netns is the test rigs' one way to handle Linux network
// namespaces and links: create and delete named namespaces (ip netns, under
// /run/netns), run ip(8) command scripts in one, build bridges, taps and
// veths, run programs inside one, and sweep what a killed run left behind.
//
// Programs run in a namespace through `ip netns exec` (a child process); Go
// code that must itself enter a namespace uses Do, which runs it on a
// goroutine that locks its OS thread and never unlocks it, so the runtime
// throws the thread away rather than hand it back to the scheduler.
//
// Names: Unique hands out prefixes "<base><pid>x<n>" that carry the creating
// process's pid, so that SweepDead can tell a dead run's namespaces from a
// live one's. Owner records a pid with its start time, for rigs that keep a
// state file and must not be fooled by a reused pid.
package netns
