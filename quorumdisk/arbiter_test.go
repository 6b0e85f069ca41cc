package quorumdisk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

const testTag = 0x574c4650 // "WLFP"

// sim runs arbiters of several nodes against one memtarget LU in virtual
// time. Each node has its own I_T nexus; commands of different nodes
// interleave in an order drawn from the seed; a frozen node neither ticks
// nor issues commands (QEMU stop).
type sim struct {
	t      *testing.T
	lu     *memtarget.Target
	rng    *rand.Rand
	nodes  map[uint32]*simNode
	order  []uint32
	ticks  uint64
	events []string
}

type simNode struct {
	id     uint32
	arb    *Arbiter
	drv    *Driver // only its exec: the command executor on the node's nexus
	frozen bool
	queue  *Command
	events []Event
}

func newSim(t *testing.T, compat memtarget.Compat, seed uint64) *sim {
	return &sim{t: t, lu: memtarget.New(memtarget.Config{Compat: compat}), rng: rand.New(rand.NewPCG(seed, 1)),
		nodes: map[uint32]*simNode{}}
}

func nexusName(id uint32) string { return fmt.Sprintf("iqn.2024-01.test:node%d", id) }

func (s *sim) add(id uint32, members ...uint32) *simNode {
	n := &simNode{id: id, arb: NewArbiter(ArbiterConfig{ClusterTag: testTag, Node: id, Members: members, CheckTicks: 10, DefenceTicks: 25}),
		drv: NewDriver(s.lu.Nexus(nexusName(id)), DriverConfig{ClusterTag: testTag, Node: id})}
	s.nodes[id] = n
	s.order = append(s.order, id)
	return n
}

// settle runs commands, one at a time from a random ready node, until no
// node has anything to do.
func (s *sim) settle() {
	for {
		var ready []*simNode
		for _, id := range s.order {
			n := s.nodes[id]
			if n.frozen {
				continue
			}
			if n.queue == nil {
				rd := n.arb.Ready()
				for _, ev := range rd.Events {
					n.events = append(n.events, ev)
					s.events = append(s.events, fmt.Sprintf("t=%d node%d %s %s", ev.Tick, id, ev.Kind, ev.Reason))
				}
				n.queue = rd.Command
			}
			if n.queue != nil {
				ready = append(ready, n)
			}
		}
		if len(ready) == 0 {
			return
		}
		n := ready[s.rng.IntN(len(ready))]
		c := *n.queue
		n.queue = nil
		if err := n.arb.Step(n.drv.exec(context.Background(), c)); err != nil {
			s.t.Fatalf("node%d: %v", n.id, err)
		}
	}
}

func (s *sim) tick() {
	s.ticks++
	for _, id := range s.order {
		if n := s.nodes[id]; !n.frozen {
			n.arb.Tick()
		}
	}
	s.settle()
}

// until ticks until cond holds, at most max ticks, and returns the ticks
// it took.
func (s *sim) until(max int, what string, cond func() bool) uint64 {
	s.t.Helper()
	start := s.ticks
	s.settle()
	for !cond() {
		if int(s.ticks-start) >= max {
			s.t.Fatalf("%s: not after %d ticks; events:\n%v", what, max, s.events)
		}
		s.tick()
	}
	return s.ticks - start
}

func (n *simNode) has(k EventKind) bool {
	return slices.ContainsFunc(n.events, func(e Event) bool { return e.Kind == k })
}

// stale registers key (tag, id) on its own nexus and makes it hold the
// reservation: a holder that died.
func (s *sim) stale(id uint32) {
	dev := s.lu.Nexus(nexusName(id))
	ctx := context.Background()
	if err := scsi.RegisterAndIgnore(ctx, dev, Key(testTag, id)); err != nil {
		s.t.Fatal(err)
	}
	if err := scsi.Reserve(ctx, dev, Key(testTag, id), ReservationType); err != nil {
		s.t.Fatal(err)
	}
}

func (s *sim) keys() []uint64 {
	var ks []uint64
	for _, r := range s.lu.Registrations() {
		ks = append(ks, r.Key)
	}
	return ks
}

// TestArbiterRace: two candidates race for a disk whose holder died, in
// random interleavings, on both target behaviours: exactly one wins, the
// other loses when the winner removes its key during its defence delay, and
// the LU ends with only the winner's key, holding a Write Exclusive -
// Registrants Only reservation.
//
// Reference: DESIGN.md §5.3; SPC-4 5.12.11.4.
func TestArbiterRace(t *testing.T) {
	for _, compat := range []memtarget.Compat{memtarget.CompatSPC4, memtarget.CompatTgt} {
		for seed := uint64(0); seed < 100; seed++ {
			s := newSim(t, compat, seed)
			s.stale(9)
			a, b := s.add(1, 1), s.add(2, 2)
			a.arb.Start()
			if seed%2 == 1 { // start late by a few ticks
				for range seed % 7 {
					s.tick()
				}
			}
			b.arb.Start()
			s.until(200, "race decided", func() bool {
				return (a.has(EventWon) || a.has(EventLost)) && (b.has(EventWon) || b.has(EventLost))
			})
			if a.has(EventWon) == b.has(EventWon) {
				t.Fatalf("%s seed %d: winners: node1 %v node2 %v\n%v", compat, seed, a.has(EventWon), b.has(EventWon), s.events)
			}
			w := a
			if b.has(EventWon) {
				w = b
			}
			res, ok := s.lu.Reservation()
			if !ok || res.Key != w.arb.Key() || res.Type != memtarget.TypeWriteExclusiveRegistrantsOnly {
				t.Fatalf("%s seed %d: reservation %+v, want node%d's", compat, seed, res, w.id)
			}
			if ks := s.keys(); !slices.Equal(ks, []uint64{w.arb.Key()}) {
				t.Fatalf("%s seed %d: keys %x, want only the winner's", compat, seed, ks)
			}
		}
	}
}

// TestArbiterDefendsAtOnce: the holder wins without waiting; a challenger
// loses after the defence delay because the holder removed its key.
func TestArbiterDefendsAtOnce(t *testing.T) {
	s := newSim(t, memtarget.CompatTgt, 1)
	a := s.add(1, 1)
	a.arb.Start()
	if n := s.until(30, "first owner", func() bool { return a.has(EventWon) }); n != 0 {
		t.Fatalf("an uncontested reserve took %d ticks", n)
	}
	a.events = nil
	b := s.add(2, 2)
	b.arb.Start()
	// node1 restarts (same key, still the holder): it defends at once.
	a.arb = NewArbiter(ArbiterConfig{ClusterTag: testTag, Node: 1, Members: []uint32{1}})
	a.arb.Start()
	if n := s.until(5, "holder defends", func() bool { return a.has(EventWon) }); n != 0 {
		t.Fatalf("the holder waited %d ticks", n)
	}
	n := s.until(60, "challenger loses", func() bool { return b.has(EventLost) })
	if n < 25 {
		t.Fatalf("challenger gave up after %d ticks, before the defence delay", n)
	}
	if ks := s.keys(); !slices.Equal(ks, []uint64{Key(testTag, 1)}) {
		t.Fatalf("keys %x", ks)
	}
}

// TestArbiterFrozenOwner: the owner is frozen; a challenger takes the disk
// after the defence delay; thawed, the old owner reports lost quorum at its
// next check, within CheckTicks.
//
// Reference: DESIGN.md §4 (the zombie that wakes up must find itself fenced).
func TestArbiterFrozenOwner(t *testing.T) {
	for _, compat := range []memtarget.Compat{memtarget.CompatSPC4, memtarget.CompatTgt} {
		s := newSim(t, compat, 3)
		a := s.add(1, 1)
		a.arb.Start()
		s.until(5, "owner", func() bool { return a.has(EventWon) })
		for range 15 {
			s.tick()
		}
		a.frozen = true
		b := s.add(2, 2)
		b.arb.Start()
		n := s.until(40, "challenger wins", func() bool { return b.has(EventWon) })
		if n < 25 || n > 27 {
			t.Fatalf("%s: challenger won after %d ticks, want the defence delay (25) and a tick or two", compat, n)
		}
		a.frozen = false
		m := s.until(20, "old owner lost quorum", func() bool { return a.has(EventLostQuorum) })
		if m > 10 {
			t.Fatalf("%s: thawed owner noticed after %d ticks, want at most QuorumCheckInterval (10)", compat, m)
		}
		// Its log writes are fenced.
		err := scsi.Write16(context.Background(), s.lu.Nexus(nexusName(1)), 100, 1, make([]byte, 512), true)
		if !isConflict(err) {
			t.Fatalf("%s: write of the fenced owner: %v, want RESERVATION CONFLICT", compat, err)
		}
	}
}

func isConflict(err error) bool { return errors.Is(err, scsi.ErrReservationConflict) }

// TestArbiterMembership: the owner removes keys of nodes that leave the
// membership and of other clusters at its next check, never its own or a
// member's; a failed write triggers an immediate check.
func TestArbiterMembership(t *testing.T) {
	s := newSim(t, memtarget.CompatSPC4, 5)
	ctx := context.Background()
	for _, id := range []uint32{2, 3} {
		if err := scsi.RegisterAndIgnore(ctx, s.lu.Nexus(nexusName(id)), Key(testTag, id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := scsi.RegisterAndIgnore(ctx, s.lu.Nexus("foreign"), Key(0x1234, 2)); err != nil {
		t.Fatal(err)
	}
	a := s.add(1, 1, 2, 3)
	a.arb.Start()
	s.until(5, "owner", func() bool { return a.has(EventWon) })
	if ks := s.keys(); !slices.Equal(ks, []uint64{Key(testTag, 2), Key(testTag, 3), Key(testTag, 1)}) {
		t.Fatalf("after winning: keys %x", ks)
	}
	a.arb.SetMembership([]uint32{1, 2})
	s.until(11, "node3 removed", func() bool { return len(s.keys()) == 2 })
	if ks := s.keys(); !slices.Equal(ks, []uint64{Key(testTag, 2), Key(testTag, 1)}) {
		t.Fatalf("after membership change: keys %x", ks)
	}
	// Someone preempts the owner; a write conflict makes it check at once.
	if err := scsi.Preempt(ctx, s.lu.Nexus(nexusName(2)), Key(testTag, 2), Key(testTag, 1), ReservationType); err != nil {
		t.Fatal(err)
	}
	a.arb.Recheck()
	if n := s.until(1, "lost quorum on recheck", func() bool { return a.has(EventLostQuorum) }); n != 0 {
		t.Fatalf("recheck took %d ticks", n)
	}
}

// TestArbiterDiskUnreachable: an owner that cannot complete a check for
// the defence delay reports lost quorum; a candidate that cannot reach the
// disk gives up.
func TestArbiterDiskUnreachable(t *testing.T) {
	s := newSim(t, memtarget.CompatSPC4, 7)
	a := s.add(1, 1)
	a.arb.Start()
	s.until(5, "owner", func() bool { return a.has(EventWon) })
	s.lu.SetFault(nexusName(1), memtarget.FaultDrop)
	if n := s.until(30, "lost quorum", func() bool { return a.has(EventLostQuorum) }); n > 25 {
		t.Fatalf("owner without disk held on for %d ticks", n)
	}
	b := s.add(2, 2)
	s.lu.SetFault(nexusName(2), memtarget.FaultDrop)
	b.arb.Start()
	s.until(10, "gave up", func() bool { return b.has(EventLost) })
}
