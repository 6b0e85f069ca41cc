// Package resmon is the resource monitor: the process that hosts the
// resource types (resources.Type) and runs clusterd's online, offline and
// terminate commands, apart from clusterd so that neither a misbehaving
// resource nor a frozen clusterd can keep resources up (docs/resources.md).
//
// Serve is resmon's side: it speaks the protocol in proto.go on one stream,
// runs each resource's actions in order on a goroutine of its own, polls
// LooksAlive and IsAlive, and holds resources online only under a lease
// that clusterd keeps extending: when the lease runs out, or the stream
// ends, every resource is terminated at once. Start is clusterd's side: it
// spawns the resmon binary with a socketpair as its fd 3.
package resmon
