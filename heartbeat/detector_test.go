package heartbeat

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

var testKey = []byte("test cluster key")

// network is an in-memory network of detectors, in the style of etcd raft's
// test network: drop, cut and isolate are one line each.
type network struct {
	t     *testing.T
	nodes map[NodeID]*Detector
	ids   []NodeID
	cut   map[[3]int]bool // {from, to, net}
	trace []string        // events, "tick: node: event"
	got   []tickEvent
}

type tickEvent struct {
	tick int64
	node NodeID
	Event
}

func newNetwork(t *testing.T, n, nets int) *network {
	nw := &network{t: t, nodes: map[NodeID]*Detector{}, cut: map[[3]int]bool{}}
	var all []NodeID
	for i := 1; i <= n; i++ {
		all = append(all, NodeID(i))
	}
	for _, id := range all {
		d, err := New(Config{Cluster: 7, Self: id, Incarnation: 1, Key: testKey, Peers: all, Networks: nets})
		if err != nil {
			t.Fatal(err)
		}
		nw.nodes[id] = d
	}
	nw.ids = all
	return nw
}

// cutLink drops everything from a to b on net (one direction).
func (nw *network) cutLink(a, b NodeID, net int) { nw.cut[[3]int{int(a), int(b), net}] = true }

// cutNet cuts net between a and b in both directions.
func (nw *network) cutNet(a, b NodeID, net int) { nw.cutLink(a, b, net); nw.cutLink(b, a, net) }

// isolate cuts id from everyone on every network.
func (nw *network) isolate(id NodeID, nets int) {
	for _, o := range nw.ids {
		for n := 0; n < nets; n++ {
			nw.cutNet(id, o, n)
		}
	}
}

func (nw *network) heal() { clear(nw.cut) }

// run advances every node by ticks ticks, delivering sends at once.
func (nw *network) run(ticks int) {
	for range ticks {
		for _, id := range nw.ids {
			d := nw.nodes[id]
			d.Tick()
			rd := d.Ready()
			for _, e := range rd.Events {
				nw.trace = append(nw.trace, fmt.Sprintf("%d: %d: %v", d.Now(), id, e))
				nw.got = append(nw.got, tickEvent{d.Now(), id, e})
			}
			for _, s := range rd.Sends {
				if nw.cut[[3]int{int(id), int(s.To), s.Network}] {
					continue
				}
				if to := nw.nodes[s.To]; to != nil {
					_ = to.Receive(s.Network, s.Datagram)
				}
			}
		}
	}
}

func (nw *network) events(id NodeID, kind EventKind) []string {
	var out []string
	for _, l := range nw.trace {
		if strings.Contains(l, fmt.Sprintf(": %d: %v(", id, kind)) {
			out = append(out, l)
		}
	}
	return out
}

// Reference: docs/membership.md "Timings (defaults)": a node is suspected only when silent on all
// networks for HeartbeatThreshold intervals.
func TestSuspectOnlyWhenSilentOnEveryNetwork(t *testing.T) {
	nw := newNetwork(t, 2, 2)
	nw.run(30)
	if !nw.nodes[1].Alive().Has(2) {
		t.Fatal("node 2 not alive at node 1 after 3 intervals")
	}
	nw.cutNet(1, 2, 0)
	nw.run(100)
	if !nw.nodes[1].Alive().Has(2) {
		t.Fatalf("node 2 suspected with network 1 still up:\n%s", strings.Join(nw.trace, "\n"))
	}
	if got := nw.events(1, NetworkDown); len(got) != 1 {
		t.Fatalf("node 1 NetworkDown events: %q, want one", got)
	}
	nw.cutNet(1, 2, 1)
	nw.run(DefaultThreshold*DefaultIntervalTicks + 1)
	if nw.nodes[1].Alive().Has(2) {
		t.Fatal("node 2 still alive after 5 intervals of silence on both networks")
	}
	got := nw.events(1, PeerSuspected)
	if len(got) != 1 {
		t.Fatalf("PeerSuspected events %q, want one", got)
	}
	nw.heal()
	nw.run(20)
	if !nw.nodes[1].Alive().Has(2) || len(nw.events(1, PeerAlive)) != 2 {
		t.Fatalf("node 2 not alive again after heal:\n%s", strings.Join(nw.trace, "\n"))
	}
}

// Detection time is exactly Threshold intervals after the last heartbeat.
func TestDetectionTime(t *testing.T) {
	nw := newNetwork(t, 3, 2)
	nw.run(25)
	nw.isolate(3, 2)
	nw.run(100)
	found := map[NodeID]bool{}
	for _, e := range nw.got {
		if e.Kind != PeerSuspected || e.node == 3 {
			continue
		}
		if e.Peer != 3 {
			t.Errorf("node %d suspected node %d", e.node, e.Peer)
		}
		found[e.node] = true
		if got := e.tick - e.LastHeard; got != DefaultThreshold*DefaultIntervalTicks {
			t.Errorf("node %d: suspected %d ticks after the last heartbeat, want %d", e.node, got, DefaultThreshold*DefaultIntervalTicks)
		}
	}
	if !found[1] || !found[2] {
		t.Errorf("suspected by %v, want nodes 1 and 2", found)
	}
}

func TestNetworkUpAfterRecovery(t *testing.T) {
	nw := newNetwork(t, 2, 2)
	nw.cutNet(1, 2, 1) // net 1 broken from the start: reported once the peer is alive
	nw.run(80)
	if len(nw.events(1, NetworkDown)) != 1 {
		t.Fatalf("want NetworkDown for a network never heard:\n%s", strings.Join(nw.trace, "\n"))
	}
	nw.heal()
	nw.run(20)
	if len(nw.events(1, NetworkUp)) != 1 {
		t.Fatalf("want NetworkUp after heal:\n%s", strings.Join(nw.trace, "\n"))
	}
}

func TestDropsCounted(t *testing.T) {
	d, err := New(Config{Cluster: 7, Self: 1, Incarnation: 1, Key: testKey, Peers: []NodeID{1, 2}, Networks: 2})
	if err != nil {
		t.Fatal(err)
	}
	seal := func(key []byte, p Packet) []byte {
		b, err := NewSealer(key).Seal(&p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p := Packet{Cluster: 7, From: 2, Incarnation: 5, Seq: 10}
	cases := []struct {
		name string
		net  int
		d    []byte
		want error // nil: accepted
		drop DropReason
	}{
		{"good", 0, seal(testKey, p), nil, 0},
		{"wrong key", 0, seal([]byte("wrong key"), Packet{Cluster: 7, From: 2, Incarnation: 5, Seq: 11}), ErrBadMAC, DropBadMAC},
		{"replayed", 0, seal(testKey, p), errors.New("replay"), DropReplay},
		{"older seq", 0, seal(testKey, Packet{Cluster: 7, From: 2, Incarnation: 5, Seq: 9}), errors.New("replay"), DropReplay},
		{"same seq other net", 1, seal(testKey, Packet{Cluster: 7, Network: 1, From: 2, Incarnation: 5, Seq: 10}), nil, 0},
		{"older incarnation", 0, seal(testKey, Packet{Cluster: 7, From: 2, Incarnation: 4, Seq: 99}), errors.New("replay"), DropReplay},
		{"unknown node", 0, seal(testKey, Packet{Cluster: 7, From: 9, Incarnation: 1, Seq: 1}), errors.New("unknown"), DropUnknownNode},
		{"other cluster", 0, seal(testKey, Packet{Cluster: 8, From: 2, Incarnation: 6, Seq: 1}), errors.New("unknown"), DropUnknownNode},
		{"self", 0, seal(testKey, Packet{Cluster: 7, From: 1, Incarnation: 6, Seq: 1}), errors.New("unknown"), DropUnknownNode},
		{"wrong network", 1, seal(testKey, Packet{Cluster: 7, From: 2, Incarnation: 5, Seq: 12}), errors.New("network"), DropWrongNetwork},
		{"truncated", 0, seal(testKey, p)[:40], ErrMalformed, DropMalformed},
		{"restarted peer", 0, seal(testKey, Packet{Cluster: 7, From: 2, Incarnation: 6, Seq: 1}), nil, 0},
	}
	for _, c := range cases {
		before := d.Counters()
		err := d.Receive(c.net, c.d)
		after := d.Counters()
		if c.want == nil {
			if err != nil || after.Accepted != before.Accepted+1 {
				t.Errorf("%s: err %v, accepted %d->%d", c.name, err, before.Accepted, after.Accepted)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if after.Drops(c.drop) != before.Drops(c.drop)+1 {
			t.Errorf("%s: %v not counted as %v (counters %+v)", c.name, err, c.drop, after)
		}
	}
	rd := d.Ready()
	kinds := make([]string, 0, len(rd.Events))
	for _, e := range rd.Events {
		kinds = append(kinds, e.String())
	}
	want := []string{"PeerAlive(peer 2, inc 5)", "PeerRestarted(peer 2, inc 6)"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("events %q, want %q", kinds, want)
	}
}

func TestConfigErrors(t *testing.T) {
	for name, c := range map[string]Config{
		"self":     {Self: 0, Key: testKey, Networks: 1},
		"networks": {Self: 1, Key: testKey, Networks: 0},
		"key":      {Self: 1, Networks: 1},
		"peer":     {Self: 1, Key: testKey, Networks: 1, Peers: []NodeID{65}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func BenchmarkSealOpen(b *testing.B) {
	s := NewSealer(testKey)
	p := Packet{Cluster: 1, From: 2, Incarnation: 3, Seq: 4}
	for b.Loop() {
		d, _ := s.Seal(&p)
		if _, err := s.Open(d); err != nil {
			b.Fatal(err)
		}
	}
}
