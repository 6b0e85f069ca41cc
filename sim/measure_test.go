package sim

import (
	"fmt"
	"slices"
	"testing"

	"github.com/wolfpack-ha/wolfpack/regroup"
)

func median(v []int64) int64 { slices.Sort(v); return v[len(v)/2] }
func p95(v []int64) int64    { slices.Sort(v); return v[(len(v)*95)/100] }

// TestTimings measures detection, regroup and join in virtual time at 2,
// 4, 8 and 16 nodes with the default timings, over 50 seeds each, for a
// crash of an ordinary node and of node 1 (leader and reservation holder),
// and holds them to the targets (BENCHMARKS.md "Targets"): detection
// ≤ 500 ms, regroup ≤ 300 ms,
// join ≤ 500 ms.
func TestTimings(t *testing.T) {
	seeds := 50
	if testing.Short() {
		seeds = 5
	}
	for _, victimName := range []string{"last", "holder"} {
		for _, n := range []int{2, 4, 8, 16} {
			victim := regroup.NodeID(n)
			if victimName == "holder" {
				victim = 1
			}
			var det, c2s, rg, jn []int64
			for seed := range seeds {
				f, err := Measure(Config{Seed: uint64(seed) + 1, Nodes: n}, victim)
				if err != nil {
					t.Fatal(err)
				}
				det, c2s, rg, jn = append(det, f.Detection), append(c2s, f.CrashToSuspicion), append(rg, f.Regroup), append(jn, f.Join)
			}
			ms := func(v int64) string { return fmt.Sprintf("%3dms", v/Millisecond) }
			t.Logf("%2d nodes, crash %-6s: detection (last heartbeat->suspicion) median %s p95 %s | crash->suspicion median %s | regroup median %s p95 %s | join median %s p95 %s",
				n, victimName, ms(median(det)), ms(p95(det)), ms(median(c2s)), ms(median(rg)), ms(p95(rg)), ms(median(jn)), ms(p95(jn)))
			if m := slices.Max(det); m > 500*Millisecond {
				t.Errorf("%d nodes: detection %s > 500 ms", n, ms(m))
			}
			if m := slices.Max(rg); m > 300*Millisecond {
				t.Errorf("%d nodes: regroup %s > 300 ms", n, ms(m))
			}
			if m := slices.Max(jn); m > 500*Millisecond {
				t.Errorf("%d nodes: join %s > 500 ms", n, ms(m))
			}
		}
	}
}

// BenchmarkRegroup reports the virtual-time figures as benchmark metrics.
func BenchmarkRegroup(b *testing.B) {
	for _, n := range []int{2, 4, 8, 16} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			var det, rg, jn int64
			i := 0
			for b.Loop() {
				f, err := Measure(Config{Seed: uint64(i) + 1, Nodes: n}, regroup.NodeID(n))
				if err != nil {
					b.Fatal(err)
				}
				det, rg, jn = det+f.Detection, rg+f.Regroup, jn+f.Join
				i++
			}
			b.ReportMetric(float64(det)/float64(i)/1000, "detect-ms")
			b.ReportMetric(float64(rg)/float64(i)/1000, "regroup-ms")
			b.ReportMetric(float64(jn)/float64(i)/1000, "join-ms")
		})
	}
}
