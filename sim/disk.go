package sim

import (
	"github.com/wolfpack-ha/wolfpack/internal/core"
	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

// Each node's disk commands run one at a time, in order, on its own nexus
// of the shared memtarget, as clusterd's disk worker runs them: the same
// executor (internal/quorumio) on the same SPC-4 target code, with a
// simulated latency. A command takes effect when it completes. A command
// on a faulty path fails only after CommandTimeout, as a real initiator's
// would; a slow path adds latency to every command.

type diskQueue struct {
	q    []core.DiskCommand
	busy bool
	gen  uint64 // bumps drop what a crashed process had queued
}

func (d *diskQueue) reset() {
	d.q, d.busy = nil, false
	d.gen++
}

func (s *Sim) submitDisk(n *node, c core.DiskCommand) {
	n.disk.q = append(n.disk.q, c)
	s.pumpDisk(n)
}

func (s *Sim) pumpDisk(n *node) {
	if n.disk.busy || len(n.disk.q) == 0 {
		return
	}
	c := n.disk.q[0]
	n.disk.q = n.disk.q[1:]
	n.disk.busy = true
	gen, inc := n.disk.gen, n.inc
	alive := func() bool { return n.disk.gen == gen && n.inc == inc && n.running }
	var deliver func(r core.DiskResult)
	deliver = func(r core.DiskResult) {
		if !alive() {
			return
		}
		if n.frozen { // a stopped process takes no result
			s.after(Millisecond, func() { deliver(r) })
			return
		}
		n.disk.busy = false
		s.tracef(n.id, "disk result: %v", r)
		n.core.StepDisk(r)
		s.flush(n)
		s.dirty = true
		s.pumpDisk(n)
	}
	var issue func()
	issue = func() {
		if !alive() {
			return
		}
		if n.frozen { // a stopped process issues no command
			s.after(Millisecond, issue)
			return
		}
		slow := n.slow
		if slow > 0 {
			n.stuck++ // until it completes
		}
		lat := s.diskLatency() + slow
		s.after(lat, func() {
			if !alive() {
				return
			}
			r := n.exec.Exec(ctx, c)
			s.dirty = true
			if slow > 0 {
				n.stuck--
				n.diskTroubleAt = s.now // a slow command ends the trouble only when it completes
			}
			if c.Op == core.DiskWritePill && r.Outcome == core.OK {
				s.notePill(c.Pill)
			}
			if r.Outcome == core.Failed {
				// It failed on a faulty path: the queue is stuck behind it
				// until its timeout, whenever the fault itself ends.
				n.stuck++
				s.after(max(0, s.cfg.CommandTimeout-lat), func() {
					if alive() { // a reboot reset the count
						n.stuck--
						n.diskTroubleAt = s.now
					}
					deliver(r)
				})
				return
			}
			deliver(r)
		})
	}
	issue()
}

// notePill starts the pill bound for its target, if the pill is meant for
// the target's running incarnation.
func (s *Sim) notePill(p core.Pill) {
	t := s.nodes[p.Target]
	if !t.running || t.inc != p.Incarnation || t.pillAt >= 0 {
		return
	}
	t.pillAt, t.frozenSincePill = s.now, 0
}

// setDiskFault injects (or clears) a transport fault on node id's path.
func (s *Sim) setDiskFault(n *node, f memtarget.Fault) {
	s.target.SetFault(s.initiator(n.id), f)
	n.diskFault = f != memtarget.FaultNone
	n.diskTroubleAt = s.now
}

func (s *Sim) setDiskSlow(n *node, extra int64) {
	n.slow = extra
	n.diskTroubleAt = s.now
}

// PillBound is how long after a poison pill for it was written a node with
// a healthy disk path may go on running: it reads its mailbox after every
// slot write, one disk beat apart, and a read in flight when the pill
// landed may miss it.
func (s *Sim) PillBound() int64 { return 2*s.cfg.DiskBeat + 50*Millisecond }

// pillOverdue reports how long past PillBound node n runs since its pill,
// or 0. Frozen time does not count, nor a pill that met a disk fault.
func (s *Sim) pillOverdue(n *node) int64 {
	if n.pillAt < 0 || n.diskFault || n.slow > 0 || n.stuck > 0 || n.diskTroubleAt >= n.pillAt {
		return 0
	}
	frozen := n.frozenSincePill
	if n.frozen {
		frozen += s.now - max(n.frozeAt, n.pillAt)
	}
	if late := s.now - n.pillAt - frozen - s.PillBound(); late > 0 {
		return late
	}
	return 0
}

// FenceBoundHealthy is FenceBound for a node whose disk path works: its
// next disk heartbeat write, at most one beat away, fails with
// RESERVATION CONFLICT and it self-fences at once.
func (s *Sim) FenceBoundHealthy() int64 { return 2*s.cfg.DiskBeat + 100*Millisecond }

// fenceOverdue is the same for the fencing bounds since the node's key was
// removed: FenceBoundHealthy if its disk path had no fault since, else
// FenceBound.
func (s *Sim) fenceOverdue(n *node) int64 {
	if n.fencedSince < 0 {
		return 0
	}
	frozen := n.frozenFor
	if n.frozen {
		frozen += s.now - max(n.frozeAt, n.fencedSince)
	}
	bound := s.FenceBound()
	// Write Exclusive - Registrants Only fences writes only while a
	// reservation is held: since the disk was last without one, the
	// healthy bound does not hold.
	if !n.diskFault && n.slow == 0 && n.stuck == 0 && n.diskTroubleAt < n.fencedSince && s.unreservedAt < n.fencedSince {
		bound = s.FenceBoundHealthy()
	}
	if late := s.now - n.fencedSince - frozen - bound; late > 0 {
		return late
	}
	return 0
}

// checkHaltBound checks both bounds at the moment node n halts.
func (s *Sim) checkHaltBound(n *node) {
	if late := s.fenceOverdue(n); late > 0 {
		s.violate("fencing bound: node %d halted %dms after its key was removed, %dms past the bound",
			n.id, (s.now-n.fencedSince)/Millisecond, late/Millisecond)
	}
	if late := s.pillOverdue(n); late > 0 {
		s.violate("pill bound: node %d halted %dms after its poison pill was written, %dms past the bound",
			n.id, (s.now-n.pillAt)/Millisecond, late/Millisecond)
	}
}
