package sim

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/resources"

	"github.com/wolfpack-ha/wolfpack/heartbeat"
	"github.com/wolfpack-ha/wolfpack/regroup"
)

// boot forms a stable cluster of n nodes (node 1 forms and holds the
// reservation) without random faults or loss.
func boot(t *testing.T, n int) *Sim {
	t.Helper()
	s := New(Config{Seed: 7, Nodes: n})
	s.Boot(1, true)
	for i := 2; i <= n; i++ {
		s.Boot(regroup.NodeID(i), false)
	}
	if !s.RunUntil(10*Second, s.Stable) {
		t.Fatalf("cluster of %d did not form:\n%s", n, s.Describe())
	}
	return s
}

// settle runs for d and returns the nodes that are running, stable
// members of the one membership of the running, unfrozen members; it fails the test
// on any invariant violation.
func (s *Sim) settle(t *testing.T, d int64) regroup.NodeSet {
	t.Helper()
	s.RunUntil(s.now+d, nil)
	if len(s.Violations) > 0 {
		t.Fatalf("violations: %v", s.Violations)
	}
	var live regroup.NodeSet
	for _, n := range s.nodes[1:] {
		if n.running && !n.frozen && n.core.Member() {
			live = live.Add(n.id)
		}
	}
	for _, id := range live.IDs() {
		if _, m := s.nodes[id].core.Membership(); m != live || !s.registered().Has(id) {
			t.Fatalf("node %d: members %v registered %v, live members %v\n%s", id, m, s.registered().Has(id), live, s.Describe())
		}
	}
	return live
}

// Reference: docs/membership.md "Partition survival: the rule implemented"
// (a): the majority survives,
// the minority halts or is fenced.
func TestPartitionMajoritySurvives(t *testing.T) {
	s := boot(t, 5)
	s.Partition(heartbeat.SetOf(1, 2), heartbeat.SetOf(3, 4, 5))
	if got := s.settle(t, 1500*Millisecond); got != heartbeat.SetOf(3, 4, 5) {
		t.Fatalf("survivors %v, want {3,4,5}\n%s", got, s.Describe())
	}
}

// Reference: docs/membership.md "Partition survival: the rule implemented"
// (b): an exact half survives if it holds the
// tie-breaker (the lowest id of the original membership).
func TestPartitionTieBreaker(t *testing.T) {
	s := boot(t, 4)
	s.Partition(heartbeat.SetOf(1, 2), heartbeat.SetOf(3, 4))
	if got := s.settle(t, 1500*Millisecond); got != heartbeat.SetOf(1, 2) {
		t.Fatalf("survivors %v, want {1,2}\n%s", got, s.Describe())
	}
}

// Reference: docs/membership.md "Partition survival: the rule implemented"
// (c); docs/design.md, "Quorum arbitration": two nodes that lose every private
// network: the reservation holder defends at once and wins; the other's
// PREEMPT after the defence delay fails and it halts.
func TestTwoNodeSplitHolderWins(t *testing.T) {
	s := boot(t, 2)
	s.CutAll(1, 2, true)
	s.CutAll(2, 1, true)
	if got := s.settle(t, 1500*Millisecond); got != heartbeat.SetOf(1) {
		t.Fatalf("survivors %v, want {1} (the holder)\n%s", got, s.Describe())
	}
}

// Silence on one network only is a network failure, not a regroup
// (docs/membership.md "Timings (defaults)": network down).
func TestOneNetworkCutNoRegroup(t *testing.T) {
	s := boot(t, 3)
	s.Metrics.Mark()
	before := s.Metrics.Counts[regroup.EventRegroupStarted]
	for _, o := range []regroup.NodeID{1, 2} {
		s.Cut(0, 3, o, true)
		s.Cut(0, o, 3, true)
	}
	if got := s.settle(t, 2*Second); got != heartbeat.SetOf(1, 2, 3) {
		t.Fatalf("members %v after a single-network cut", got)
	}
	if after := s.Metrics.Counts[regroup.EventRegroupStarted]; after != before {
		t.Fatalf("%d regroups after a single-network cut, want none", after-before)
	}
}

// Reference: docs/design.md, "Tests: three rings" (the ring-3 fault
// "freeze"): the zombie that wakes up
// finds itself fenced and halts.
func TestFrozenNodeFencedOnWake(t *testing.T) {
	s := boot(t, 3)
	s.Freeze(3, 3*Second)
	if got := s.settle(t, 1500*Millisecond); got&heartbeat.SetOf(1, 2) != heartbeat.SetOf(1, 2) || s.registered().Has(3) {
		t.Fatalf("after freezing node 3: live %v, registered %v", got, s.registered())
	}
	s.RunUntil(s.now+2*Second, nil) // it thaws, finds its key gone, halts, restarts, rejoins
	if len(s.Violations) > 0 {
		t.Fatal(s.Violations)
	}
	if !s.RunUntil(s.now+5*Second, s.Stable) {
		t.Fatalf("node 3 did not rejoin:\n%s", s.Describe())
	}
}

// Reference: MSCS paper (Vogels et al.), section "Regroup" (pruning keeps a
// fully connected set); docs/membership.md "Regroup". Nodes 2 and 3 lose
// every network between them while the leader, node 1, still hears all:
// the survivors must be a clique, {1,2,4} (ties go to lower ids), and stay
// so: node 3 restarts and asks to join again, but node 2 never says it
// hears it, so the sponsor never commits it (docs/membership.md "Join").
func TestPruningKeepsClique(t *testing.T) {
	s := boot(t, 4)
	s.CutAll(2, 3, true)
	s.CutAll(3, 2, true)
	if got := s.settle(t, 5*Second); got != heartbeat.SetOf(1, 2, 4) {
		t.Fatalf("survivors %v, want the clique {1,2,4}\n%s", got, s.Describe())
	}
}

// The lease's cost (docs/design.md, "What storage cannot fence"): a node
// crashes while it holds a group; the survivors detect it, regroup, and
// the new owner waits out the crashed owner's lease before it brings the
// group online. Over 20 seeds (random phases), at 3 and 8 nodes: crash
// to the group online on the next preferred node, and the part of it the
// lease wait takes (EventLeaseWait's Ticks: none when a slot read after
// the install already showed the crashed owner's last write a lease ago);
// each seed also passes every invariant, no resource on two nodes
// included.
func TestLeaseCost(t *testing.T) {
	seeds := 20
	if testing.Short() {
		seeds = 3
	}
	for _, k := range []int{3, 8} {
		var total, wait, claim []int64
		for seed := range seeds {
			s := New(Config{Seed: uint64(seed) + 1, Nodes: k})
			s.Boot(1, true)
			for i := 2; i <= k; i++ {
				s.Boot(regroup.NodeID(i), false)
			}
			for _, n := range s.nodes[1:] {
				n.rm.slow, n.rm.stuck = 0, 0 // every online 1-50 ms
			}
			s.startGroups([]GroupSpec{{Name: "g", Props: map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2")},
				Resources: []ResourceSpec{
					{Name: "g-ip", Props: map[string]db.Value{"group": db.StringValue("g"), "type": db.StringValue("ip_address"),
						"address": db.StringValue("10.0.0.10"), "pending_timeout_ms": db.IntValue(2000)}},
					{Name: "g-app", Props: map[string]db.Value{"group": db.StringValue("g"), "type": db.StringValue("generic_application"),
						"command": db.StringValue("/usr/bin/server"), "depends_on": db.ListValue("g-ip"), "pending_timeout_ms": db.IntValue(2000)}},
				}}})
			onlineOn := func(id regroup.NodeID) func() bool {
				return func() bool {
					ok, _, _ := s.groupOK(&s.fm.groups[0])
					return ok && s.fm.holders["g-app"] == nodes.SetOf(id) && s.nodes[id].rm.res["g-app"].state == resources.Online
				}
			}
			if !s.RunUntil(10*Second, func() bool { return s.Stable() && onlineOn(1)() }) {
				t.Fatalf("%d nodes, seed %d: the group is not online on node 1:\n%s", k, seed+1, s.describeGroup("g"))
			}
			s.RunUntil(s.now+Second+s.rng.Int64N(100*Millisecond), nil) // random phase
			crash := s.now
			s.Crash(1, 0)
			if !s.RunUntil(crash+10*Second, onlineOn(2)) {
				t.Fatalf("%d nodes, seed %d: the group is not online on node 2 10s after node 1 crashed:\n%s", k, seed+1, s.describeGroup("g"))
			}
			if len(s.Violations) > 0 {
				t.Fatalf("%d nodes, seed %d: %v", k, seed+1, s.Violations)
			}
			var lw *leaseWait
			for i := range s.fm.leaseWaits {
				if w := &s.fm.leaseWaits[i]; w.node == 2 && w.at >= crash {
					lw = w
				}
			}
			total = append(total, s.now-crash)
			if lw == nil {
				// A slot read after the install saw node 1's last write
				// a lease ago already: nothing left to wait.
				wait = append(wait, 0)
				claim = append(claim, s.now-crash)
				continue
			}
			wait = append(wait, s.now-lw.at)
			claim = append(claim, lw.at-crash)
		}
		ms := func(v int64) string { return fmt.Sprintf("%3dms", v/Millisecond) }
		t.Logf("%d nodes: crash -> group online elsewhere median %s p95 %s max %s | crash -> claim committed (detection, regroup, claim) median %s | claim -> online (what is left of the lease wait, then the onlines) median %s max %s (%.0f%% of the median total)",
			k, ms(median(total)), ms(p95(total)), ms(slices.Max(total)), ms(median(claim)), ms(median(wait)), ms(slices.Max(wait)),
			100*float64(median(wait))/float64(median(total)))
	}
}

// TestEventChainOfACrash: the owner of a group crashes; on every
// survivor the event log (docs/events.md) holds the same events, and the
// group's last event leads back through its cause_event names: online on
// node 2, pulled by node 2, the regroup that removed node 1, node 1 lost
// (silent on every network), each recorded once.
func TestEventChainOfACrash(t *testing.T) {
	s := New(Config{Seed: 3, Nodes: 3})
	s.Boot(1, true)
	s.Boot(2, false)
	s.Boot(3, false)
	for _, n := range s.nodes[1:] {
		n.rm.slow, n.rm.stuck = 0, 0
	}
	s.startGroups([]GroupSpec{{Name: "g", Props: map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2")},
		Resources: []ResourceSpec{{Name: "g-ip", Props: map[string]db.Value{"group": db.StringValue("g"), "type": db.StringValue("ip_address"),
			"address": db.StringValue("10.0.0.10")}}}}})
	lastEvent := func(id regroup.NodeID, typ, node string) bool {
		d := s.nodes[id].state.db
		g, _ := d.Get(db.KindGroup, "g")
		e, ok := d.Get(db.KindEvent, g.Props["event"].Str)
		return ok && e.Props["type"].Str == typ && e.Props["node"].Str == node
	}
	if !s.RunUntil(10*Second, func() bool { return s.Stable() && lastEvent(1, db.EventGroupOnline, "n1") }) {
		t.Fatalf("the group is not online on node 1:\n%s", s.describeGroup("g"))
	}
	s.Crash(1, 0)
	if !s.RunUntil(s.now+10*Second, func() bool { return lastEvent(2, db.EventGroupOnline, "n2") && lastEvent(3, db.EventGroupOnline, "n2") }) {
		t.Fatalf("no group-online on n2 after node 1 crashed:\n%s", s.describeGroup("g"))
	}
	if len(s.Violations) > 0 {
		t.Fatal(s.Violations)
	}
	var chains [2]string
	for i, id := range []regroup.NodeID{2, 3} {
		d := s.nodes[id].state.db
		g, _ := d.Get(db.KindGroup, "g")
		for name := g.Props["event"].Str; name != ""; {
			e, ok := d.Get(db.KindEvent, name)
			if !ok {
				chains[i] += "(" + name + " missing)"
				break
			}
			chains[i] += fmt.Sprintf("#%d %s %s [%s] <- ", e.Props["seq"].Int, e.Props["type"].Str, e.Props["node"].Str, e.Props["cause"].Str)
			name = e.Props["cause_event"].Str
		}
	}
	if chains[0] != chains[1] {
		t.Fatalf("node 2's chain %q, node 3's %q", chains[0], chains[1])
	}
	want := []string{"group-online n2 []", "group-pulled n2 []", "regroup  []", "node-lost n1 [silent on every private network"}
	parts := strings.Split(strings.TrimSuffix(chains[0], " <- "), " <- ")
	if len(parts) != len(want) {
		t.Fatalf("chain %q, want %q", chains[0], want)
	}
	for i, w := range want {
		if _, p, _ := strings.Cut(parts[i], " "); !strings.HasPrefix(p, w) {
			t.Fatalf("chain %q: link %d is %q, want %q", chains[0], i, p, w)
		}
	}
	t.Log(chains[0])
}
