package sim

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

// Nodes booting together (the appliance's boot: every guest powered on
// at once), none told to form: each joins, and forms when its join window
// ends (docs/membership.md, "Join"). The lowest node heard starting forms
// and the others join it: one form arbitration, no contention for the
// quorum disk.

// bootTogether boots every node of s, joining, at the offsets the seed
// draws: even seeds start them within 300 ms in any order; odd seeds start
// the higher ids first, one form stagger apart (within 50 ms), so that
// every join window ends at about the same moment, the case the stagger
// alone does not separate. It returns when the last node booted.
func (s *Sim) bootTogether() (last int64) {
	stagger := int64(regroup.DefaultFormStaggerTicks) * s.cfg.Tick
	for i := 1; i <= s.cfg.Nodes; i++ {
		id := regroup.NodeID(i)
		at := s.randDur(0, 300*Millisecond)
		if s.cfg.Seed%2 == 1 {
			at = int64(s.cfg.Nodes-i)*stagger + s.randDur(0, 50*Millisecond)
		}
		last = max(last, at)
		s.after(at, func() { s.Boot(id, false) })
	}
	return last
}

func (s *Sim) forms() (total int, by []string) {
	for id, k := range s.Metrics.Forms {
		if k > 0 {
			total += k
			by = append(by, fmt.Sprintf("node %d: %d", id, k))
		}
	}
	return total, by
}

// Reference: docs/membership.md "Join (through a sponsor)", nodes
// starting together: exactly one form arbitration, node 1's, and every
// node a stable member within 1 s of the last boot (the others join
// through node 1 in turn). WOLFPACK_SIM_START=FROM:COUNT runs those seeds
// (default 0:200), 2..8 nodes.
func TestStartTogetherOneForms(t *testing.T) {
	from, count := uint64(0), uint64(200)
	if r := os.Getenv("WOLFPACK_SIM_START"); r != "" {
		f, c, ok := strings.Cut(r, ":")
		var err1, err2 error
		from, err1 = strconv.ParseUint(f, 10, 64)
		count, err2 = strconv.ParseUint(c, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			t.Fatalf("WOLFPACK_SIM_START=%q: want FROM:COUNT", r)
		}
	}
	seeds := make(chan uint64)
	var mu sync.Mutex
	var failed []string
	var took []int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range seeds {
				k := 2 + int(seed/2%7)
				s := New(Config{Seed: seed, Nodes: k})
				last := s.bootTogether()
				stable := s.RunUntil(last+15*Second, s.Stable)
				total, by := s.forms()
				var why string
				switch {
				case len(s.Violations) > 0:
					why = s.Violations[0]
				case !stable:
					why = "not stable 15 s after the last boot:\n" + s.Describe()
				case total != 1 || s.Metrics.Forms[1] != 1:
					why = fmt.Sprintf("%d form arbitrations (%s), want one, by node 1", total, strings.Join(by, ", "))
				case s.now-last > Second:
					// One form, then every other node joins through node
					// 1 in turn: 0.73 s at most over seeds 0..199.
					why = fmt.Sprintf("every node a stable member %s after the last boot, want at most 1 s", fmtDur(s.now-last))
				}
				mu.Lock()
				if why != "" {
					failed = append(failed, fmt.Sprintf("seed %d, %d nodes: %s", seed, k, why))
				} else {
					took = append(took, s.now-last)
				}
				mu.Unlock()
			}
		}()
	}
	for seed := from; seed < from+count; seed++ {
		seeds <- seed
	}
	close(seeds)
	wg.Wait()
	slices.Sort(failed)
	for _, f := range failed {
		t.Error(f)
	}
	if len(took) > 0 {
		slices.Sort(took)
		t.Logf("%d seeds, %d passed; last boot → every node a stable member: median %s, p95 %s, max %s",
			count, len(took), fmtDur(took[len(took)/2]), fmtDur(took[len(took)*95/100]), fmtDur(took[len(took)-1]))
	}
}

// Reference: docs/membership.md "Join (through a sponsor)", the bound.
// 3..8 nodes start together (60 seeds); node 1's disk path drops every
// command, so its form arbitration fails (after the command timeout)
// again and again. The others wait for it no longer than its join window
// and one arbitration: they form a cluster without it within 8 s of the
// last boot, one of them forming, and node 1 joins once its disk path
// works.
func TestStartTogetherLowestCannotForm(t *testing.T) {
	var took []int64
	for seed := uint64(0); seed < 60; seed++ {
		k := 3 + int(seed/2%6)
		s := New(Config{Seed: seed, Nodes: k})
		s.setDiskFault(s.nodes[1], memtarget.FaultDrop)
		last := s.bootTogether()
		s.RunUntil(last, nil)
		rest := s.all.Remove(1)
		without1 := func() bool {
			for _, id := range rest.IDs() {
				n := s.nodes[id]
				if _, m := n.core.Membership(); !n.running || n.core.State() != regroup.StateUp || m != rest || !s.registered().Has(id) {
					return false
				}
			}
			return true
		}
		if !s.RunUntil(last+8*Second, without1) {
			t.Fatalf("seed %d, %d nodes: nodes %v did not form without node 1 (no disk path) within 8 s:\n%s", seed, k, rest, s.Describe())
		}
		took = append(took, s.now-last)
		others := 0
		for _, id := range rest.IDs() {
			others += s.Metrics.Forms[id]
		}
		if s.Metrics.Forms[1] < 2 || others != 1 {
			t.Errorf("seed %d, %d nodes: form arbitrations %v (index: node), want node 1 again and again and one by the others",
				seed, k, s.Metrics.Forms[:k+1])
		}
		s.setDiskFault(s.nodes[1], memtarget.FaultNone)
		if !s.RunUntil(s.now+10*Second, s.Stable) {
			t.Fatalf("seed %d, %d nodes: node 1 did not join once its disk path worked:\n%s", seed, k, s.Describe())
		}
		if len(s.Violations) > 0 {
			t.Fatalf("seed %d, %d nodes: %v", seed, k, s.Violations)
		}
	}
	slices.Sort(took)
	t.Logf("60 seeds: last boot → the others members without node 1: median %s, max %s", fmtDur(took[len(took)/2]), fmtDur(took[len(took)-1]))
}
