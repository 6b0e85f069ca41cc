package sim

import (
	"fmt"

	"github.com/wolfpack-ha/wolfpack/regroup"
)

// Figures are the virtual-time measurements of one scenario (docs/design.md,
// "Timings"; BENCHMARKS.md "Targets": detection ≤ 500 ms, regroup ≤ 300 ms,
// join ≤ 500 ms).
type Figures struct {
	Nodes int
	// Detection: last heartbeat received from the crashed node to the
	// survivors' suspicion (the longest over survivors).
	Detection int64
	// CrashToSuspicion: crash to the first suspicion.
	CrashToSuspicion int64
	// Regroup: first RegroupStarted to every survivor stabilised on the new
	// membership with its key registered.
	Regroup int64
	// Join: the restarted node's Start to every node stabilised on the
	// membership that includes it.
	Join int64
}

// Measure boots a cluster of nodes without faults or loss, crashes victim
// (1 is the leader and reservation holder), measures detection and
// regroup, restarts it and measures the join.
func Measure(cfg Config, victim regroup.NodeID) (Figures, error) {
	cfg.Faults = false
	s := New(cfg)
	nodes := s.cfg.Nodes
	s.Boot(1, true)
	for i := 2; i <= nodes; i++ {
		s.Boot(regroup.NodeID(i), false)
	}
	f := Figures{Nodes: nodes}
	if !s.RunUntil(10*Second, s.Stable) {
		return f, fmt.Errorf("%d nodes did not form a stable cluster:\n%s", nodes, s.Describe())
	}
	s.RunUntil(s.now+Second+s.rng.Int64N(100*Millisecond), nil) // settle, random phase
	s.Metrics.Mark()
	crash := s.now
	s.Crash(victim, 0)
	survivors := s.all.Remove(victim)
	stableWithout := func() bool {
		reg := s.registered()
		for _, id := range survivors.IDs() {
			n := s.nodes[id]
			if !n.running || n.core.Stage() != regroup.StageStabilized || !reg.Has(id) {
				return false
			}
			if _, m := n.core.Membership(); m != survivors {
				return false
			}
		}
		return true
	}
	if !s.RunUntil(crash+10*Second, stableWithout) {
		return f, fmt.Errorf("%d nodes: survivors did not stabilise after node %d crashed:\n%s", nodes, victim, s.Describe())
	}
	for _, d := range s.Metrics.Detections {
		f.Detection = max(f.Detection, d)
	}
	f.CrashToSuspicion = s.Metrics.FirstSuspicion - crash
	f.Regroup = s.now - s.Metrics.FirstRegroup
	s.RunUntil(s.now+Second, nil)
	start := s.now
	s.Boot(victim, false)
	if !s.RunUntil(start+10*Second, s.Stable) {
		return f, fmt.Errorf("%d nodes: node %d did not rejoin:\n%s", nodes, victim, s.Describe())
	}
	f.Join = s.now - start
	if len(s.Violations) > 0 {
		return f, fmt.Errorf("%d nodes: %v", nodes, s.Violations)
	}
	return f, nil
}
