// Package sim is Wolfpack's ring-1 deterministic simulator (docs/design.md,
// "Tests: three rings"): it
// runs the real heartbeat detectors and regroup state machines of 2..64
// nodes on a virtual clock, over a simulated network with loss, delay,
// duplication, reordering, symmetric and asymmetric partitions and
// per-network cuts of two private networks, with a quorum arbiter that
// issues real SPC-4 persistent-reservation commands to an in-memory target
// (scsi/memtarget, one nexus per node), crashes with restart (a new
// incarnation) and freezes. Everything is drawn from one seed
// (math/rand/v2), so a failing seed replays exactly:
//
//	go run ./cmd/wolfpack-sim -seed N -nodes K -v
//
// Invariants are checked after every event that changes a node's
// membership state or the target's registrations (see Check).
package sim
