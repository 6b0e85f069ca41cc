package sim

import (
	"fmt"

	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

// Result is the outcome of Run.
type Result struct {
	Seed       uint64
	Nodes      int
	Violations []string
	// StableAfter is how long after the faults stopped (or after boot
	// without faults) every node was a registered member of one stable
	// membership; -1 if that never happened within Config.Settle.
	StableAfter int64
	Faults      []string
	Events      int
	State       string // Describe() at the end
	// Writes and Reads count the GUP clients' acknowledged operations.
	Writes, Reads int
	// FM is what the failover manager's workload did.
	FM FMStats
	// rngEnd is the seed's random stream's next draw after the run: two
	// runs of a seed that drew differently differ here (the digest of
	// runSeeds compares runs of a seed across changes).
	rngEnd uint64
}

// Run boots a cluster (node 1 forms it, the others join), injects the
// seed's faults if cfg.Faults, heals everything, and runs until the
// cluster is stable or Settle expires. Invariants are checked throughout.
func Run(cfg Config) Result {
	s := New(cfg)
	s.Metrics.Mark()
	s.Boot(1, true)
	for i := 2; i <= s.cfg.Nodes; i++ {
		id := regroup.NodeID(i)
		s.after(s.rng.Int64N(50*Millisecond), func() { s.Boot(id, false) })
	}
	res := Result{Seed: cfg.Seed, Nodes: cfg.Nodes, StableAfter: -1}
	if s.cfg.Clients > 0 {
		s.startClients(s.cfg.FaultEnd)
	}
	var groups []GroupSpec
	if s.cfg.Groups > 0 {
		groups = s.genGroups(s.cfg.Groups)
		s.startGroups(groups)
	}
	start := int64(0)
	if s.cfg.Faults {
		res.Faults = s.scheduleFaults()
		if len(groups) > 0 {
			res.Faults = append(res.Faults, s.scheduleFMFaults()...)
		}
		s.RunUntil(s.cfg.FaultEnd, nil)
		s.healAll()
		start = s.cfg.FaultEnd
	}
	if s.RunUntil(start+s.cfg.Settle, s.Stable) {
		res.StableAfter = s.now - start
	} else {
		s.violate("not stable %v after the faults stopped:\n%s", fmtDur(s.cfg.Settle), s.Describe())
	}
	if s.cfg.Clients > 0 && len(s.Violations) == 0 {
		s.checkGUP()
	}
	if len(groups) > 0 && len(s.Violations) == 0 {
		s.checkGroups(groupsSettle)
	}
	res.FM = s.fm.stats
	res.Violations = s.Violations
	res.Events = s.events
	res.Writes, res.Reads = s.acknowledged()
	res.State = s.Describe()
	res.rngEnd = s.rng.Uint64()
	return res
}

// groupsSettle bounds how long after the cluster is stable again (and
// GUP's end checks) every group must be where it belongs: a lease wait, a
// stuck offline and a slow online (each at most the pending timeout), a
// few restarts.
const groupsSettle = 15 * Second

func fmtDur(d int64) string { return fmt.Sprintf("%.3fs", float64(d)/float64(Second)) }

func (s *Sim) initiator(id regroup.NodeID) string {
	return fmt.Sprintf("iqn.2026-01.org.wolfpack:node%d", id)
}

func (s *Sim) healAll() {
	s.tracef(0, "FAULTS END: heal every link and disk path")
	s.Heal()
	s.loss = s.cfg.Loss
	for _, n := range s.nodes[1:] {
		if n.diskFault || n.slow > 0 {
			s.setDiskFault(n, memtarget.FaultNone)
			s.setDiskSlow(n, 0)
		}
	}
}

func (s *Sim) randNode() regroup.NodeID { return regroup.NodeID(1 + s.rng.IntN(s.cfg.Nodes)) }

func (s *Sim) randDur(lo, hi int64) int64 { return lo + s.rng.Int64N(hi-lo) }

// scheduleFaults draws the seed's fault schedule: one fault every 50-600
// ms between FaultStart and FaultEnd, each undone after its duration (and
// everything undone at FaultEnd).
func (s *Sim) scheduleFaults() []string {
	var plan []string
	for t := s.cfg.FaultStart + s.randDur(0, 300*Millisecond); t < s.cfg.FaultEnd; t += s.randDur(50*Millisecond, 600*Millisecond) {
		at := t
		kind := s.rng.IntN(100)
		a, b := s.randNode(), s.randNode()
		d := s.randDur(100*Millisecond, 2500*Millisecond)
		var desc string
		var do func()
		var undo func()
		switch {
		case kind < 15:
			desc = fmt.Sprintf("crash node %d, restart after %s", a, fmtDur(d))
			do = func() { s.Crash(a, d) }
		case kind < 25:
			desc = fmt.Sprintf("freeze node %d for %s", a, fmtDur(d))
			do = func() { s.Freeze(a, d) }
		case kind < 35:
			net := s.rng.IntN(s.cfg.Networks)
			desc = fmt.Sprintf("cut network %d between %d and %d for %s", net, a, b, fmtDur(d))
			do = func() { s.Cut(net, a, b, true); s.Cut(net, b, a, true) }
			undo = func() { s.Cut(net, a, b, false); s.Cut(net, b, a, false) }
		case kind < 45:
			desc = fmt.Sprintf("cut every network between %d and %d for %s", a, b, fmtDur(d))
			do = func() { s.CutAll(a, b, true); s.CutAll(b, a, true) }
			undo = func() { s.CutAll(a, b, false); s.CutAll(b, a, false) }
		case kind < 52:
			desc = fmt.Sprintf("asymmetric: cut %d -> %d on every network for %s", a, b, fmtDur(d))
			do = func() { s.CutAll(a, b, true) }
			undo = func() { s.CutAll(a, b, false) }
		case kind < 67:
			var groups [3]regroup.NodeSet
			k := 2 + s.rng.IntN(2)
			for _, id := range s.all.IDs() {
				g := s.rng.IntN(k)
				groups[g] = groups[g].Add(id)
			}
			desc = fmt.Sprintf("partition %v | %v | %v for %s", groups[0], groups[1], groups[2], fmtDur(d))
			do = func() { s.Partition(groups[:k]...) }
			undo = s.Heal
		case kind < 74:
			// Every private network of one node cut, its disk path
			// working: the others regroup it out and poison it.
			desc = fmt.Sprintf("isolate node %d on every network, disk working, for %s", a, fmtDur(d))
			do = func() { s.Isolate(a) }
			undo = s.Heal
		case kind < 80:
			f := memtarget.FaultDrop
			if s.rng.IntN(2) == 0 {
				f = memtarget.FaultLoseCompletion
			}
			desc = fmt.Sprintf("disk path fault %d on node %d for %s", f, a, fmtDur(d))
			do = func() { s.setDiskFault(s.nodes[a], f) }
			undo = func() { s.setDiskFault(s.nodes[a], memtarget.FaultNone) }
		case kind < 83:
			extra := s.randDur(20*Millisecond, 400*Millisecond)
			desc = fmt.Sprintf("disk path of node %d slow (+%s a command) for %s", a, fmtDur(extra), fmtDur(d))
			do = func() { s.setDiskSlow(s.nodes[a], extra) }
			undo = func() { s.setDiskSlow(s.nodes[a], 0) }
		case kind < 88:
			loss := 0.05 + 0.3*s.rng.Float64()
			desc = fmt.Sprintf("loss %.0f%% for %s", loss*100, fmtDur(d))
			do = func() { s.loss = loss }
			undo = func() { s.loss = s.cfg.Loss }
		case kind < 94:
			desc = fmt.Sprintf("node %d leaves (ClusterExit)", a)
			do = func() {
				if n := s.nodes[a]; n.running && !n.frozen {
					if err := n.core.Leave(); err == nil {
						s.flush(n)
					}
				}
			}
		default:
			desc = fmt.Sprintf("node %d evicts node %d", a, b)
			do = func() {
				if n := s.nodes[a]; n.running && !n.frozen {
					if err := n.core.Evict(b); err == nil {
						s.flush(n)
					}
				}
			}
		}
		plan = append(plan, fmt.Sprintf("%s: %s", fmtDur(at), desc))
		s.after(at, func() { s.tracef(0, "FAULT %s", desc); do(); s.dirty = true })
		if undo != nil && at+d < s.cfg.FaultEnd {
			s.after(at+d, func() { s.tracef(0, "UNDO %s", desc); undo(); s.dirty = true })
		}
	}
	return plan
}
