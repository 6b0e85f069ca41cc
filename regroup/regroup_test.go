package regroup

import (
	"github.com/wolfpack-ha/wolfpack/heartbeat"
	"strings"
	"testing"
)

// Reference: docs/membership.md "Partition survival: the rule implemented".
func TestClassify(t *testing.T) {
	all := func(n int) NodeSet {
		var s NodeSet
		for i := 1; i <= n; i++ {
			s = s.Add(NodeID(i))
		}
		return s
	}
	for _, c := range []struct {
		n         int
		partition NodeSet
		want      Class
	}{
		{5, heartbeat.SetOf(3, 4, 5), ClassMajority}, // (a)
		{5, heartbeat.SetOf(1, 2), ClassContested},   // the other side may hold (a)
		{4, heartbeat.SetOf(1, 2), ClassMajority},    // (b): half with the tie-breaker (lowest id)
		{4, heartbeat.SetOf(3, 4), ClassContested},   // half without it
		{2, heartbeat.SetOf(1), ClassUncontested},    // (c): two nodes, disk decides
		{2, heartbeat.SetOf(2), ClassUncontested},    //
		{3, heartbeat.SetOf(1), ClassContested},      // lone survivor of 3: disk, after the majority had its chance
		{4, heartbeat.SetOf(1), ClassContested},      // three on the other side may hold (a)
		{16, all(16).Remove(16), ClassMajority},
	} {
		if got := Classify(all(c.n), c.partition, 1); got != c.want {
			t.Errorf("n=%d partition %v: %v, want %v", c.n, c.partition, got, c.want)
		}
	}
}

// Reference: docs/membership.md "Regroup" (Pruning); MSCS paper (Vogels et
// al.), section "Regroup": a fully connected set, deterministically.
func TestMaxClique(t *testing.T) {
	var rows [65]NodeSet
	hear := func(a NodeID, bs ...NodeID) { rows[a] = heartbeat.SetOf(bs...).Add(a) }
	// 1 hears only 2; 2..5 all hear each other; 3 -> 4 one way only.
	hear(1, 2)
	hear(2, 1, 3, 4, 5)
	hear(3, 2, 4, 5)
	hear(4, 2, 5)
	hear(5, 2, 3, 4)
	cands := heartbeat.SetOf(1, 2, 3, 4, 5)
	adj := Matrix(cands, &rows)
	if got := MaxClique(&adj, cands, 2); got != heartbeat.SetOf(2, 3, 5) {
		t.Errorf("clique with 2: %v, want {2,3,5} (ties prefer lower ids over {2,4,5})", got)
	}
	if got := MaxClique(&adj, cands, 1); got != heartbeat.SetOf(1, 2) {
		t.Errorf("clique with 1: %v, want {1,2}", got)
	}
}

// network pumps messages between nodes and answers every arbitration as
// won (no disk here: the simulator has the real one).
type network struct {
	nodes  map[NodeID]*Node
	events map[NodeID][]Event
}

func newNode(t *testing.T, id NodeID, nodes NodeSet, secret string) *Node {
	n, err := New(Config{Cluster: 1, Self: id, Incarnation: 1, Nodes: nodes, Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range nodes.IDs() {
		n.PeerUp(p)
	}
	return n
}

func (nw *network) pump() {
	for range 1000 {
		busy := false
		for _, id := range heartbeat.SetOf(1, 2, 3, 4).IDs() {
			n := nw.nodes[id]
			if n == nil || !n.HasReady() {
				continue
			}
			busy = true
			rd := n.Ready()
			nw.events[id] = append(nw.events[id], rd.Events...)
			if rd.Arbitrate != nil {
				n.ArbitrationDone(rd.Arbitrate.Round, true, "")
			}
			if rd.Register {
				n.DiskRegistered(nil)
			}
			for _, m := range rd.Messages {
				if to := nw.nodes[m.To]; to != nil {
					to.Step(m)
				}
			}
		}
		if !busy {
			return
		}
	}
}

func (nw *network) tick(ticks int) {
	for range ticks {
		for _, n := range nw.nodes {
			n.Tick()
		}
		nw.pump()
	}
}

// Reference: docs/membership.md "Join (through a sponsor)": the joiner
// authenticates to a sponsor; a
// wrong cluster secret is refused with a clear reason.
func TestJoinWrongSecretRefused(t *testing.T) {
	all := heartbeat.SetOf(1, 2)
	nw := &network{nodes: map[NodeID]*Node{1: newNode(t, 1, all, "right"), 2: newNode(t, 2, all, "wrong")}, events: map[NodeID][]Event{}}
	nw.nodes[1].Form()
	nw.pump()
	nw.nodes[2].Start()
	nw.tick(20)
	var refused *Event
	for _, e := range nw.events[2] {
		if e.Kind == EventJoinFailed && e.Fatal {
			refused = &e
		}
	}
	if refused == nil {
		t.Fatalf("no fatal JoinFailed at node 2: %v", nw.events[2])
	}
	if !strings.Contains(refused.Reason, "cluster secret") {
		t.Errorf("reason %q does not say the secret is wrong", refused.Reason)
	}
	if nw.nodes[2].State() != StateDown {
		t.Errorf("node 2 is %v after refusal, want down", nw.nodes[2].State())
	}
	if _, m := nw.nodes[1].Membership(); m != heartbeat.SetOf(1) {
		t.Errorf("node 1 membership %v after a refused join, want {1}", m)
	}
}

// formThree: node 1 forms, nodes 2 and 3 join through it.
func formThree(t *testing.T) *network {
	all := heartbeat.SetOf(1, 2, 3)
	nw := &network{nodes: map[NodeID]*Node{}, events: map[NodeID][]Event{}}
	for _, id := range all.IDs() {
		nw.nodes[id] = newNode(t, id, all, "secret")
	}
	nw.nodes[1].Form()
	nw.pump()
	nw.nodes[2].Start()
	nw.nodes[3].Start()
	nw.tick(50)
	return nw
}

// Reference: docs/membership.md "Join (through a sponsor)" and its leave
// paragraph; MSCS paper (Vogels et al.), section "Member Join": joins
// through the leader commit a
// new epoch everywhere; ClusterExit removes the node with no regroup.
func TestJoinThenLeave(t *testing.T) {
	all := heartbeat.SetOf(1, 2, 3)
	nw := formThree(t)
	e1, m1 := nw.nodes[1].Membership()
	for _, id := range all.IDs() {
		if e, m := nw.nodes[id].Membership(); e != e1 || m != all || !nw.nodes[id].Registered() {
			t.Fatalf("node %d: epoch %v members %v registered %v; node 1 has %v %v", id, e, m, nw.nodes[id].Registered(), e1, m1)
		}
	}
	if err := nw.nodes[3].Leave(); err != nil {
		t.Fatal(err)
	}
	nw.pump()
	for _, id := range heartbeat.SetOf(1, 2).IDs() {
		if _, m := nw.nodes[id].Membership(); m != heartbeat.SetOf(1, 2) {
			t.Errorf("node %d members %v after node 3 left", id, m)
		}
		for _, e := range nw.events[id] {
			if e.Kind == EventRegroupStarted {
				t.Errorf("node %d regrouped: ClusterExit must not trigger a regroup", id)
			}
		}
	}
}

// An administrator's eviction (SetEvicted, from the cluster database):
// the members regroup the evicted member out, it halts saying it was
// evicted, and when it starts again its join is refused for good, the
// refusal naming the eviction; once no longer evicted it joins.
func TestEvictedNodeIsRemovedAndRefused(t *testing.T) {
	all := heartbeat.SetOf(1, 2, 3)
	nw := formThree(t)
	if _, m := nw.nodes[1].Membership(); m != all {
		t.Fatalf("members %v before the eviction, want %v", m, all)
	}
	for _, id := range all.IDs() {
		nw.nodes[id].SetEvicted(heartbeat.SetOf(3)) // node 3's own database says so too
	}
	nw.tick(500)
	for _, id := range heartbeat.SetOf(1, 2).IDs() {
		if _, m := nw.nodes[id].Membership(); m != heartbeat.SetOf(1, 2) {
			t.Fatalf("node %d: members %v after evicting node 3", id, m)
		}
	}
	halt := lastEvent(nw.events[3], EventHalt)
	if halt == nil || !halt.Evicted || !strings.Contains(halt.Reason, "evicted") {
		t.Fatalf("node 3's halt: %+v; want one that says it was evicted", halt)
	}

	// Restarted (a new incarnation), it asks to join: refused, fatal.
	n3, err := New(Config{Cluster: 1, Self: 3, Incarnation: 2, Nodes: all, Secret: []byte("secret")})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range all.IDs() {
		n3.PeerUp(p)
	}
	nw.nodes[3], nw.events[3] = n3, nil
	n3.Start()
	nw.tick(50)
	refused := lastEvent(nw.events[3], EventJoinFailed)
	if refused == nil || !refused.Fatal || !refused.Evicted || !strings.Contains(refused.Reason, "evicted") || !strings.Contains(refused.Reason, "cluster node add") {
		t.Fatalf("node 3's join: %+v; want a fatal refusal naming the eviction", refused)
	}
	if n3.State() != StateDown {
		t.Fatalf("node 3 is %v after the refusal, want down", n3.State())
	}

	// Added back: it joins.
	for _, id := range heartbeat.SetOf(1, 2).IDs() {
		nw.nodes[id].SetEvicted(0)
	}
	n3, _ = New(Config{Cluster: 1, Self: 3, Incarnation: 3, Nodes: all, Secret: []byte("secret")})
	for _, p := range all.IDs() {
		n3.PeerUp(p)
	}
	nw.nodes[3] = n3
	n3.Start()
	nw.tick(100)
	if _, m := nw.nodes[1].Membership(); m != all || !n3.Member() {
		t.Fatalf("after node 3 was added back: members %v, node 3 member %v", m, n3.Member())
	}
}

func lastEvent(es []Event, k EventKind) *Event {
	for i := len(es) - 1; i >= 0; i-- {
		if es[i].Kind == k {
			return &es[i]
		}
	}
	return nil
}
