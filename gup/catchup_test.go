package gup

import (
	"fmt"
	"testing"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// Reproductions of a catch-up livelock found by
// testbed/nscluster/gup's TestIntegrationLockerCrash (node 3 stuck at the
// takeover's sequence number for 55 s while node 2, the new locker,
// committed ~20,000 updates of another client). A member with a gap in
// its updates is caught up only when the locker's retransmit timer
// (RetransmitTicks since p.sentAt) runs out or when its ack shows it
// behind what was sent to it (p.sentUpTo <= ack). Every delivery of a new
// batch sets p.sentAt and p.sentUpTo, so while other clients keep the
// locker committing more often than every RetransmitTicks (200 ms), a
// member whose gap is below sentUpTo is never sent the gap: it holds the
// new updates (up to maxBuffered, then drops them), its own pending
// requests never complete and its linearizable reads never finish.
//
// The fix: the retransmit timer counts from the member's last progress
// (its acknowledged sequence number growing), not from the last send, and
// an ack names the highest update the member holds beyond a hole, so the
// locker sends the hole again at once (at most every gapTicks).

// runDropping is run, except that the messages drop selects are lost.
func (h *harness) runDropping(drop func(Message) bool) {
	for range 10000 {
		busy := false
		for _, id := range h.all.IDs() {
			tn := h.nodes[id]
			if tn == nil {
				continue
			}
			rd := tn.g.Ready()
			h.msgs = append(h.msgs, rd.Messages...)
			tn.done = append(tn.done, rd.Completions...)
			for len(tn.cmds) > 0 {
				c := tn.cmds[0]
				tn.cmds = tn.cmds[1:]
				tn.g.LogDone(h.exec(tn, c))
				busy = true
			}
		}
		if len(h.msgs) > 0 {
			m := h.msgs[0]
			h.msgs = h.msgs[1:]
			if tn := h.nodes[m.To]; tn != nil && !drop(m) {
				tn.g.Step(m)
			}
			busy = true
		}
		if !busy {
			return
		}
	}
	h.t.Fatal("no quiet after 10000 steps")
}

// execAll runs node id's log commands.
func (h *harness) execAll(id int) {
	tn := h.nodes[nodes.ID(id)]
	for len(tn.cmds) > 0 {
		c := tn.cmds[0]
		tn.cmds = tn.cmds[1:]
		tn.g.LogDone(h.exec(tn, c))
	}
}

// underLoad ticks every node 1,000 times (10 s), node from proposing an
// update at every tick when from is not 0.
func (h *harness) underLoad(from int) {
	for tick := range 1000 {
		if from != 0 {
			h.propose(nodes.ID(from), fmt.Sprintf("load%d", tick))
		}
		h.run()
		for _, tn := range h.nodes {
			tn.g.Tick()
		}
		h.run()
	}
}

// TestCatchUpAfterTakeover: the locker dies after delivering node 3's
// update to node 2 only; the new locker, node 2, commits an update of its
// own before node 3's answer to its announcement arrives. Without more
// load node 3 is caught up by the retransmit timer; under load (node 2
// proposing every tick) it must be too.
func TestCatchUpAfterTakeover(t *testing.T) {
	for _, load := range []bool{false, true} {
		t.Run(fmt.Sprintf("load=%v", load), func(t *testing.T) {
			h := newHarness(t, 1, 2, 3)
			h.members(1)
			h.run()
			h.propose(2, "a0")
			h.run()
			x := h.propose(3, "x")
			h.runDropping(func(m Message) bool { return m.From == 1 && m.To == 3 && m.Type == MsgUpdates })
			delete(h.nodes, 1)
			h.all = h.all.Remove(1)
			h.msgs = nil
			if h.nodes[2].g.Applied() != 2 || h.nodes[3].g.Applied() != 1 {
				t.Fatalf("before the takeover: node 2 at #%d, node 3 at #%d", h.nodes[2].g.Applied(), h.nodes[3].g.Applied())
			}
			for id, tn := range h.nodes {
				tn.g.SetMembership(true, h.all, id == 2, true)
			}
			h.execAll(2) // the replay: node 2 is the locker
			h.propose(2, "y")
			h.execAll(2) // its append: delivered to node 3 before node 3 acks the announcement
			from := 0
			if load {
				from = 2
			}
			h.underLoad(from)
			done := false
			for _, c := range h.nodes[3].done {
				done = done || c.Req == x
			}
			if !done || h.nodes[3].g.Applied() != h.nodes[2].g.Applied() {
				t.Fatalf("after 10 s: node 2 at #%d, node 3 at #%d (%d updates held ahead of its gap); node 3's request completed: %v",
					h.nodes[2].g.Applied(), h.nodes[3].g.Applied(), len(h.nodes[3].g.buffered), done)
			}
		})
	}
}

// TestCatchUpLostBatchUnderLoad: one batch to node 3 is lost (a stream
// frame dropped when its connection is replaced) while node 1, the
// locker, commits an update every tick.
func TestCatchUpLostBatchUnderLoad(t *testing.T) {
	h := newHarness(t, 1, 2, 3)
	h.members(1)
	h.run()
	h.propose(2, "a0")
	h.run()
	h.propose(1, "lost")
	h.runDropping(func(m Message) bool { return m.To == 3 && m.Type == MsgUpdates })
	h.underLoad(1)
	if h.nodes[3].g.Applied() != h.nodes[1].g.Applied() {
		t.Fatalf("after 10 s: node 1 at #%d, node 3 at #%d (%d updates held ahead of its gap)",
			h.nodes[1].g.Applied(), h.nodes[3].g.Applied(), len(h.nodes[3].g.buffered))
	}
}

// TestLockerAnnouncementLost: a member that rejoins (a new incarnation)
// misses the locker's announcement while the locker keeps sending it
// updates (node 2 proposes every tick). Its acks of the updates answered
// the announcement, so the locker never announced itself again, and the
// member's own request never left it (simulator seed 6164 at 16 nodes: an
// availability violation). A member learns the locker from its updates.
func TestLockerAnnouncementLost(t *testing.T) {
	h := newHarness(t, 1, 2, 3)
	h.members(1)
	h.run()
	h.propose(2, "a0")
	h.run()
	h.boot(3, 2)
	h.members(1)
	h.runDropping(func(m Message) bool { return m.Type == MsgLocker && m.To == 3 })
	x := h.propose(3, "x")
	h.underLoad(2)
	done := false
	for _, c := range h.nodes[3].done {
		done = done || c.Req == x
	}
	if l, _ := h.nodes[3].g.Locker(); !done || l != 1 {
		t.Fatalf("after 10 s: node 3 knows locker %d, its request completed: %v", l, done)
	}
}

// A locker that has not yet noticed it lost the quorum (node 1, still
// told it owns it) hears the locker of a later term (node 2, which won the
// reservation and replayed the log): it stops being a locker and follows
// node 2 as a member. Kept as locker, it applied node 2's updates outside
// its own history and, ticking, sent its members a catch-up from a history
// that no longer reached what it had applied: an index out of range
// (simulator seed 8428, 15 nodes).
func TestStaleLockerFollowsALaterTerm(t *testing.T) {
	h := newHarness(t, 1, 2, 3)
	h.members(1)
	h.run()
	h.propose(2, "a0")
	h.run()
	for _, id := range []nodes.ID{2, 3} {
		h.nodes[id].g.SetMembership(true, h.all, id == 2, true)
	}
	h.run()
	h.underLoad(3)
	if l, _ := h.nodes[1].g.Locker(); l != 2 {
		t.Fatalf("node 1 knows locker %d, want 2 (the later term's)", l)
	}
	if h.nodes[1].g.lk != nil {
		t.Fatal("node 1 still sequences as a locker of an old term")
	}
	h.same()
}
