package heartbeat

import (
	"testing"
)

// Reference: docs/membership.md "Timings (defaults)" (failure detection; a
// member never heard): a peer declared a member
// but never heard is suspected like any silent peer.

func newSolo(t *testing.T, self NodeID, peers ...NodeID) *Detector {
	t.Helper()
	d, err := New(Config{Cluster: 7, Self: self, Incarnation: 1, Key: testKey, Peers: append(peers, self), Networks: 2})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tickEvents ticks d n times and returns the events with their ticks.
func tickEvents(d *Detector, n int) []tickEvent {
	var out []tickEvent
	for range n {
		d.Tick()
		for _, e := range d.Ready().Events {
			out = append(out, tickEvent{d.Now(), 0, e})
		}
	}
	return out
}

// heartbeatFrom is one sealed heartbeat of peer on net.
func heartbeatFrom(t *testing.T, peer NodeID, seq uint64, net int) []byte {
	t.Helper()
	dg, err := NewSealer(testKey).Seal(&Packet{Cluster: 7, Network: uint8(net), From: peer, Incarnation: 1, Seq: seq})
	if err != nil {
		t.Fatal(err)
	}
	return dg
}

// Reference: docs/membership.md "Timings (defaults)". A member never heard
// is suspected exactly Threshold intervals after it became a member, with
// NeverHeard, once.
func TestNeverHeardMemberSuspected(t *testing.T) {
	d := newSolo(t, 1, 2, 3)
	tickEvents(d, 7)
	d.SetMembers(SetOf(1, 2, 3))
	limit := int64(DefaultThreshold * DefaultIntervalTicks)
	evs := tickEvents(d, int(3*limit))
	if len(evs) != 2 {
		t.Fatalf("events %v, want 2 suspicions", evs)
	}
	for i, want := range []NodeID{2, 3} {
		e := evs[i]
		if e.Kind != PeerSuspected || e.Peer != want || !e.NeverHeard || e.LastHeard != 7 || e.tick != 7+limit {
			t.Errorf("event %d: tick %d %+v, want PeerSuspected of %d, NeverHeard, since 7, at tick %d", i, e.tick, e.Event, want, 7+limit)
		}
	}
}

// Reference: docs/membership.md "Timings (defaults)". Without SetMembers (or
// for a peer that is not a member) a never-heard peer is not suspected:
// configured is not expected.
func TestNeverHeardNonMemberNotSuspected(t *testing.T) {
	d := newSolo(t, 1, 2, 3)
	if evs := tickEvents(d, 200); len(evs) != 0 {
		t.Fatalf("events without members: %v", evs)
	}
	d.SetMembers(SetOf(1, 2))
	evs := tickEvents(d, 200)
	if len(evs) != 1 || evs[0].Peer != 2 {
		t.Fatalf("events %v, want only node 2 suspected", evs)
	}
	// Self only, or the empty set (not a member): nothing more.
	d.SetMembers(SetOf(1))
	if evs := tickEvents(d, 200); len(evs) != 0 {
		t.Fatalf("events with no peer member: %v", evs)
	}
}

// Reference: docs/membership.md "Timings (defaults)". A member heard before
// the threshold is alive, not suspected; its later silence is an ordinary
// suspicion.
func TestMemberHeardInTimeNotNeverHeard(t *testing.T) {
	d := newSolo(t, 1, 2)
	d.SetMembers(SetOf(1, 2))
	limit := int64(DefaultThreshold * DefaultIntervalTicks)
	tickEvents(d, int(limit-1))
	if err := d.Receive(0, heartbeatFrom(t, 2, 1, 0)); err != nil {
		t.Fatal(err)
	}
	heard := d.Now()
	evs := tickEvents(d, int(2*limit))
	if len(evs) != 2 || evs[0].Kind != PeerAlive || evs[1].Kind != PeerSuspected {
		t.Fatalf("events %v, want PeerAlive then PeerSuspected", evs)
	}
	if s := evs[1]; s.NeverHeard || s.LastHeard != heard || s.tick != heard+limit {
		t.Fatalf("suspicion %+v at tick %d, want ordinary, last heard %d, at %d", s.Event, s.tick, heard, heard+limit)
	}
}

// Reference: docs/membership.md "Timings (defaults)". A suspected member
// still in the membership is not suspected again until heard again; a member
// removed and added again is timed afresh.
func TestNeverHeardOncePerSilence(t *testing.T) {
	d := newSolo(t, 1, 2)
	d.SetMembers(SetOf(1, 2))
	limit := int64(DefaultThreshold * DefaultIntervalTicks)
	if evs := tickEvents(d, int(5*limit)); len(evs) != 1 {
		t.Fatalf("events %v, want one suspicion", evs)
	}
	d.SetMembers(SetOf(1, 2)) // same membership again: no new clock
	if evs := tickEvents(d, int(2*limit)); len(evs) != 0 {
		t.Fatalf("events %v, want none", evs)
	}
	d.SetMembers(SetOf(1))
	tickEvents(d, 3)
	d.SetMembers(SetOf(1, 2))
	since := d.Now()
	evs := tickEvents(d, int(2*limit))
	if len(evs) != 1 || !evs[0].NeverHeard || evs[0].LastHeard != since || evs[0].tick != since+limit {
		t.Fatalf("events %v, want one NeverHeard suspicion at %d", evs, since+limit)
	}
	// Heard, then silent: an ordinary suspicion, then no NeverHeard one.
	if err := d.Receive(1, heartbeatFrom(t, 2, 1, 1)); err != nil {
		t.Fatal(err)
	}
	evs = tickEvents(d, int(4*limit))
	if len(evs) != 2 || evs[0].Kind != PeerAlive || evs[1].Kind != PeerSuspected || evs[1].NeverHeard {
		t.Fatalf("events %v, want PeerAlive, ordinary PeerSuspected", evs)
	}
}

// Reference: docs/membership.md "Timings (defaults)". The same inputs give
// the same events at the same ticks (tick-driven, no clock).
func TestNeverHeardDeterministic(t *testing.T) {
	run := func() []tickEvent {
		d := newSolo(t, 3, 1, 2, 4)
		tickEvents(d, 13)
		d.SetMembers(SetOf(1, 2, 3, 4))
		_ = d.Receive(0, heartbeatFrom(t, 4, 1, 0))
		return tickEvents(d, 120)
	}
	a, b := run(), run()
	if len(a) != len(b) {
		t.Fatalf("%v != %v", a, b)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("%v != %v", a, b)
		}
	}
}

// Reference: docs/membership.md "Timings (defaults)". A member that leaves
// and is added again before its old silence ran out (a clusterd restarted
// at once: it left, and its new incarnation joined through a sponsor
// before its first heartbeat reached this node) is timed from its entry,
// like a member never heard: not suspected for the silence of the process
// that left. Found by testbed/nscluster/gup's TestIntegrationJoinTransfer:
// a node restarted 420 ms after it left was suspected 30 ms after its join
// ("silent_ms 500"), its key removed, and it halted.
func TestRejoinedMemberTimedFromEntry(t *testing.T) {
	d := newSolo(t, 1, 2)
	d.SetMembers(SetOf(1, 2))
	limit := int64(DefaultThreshold * DefaultIntervalTicks)
	tickEvents(d, 3)
	if err := d.Receive(0, heartbeatFrom(t, 2, 1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := d.Receive(1, heartbeatFrom(t, 2, 1, 1)); err != nil {
		t.Fatal(err)
	}
	heard := d.Now()
	tickEvents(d, 5)
	d.SetMembers(SetOf(1)) // it left
	tickEvents(d, int(limit/2))
	d.SetMembers(SetOf(1, 2)) // and joined again
	entry := d.Now()
	evs := tickEvents(d, int(2*limit))
	var got []tickEvent
	for _, e := range evs {
		if e.Kind != PeerAlive {
			got = append(got, e)
		}
	}
	if len(got) != 1 || got[0].Kind != PeerSuspected || got[0].tick != entry+limit || got[0].LastHeard != heard {
		t.Fatalf("events %v, want one PeerSuspected (last heard %d) at tick %d, %d ticks after the entry, not at %d", got, heard, entry+limit, limit, heard+limit)
	}
}
