package gupbench

import (
	"cmp"
	"fmt"
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
// for each size in WOLFPACK_BENCH_IDLE (e.g. "2,16") and each timing
// profile in WOLFPACK_BENCH_IDLE_PROFILES (default "default"), a fresh
// cluster, formed and with a locker, each node's clusterd supervising its
// resmon (no resources), then three 5 s windows of nothing but
// heartbeats, disk beats and ticks: the CPU of every clusterd and every
// resmon (/proc/<pid>/stat) over each window, and their resident memory
// (VmRSS) at the end, and how often they woke (context switches of
// all their threads). make bench-gup's 16-node figures are read against
// it; make bench-idle runs 2 nodes at both profiles (BENCHMARKS.md, "Idle
// cost").
func TestIntegrationBenchIdle(t *testing.T) {
	env := os.Getenv("WOLFPACK_BENCH_IDLE")
	if env == "" {
		t.Skip("set WOLFPACK_BENCH_IDLE=2,16 to measure idle clusters")
	}
	profiles := strings.Split(cmp.Or(os.Getenv("WOLFPACK_BENCH_IDLE_PROFILES"), "default"), ",")
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 || n > 16 {
			t.Fatalf("WOLFPACK_BENCH_IDLE=%q: %q is not a size of 2..16", env, f)
		}
		for _, prof := range profiles {
			t.Run(fmt.Sprintf("%d-%s", n, prof), func(t *testing.T) { benchIdle(t, n, prof) })
		}
	}
}

func benchIdle(t *testing.T, n int, profile string) {
	c := nscluster.Start(t, nscluster.Config{Nodes: n, Timing: nscluster.Timing{Profile: profile}})
	waitWolfpack(t.Context(), t, c, n)
	var clusterds, resmons []int
	for _, nd := range c.Nodes() {
		clusterds = append(clusterds, nd.Pid())
		ps, err := nd.Procs()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Comm == "resmon" && p.PPid == nd.Pid() {
				resmons = append(resmons, p.Pid)
			}
		}
	}
	if len(resmons) != n {
		t.Fatalf("%d resmons under %d clusterds", len(resmons), n)
	}
	time.Sleep(2 * time.Second) // joins and the first catch-ups done
	var cd, rm, cdSw, rmSw []float64
	for range 3 {
		c0, r0, start := ticksOf(clusterds), ticksOf(resmons), time.Now()
		cs0, rs0 := switchesOf(clusterds), switchesOf(resmons)
		time.Sleep(5 * time.Second)
		secs := time.Since(start).Seconds()
		cd = append(cd, float64(ticksOf(clusterds)-c0)/100/secs/float64(n))
		rm = append(rm, float64(ticksOf(resmons)-r0)/100/secs/float64(n))
		cdSw = append(cdSw, float64(switchesOf(clusterds)-cs0)/secs/float64(n))
		rmSw = append(rmSw, float64(switchesOf(resmons)-rs0)/secs/float64(n))
	}
	slices.Sort(cd)
	slices.Sort(rm)
	var cdRSS, rmRSS float64
	for i := range n {
		cdRSS += rssMiB(t, clusterds[i]) / float64(n)
		rmRSS += rssMiB(t, resmons[i]) / float64(n)
	}
	cdCPU, rmCPU := loadgen.Median(cd), loadgen.Median(rm)
	t.Logf("%d nodes idle, profile %s, per node: clusterd %.2f %% of a core, %.1f MiB; resmon %.2f %%, %.1f MiB; "+
		"together %.2f %% of a core, %.1f MiB (clusterd windows %.2f, %.2f, %.2f %%)",
		n, profile, 100*cdCPU, cdRSS, 100*rmCPU, rmRSS, 100*(cdCPU+rmCPU), cdRSS+rmRSS, 100*cd[0], 100*cd[1], 100*cd[2])
	t.Logf("%d nodes idle, profile %s, context switches a second per node (median): clusterd %.0f, resmon %.0f",
		n, profile, loadgen.Median(cdSw), loadgen.Median(rmSw))
}

// rssMiB is pid's resident memory (VmRSS) in MiB.
func rssMiB(t *testing.T, pid int) float64 {
	rss, _ := loadgen.ProcMem(pid)
	if rss == 0 {
		t.Fatalf("pid %d: no VmRSS", pid)
	}
	return rss
}

func switchesOf(pids []int) uint64 {
	var s uint64
	for _, p := range pids {
		s += loadgen.ProcSwitches(p)
	}
	return s
}

func ticksOf(pids []int) uint64 {
	var s uint64
	for _, p := range pids {
		s += loadgen.ProcTicks(p)
	}
	return s
}
