package regroup

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/heartbeat"
)

// startNet runs nodes that start on their own (Start, not Form) at chosen
// ticks. The test is their failure detector: a node hears every node that
// has started and is not stopped, and hears as members of a cluster
// (SetInCluster, a heartbeat with an epoch) those that are members. It is
// also the quorum arbiter: a form arbitration is answered after
// formTicks[id] ticks, won unless formFails[id]; every other arbitration
// and registration at once, won.
type startNet struct {
	t         *testing.T
	nodes     map[NodeID]*Node
	logs      map[NodeID]*bytes.Buffer
	started   NodeSet
	stopped   NodeSet
	now       int
	formTicks map[NodeID]int
	formFails map[NodeID]bool
	pending   map[NodeID]pendingArb
	forms     map[NodeID][]int // ticks at which each node asked for a form arbitration
	formed    map[NodeID][]int // ticks at which each node formed
}

type pendingArb struct {
	a   Arbitration
	due int
}

func newStartNet(t *testing.T, n int) *startNet {
	sn := &startNet{t: t, nodes: map[NodeID]*Node{}, logs: map[NodeID]*bytes.Buffer{},
		formTicks: map[NodeID]int{}, formFails: map[NodeID]bool{}, pending: map[NodeID]pendingArb{},
		forms: map[NodeID][]int{}, formed: map[NodeID][]int{}}
	var all NodeSet
	for i := 1; i <= n; i++ {
		all = all.Add(NodeID(i))
	}
	for _, id := range all.IDs() {
		sn.logs[id] = &bytes.Buffer{}
		node, err := New(Config{Cluster: 1, Self: id, Incarnation: 1, Nodes: all, Secret: []byte("secret"),
			Logger: slog.New(slog.NewTextHandler(sn.logs[id], nil))})
		if err != nil {
			t.Fatal(err)
		}
		sn.nodes[id] = node
	}
	return sn
}

// start starts node id now: it and the others hear each other from here on.
func (sn *startNet) start(id NodeID) {
	sn.started = sn.started.Add(id)
	for _, p := range (sn.started &^ sn.stopped).Remove(id).IDs() {
		sn.nodes[id].PeerUp(p)
		sn.nodes[p].PeerUp(id)
	}
	sn.nodes[id].Start()
	sn.pump()
}

// stop stops node id (a crash): nobody hears it any more.
func (sn *startNet) stop(id NodeID) {
	sn.stopped = sn.stopped.Add(id)
	for _, p := range sn.started.Remove(id).IDs() {
		sn.nodes[p].PeerDown(id)
	}
	delete(sn.pending, id)
}

func (sn *startNet) live() NodeSet { return sn.started &^ sn.stopped }

func (sn *startNet) pump() {
	for range 1000 {
		busy := false
		for _, id := range sn.live().IDs() {
			n := sn.nodes[id]
			if !n.HasReady() {
				continue
			}
			busy = true
			rd := n.Ready()
			for _, e := range rd.Events {
				if e.Kind == EventFormed {
					sn.formed[id] = append(sn.formed[id], sn.now)
				}
			}
			if a := rd.Arbitrate; a != nil {
				if a.Class == ClassForm {
					sn.forms[id] = append(sn.forms[id], sn.now)
					sn.pending[id] = pendingArb{a: *a, due: sn.now + sn.formTicks[id]}
				} else {
					n.ArbitrationDone(a.Round, true, "")
				}
			}
			if rd.Register {
				n.DiskRegistered(nil)
			}
			for _, m := range rd.Messages {
				if sn.live().Has(m.To) {
					sn.nodes[m.To].Step(m)
				}
			}
		}
		if !busy {
			return
		}
	}
}

// tick advances every node one tick, after telling each which nodes it
// hears as members, and answers the form arbitrations that are due.
func (sn *startNet) tick() {
	sn.now++
	var members NodeSet
	for _, id := range sn.live().IDs() {
		if sn.nodes[id].Member() {
			members = members.Add(id)
		}
	}
	for _, id := range heartbeat.SetOf(1, 2, 3, 4).IDs() {
		n := sn.nodes[id]
		if n == nil || sn.stopped.Has(id) {
			continue
		}
		n.SetInCluster(members & sn.live())
		n.Tick()
	}
	for _, id := range sn.live().IDs() {
		if p, ok := sn.pending[id]; ok && sn.now >= p.due {
			delete(sn.pending, id)
			sn.nodes[id].ArbitrationDone(p.a.Round, !sn.formFails[id], "no disk path")
		}
	}
	sn.pump()
}

func (sn *startNet) run(ticks int, stop func() bool) bool {
	for range ticks {
		sn.tick()
		if stop != nil && stop() {
			return true
		}
	}
	return false
}

// one reports whether every node in want is a member of exactly want.
func (sn *startNet) one(want NodeSet) bool {
	for _, id := range want.IDs() {
		if _, m := sn.nodes[id].Membership(); !sn.nodes[id].Member() || m != want {
			return false
		}
	}
	return true
}

func (sn *startNet) status() string {
	var b strings.Builder
	for _, id := range sn.started.IDs() {
		n := sn.nodes[id]
		e, m := n.Membership()
		b.WriteString(n.State().String() + " " + e.String() + " " + m.String() + "; ")
	}
	return b.String()
}

// Reference: docs/membership.md "Join (through a sponsor)", nodes
// starting together. Node 3 starts first, node 2 one stagger later and
// node 1 two later, so that every join window ends at the same tick (the
// appliance boot: both nodes formed, and the loser waited out the form
// delay before it joined). Only node 1 forms; 2 and 3 hold off, each
// saying so once, and join it.
func TestJoinStartingTogetherLowestForms(t *testing.T) {
	sn := newStartNet(t, 3)
	stagger := DefaultFormStaggerTicks
	sn.start(3)
	sn.run(stagger, nil)
	sn.start(2)
	sn.run(stagger, nil)
	sn.start(1)
	all := heartbeat.SetOf(1, 2, 3)
	if !sn.run(500, func() bool { return sn.one(all) }) {
		t.Fatalf("no membership of all three after 500 ticks: %s", sn.status())
	}
	if len(sn.forms[1]) != 1 || len(sn.formed[1]) != 1 {
		t.Errorf("node 1 asked for %d form arbitrations and formed %d times, want 1 and 1", len(sn.forms[1]), len(sn.formed[1]))
	}
	for _, id := range heartbeat.SetOf(2, 3).IDs() {
		if len(sn.forms[id]) != 0 {
			t.Errorf("node %d asked for a form arbitration at ticks %v: a lower node was starting too", id, sn.forms[id])
		}
		if got := strings.Count(sn.logs[id].String(), "not forming: a node with a lower id is starting too"); got != 1 {
			t.Errorf("node %d logged holding off %d times, want once:\n%s", id, got, sn.logs[id])
		}
	}
}

// Reference: docs/membership.md "Join (through a sponsor)", the bound.
// Nodes 1 and 2 start together; node 1 cannot form (its form arbitration
// fails after 30 ticks, again and again: no disk path) and refuses node
// 2's probes while it tries. Node 2 holds off for node 1's join window
// and one arbitration, no longer, then forms; node 1 joins it.
func TestJoinLowerCannotFormHigherForms(t *testing.T) {
	sn := newStartNet(t, 2)
	sn.formTicks[1], sn.formFails[1] = 30, true
	sn.start(2)
	sn.start(1)
	n2 := sn.nodes[2]
	bound := int(n2.lowerBound(1))
	window2 := DefaultFormTicks + DefaultFormStaggerTicks
	if !sn.run(bound+2*window2, func() bool { return len(sn.formed[2]) > 0 }) {
		t.Fatalf("node 2 did not form within %d ticks (node 1 cannot form; its wait is %d ticks): %s; node 1 tried at %v",
			bound+2*window2, bound, sn.status(), sn.forms[1])
	}
	if len(sn.forms[1]) < 2 {
		t.Errorf("node 1 tried to form at ticks %v, want again and again", sn.forms[1])
	}
	if first := sn.forms[2][0]; first < bound {
		t.Errorf("node 2 asked for a form arbitration at tick %d, before node 1's wait of %d ticks was over", first, bound)
	}
	if !sn.run(500, func() bool { return sn.one(heartbeat.SetOf(1, 2)) }) {
		t.Fatalf("node 1 did not join node 2: %s", sn.status())
	}
	if !strings.Contains(sn.logs[2].String(), "forming: the nodes with lower ids starting too have not formed in time") {
		t.Errorf("node 2 did not say why it formed:\n%s", sn.logs[2])
	}
}

// Reference: docs/membership.md "Join (through a sponsor)". Node 2 holds
// off for node 1, starting too; node 1 stops (crashes) before its window
// ends. Once its detector no longer hears node 1, node 2 forms at once.
func TestJoinLowerGoneHigherForms(t *testing.T) {
	sn := newStartNet(t, 2)
	sn.start(2)
	sn.run(30, nil)
	sn.start(1) // node 1's window ends 10 ticks after node 2's
	window2 := DefaultFormTicks + DefaultFormStaggerTicks
	sn.run(window2-30+5, nil)
	if len(sn.forms[2]) != 0 {
		t.Fatalf("node 2 formed at %v with node 1 starting too", sn.forms[2])
	}
	sn.stop(1)
	gone := sn.now
	if !sn.run(3, func() bool { return len(sn.formed[2]) > 0 }) {
		t.Fatalf("node 2 did not form within 3 ticks of node 1's going: %s", sn.status())
	}
	if sn.formed[2][0] <= gone {
		t.Errorf("node 2 formed at tick %d, node 1 went at %d", sn.formed[2][0], gone)
	}
	if len(sn.forms[1]) != 0 {
		t.Errorf("node 1 asked for a form arbitration at %v", sn.forms[1])
	}
}

// Reference: docs/membership.md "Join (through a sponsor)", step 3. A
// sponsor busy with another joiner refuses a probe ("busy; queued"), then
// takes this joiner from its queue and challenges it; the refusal, sent
// first, arrives after the Challenge. It must not end the attempt: the
// sponsor goes on with it (the simulator, nodes booting together: the
// attempt failed, the sponsor waited for it until its timeout, twice, and
// the join took 1.5 s more).
func TestJoinStaleRefusalKeepsAttempt(t *testing.T) {
	all := heartbeat.SetOf(1, 2)
	nw := &network{nodes: map[NodeID]*Node{1: newNode(t, 1, all, "secret"), 2: newNode(t, 2, all, "secret")}, events: map[NodeID][]Event{}}
	n1, n2 := nw.nodes[1], nw.nodes[2]
	n1.Form()
	nw.pump()
	n2.Start()
	for _, m := range n2.Ready().Messages {
		n1.Step(m) // the JoinRequest
	}
	for _, m := range n1.Ready().Messages {
		n2.Step(m) // the Challenge: node 2 sends JoinAuth
	}
	n2.Step(Message{Type: MsgJoinRefused, From: 1, To: 2, Reason: "busy; queued"})
	nw.tick(20)
	if e := lastEvent(nw.events[2], EventJoinFailed); e != nil {
		t.Errorf("node 2's attempt failed on a stale refusal: %+v", e)
	}
	if _, m := n2.Membership(); !n2.Member() || m != all {
		t.Fatalf("node 2: %v members %v after 20 ticks, want a member of %v", n2.State(), m, all)
	}
	if lastEvent(nw.events[2], EventJoined) == nil {
		t.Fatalf("node 2 did not join: %v", nw.events[2])
	}
}
