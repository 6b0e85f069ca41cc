package gupbench

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/loadgen"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationBenchIdle measures what an idle cluster's daemons cost:
// for each size in WOLFPACK_BENCH_IDLE (e.g. "2,16"), a fresh cluster,
// formed and with a locker, then three 5 s windows of nothing but
// heartbeats, disk beats and ticks; the CPU of every clusterd
// (/proc/<pid>/stat) over each window. make bench-gup's 16-node figures
// are read against it.
func TestIntegrationBenchIdle(t *testing.T) {
	env := os.Getenv("WOLFPACK_BENCH_IDLE")
	if env == "" {
		t.Skip("set WOLFPACK_BENCH_IDLE=2,16 to measure idle clusters")
	}
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 || n > 16 {
			t.Fatalf("WOLFPACK_BENCH_IDLE=%q: %q is not a size of 2..16", env, f)
		}
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			c := nscluster.Start(t, nscluster.Config{Nodes: n})
			waitWolfpack(t.Context(), t, c, n)
			var pids []int
			for _, nd := range c.Nodes() {
				pids = append(pids, nd.Pid())
			}
			time.Sleep(2 * time.Second) // joins and the first catch-ups done
			var cpus []float64
			for range 3 {
				before, start := ticksOf(pids), time.Now()
				time.Sleep(5 * time.Second)
				cpus = append(cpus, float64(ticksOf(pids)-before)/100/time.Since(start).Seconds())
			}
			slices.Sort(cpus)
			med := loadgen.Median(cpus)
			t.Logf("%d nodes idle: the daemons use %.3f CPUs (%.4f each); windows %.3f, %.3f, %.3f", n, med, med/float64(n), cpus[0], cpus[1], cpus[2])
		})
	}
}

func ticksOf(pids []int) uint64 {
	var s uint64
	for _, p := range pids {
		s += procTicks(p)
	}
	return s
}
