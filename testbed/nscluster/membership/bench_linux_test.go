package membership

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationBenchMembership measures, on real processes in namespaces,
// for each cluster size: detection (SIGKILL of the highest-id node → the
// first "peer suspected" of it on a survivor; also the silence the detector
// reports with it, last heartbeat heard → suspicion, "silent_ms"), regroup
// (that suspicion → the last survivor's "membership installed") and join
// (the restarted node's process start → its "joined"), over
// WOLFPACK_BENCH_RUNS kills and restarts (default 15). It runs only with
// WOLFPACK_BENCH_MEMBERSHIP set to a list of sizes ("2,4,8,16"; make
// bench-membership).
func TestIntegrationBenchMembership(t *testing.T) {
	sizesEnv := os.Getenv("WOLFPACK_BENCH_MEMBERSHIP")
	if sizesEnv == "" {
		t.Skip("set WOLFPACK_BENCH_MEMBERSHIP=2,4,8,16 (make bench-membership) to run the membership benchmark")
	}
	runs := 15
	if s := os.Getenv("WOLFPACK_BENCH_RUNS"); s != "" {
		var err error
		if runs, err = strconv.Atoi(s); err != nil || runs < 1 {
			t.Fatalf("WOLFPACK_BENCH_RUNS=%q", s)
		}
	}
	var sizes []int
	for _, f := range strings.Split(sizesEnv, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 || n > 16 {
			t.Fatalf("WOLFPACK_BENCH_MEMBERSHIP=%q: want sizes 2..16", sizesEnv)
		}
		sizes = append(sizes, n)
	}
	var table []string
	for _, n := range sizes {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			r := benchSize(t, n, runs)
			table = append(table, r)
		})
	}
	t.Logf("membership on real processes, %d kill/restart cycles per size, median / p95:\n"+
		"| nodes | last heard → suspicion (detector's silent_ms) | kill → first suspicion | kill → last suspicion | regroup (first suspicion → last install) | kill → last install | join (process start → joined) | join → every node installed | cold start: first process → all members |\n"+
		"|---|---|---|---|---|---|---|---|---|\n%s", runs, strings.Join(table, "\n"))
}

func benchSize(t *testing.T, n, runs int) string {
	c := newCluster(t, nscluster.Config{Nodes: n})
	ctx, cancel := context.WithTimeout(t.Context(), time.Duration(60+runs*30)*time.Second)
	defer cancel()
	all := ids(n)
	formed := waitMembership(ctx, t, c, 0, all, all)
	first, _ := c.WaitEvent(ctx, 0, nscluster.MsgStarted, nil)
	cold := lastInstall(formed).Sub(first.Time)

	victim := n
	survivors := without(all, victim)
	var detFirst, detLast, silent, regroup, total, join, joinAll stats
	for r := 0; r < runs; r++ {
		// The loop runs right after an install, which follows a heartbeat:
		// a random phase keeps the kill (and the restart) from landing at
		// the same point of the heartbeat interval every time.
		randomPhase(ctx, t)
		mark := c.Mark()
		killed := time.Now()
		if err := c.Node(victim).Kill(); err != nil {
			t.Fatal(err)
		}
		evs := waitMembership(ctx, t, c, mark, survivors, survivors)
		susp := c.Events(0, msgSuspected, nscluster.And(nscluster.After(mark), func(e nscluster.Event) bool {
			p, _ := e.Int("peer")
			return p == victim
		}))
		if len(susp) == 0 {
			t.Fatalf("run %d: survivors installed %v without suspecting node %d\n%s", r, survivors, victim, recent(c, mark))
		}
		firstS, lastS := susp[0].Time, susp[0].Time
		sil, _ := susp[0].Int("silent_ms")
		for _, e := range susp {
			if e.Time.Before(firstS) {
				firstS = e.Time
				sil, _ = e.Int("silent_ms")
			}
			if e.Time.After(lastS) {
				lastS = e.Time
			}
		}
		inst := lastInstall(evs)
		detFirst = append(detFirst, firstS.Sub(killed))
		detLast = append(detLast, lastS.Sub(killed))
		silent = append(silent, time.Duration(sil)*time.Millisecond)
		regroup = append(regroup, inst.Sub(firstS))
		total = append(total, inst.Sub(killed))

		randomPhase(ctx, t)
		mark = c.Mark()
		if err := c.Node(victim).Start(); err != nil {
			t.Fatal(err)
		}
		started := c.Node(victim).Started()
		j, err := c.WaitEvent(ctx, victim, msgJoined, nscluster.After(mark))
		if err != nil {
			t.Fatalf("run %d: %v\n%s", r, err, recent(c, mark))
		}
		evs = waitMembership(ctx, t, c, mark, all, all)
		join = append(join, j.Time.Sub(started))
		joinAll = append(joinAll, lastInstall(evs).Sub(started))
		t.Logf("run %d: detection %v (last %v), regroup %v, join %v (all %v)", r,
			detFirst[r].Round(time.Millisecond), detLast[r].Round(time.Millisecond), regroup[r].Round(time.Millisecond),
			join[r].Round(time.Millisecond), joinAll[r].Round(time.Millisecond))
	}
	med := func(s stats) string { return fmt.Sprintf("%d / %d", ms(s.quantile(0.5)), ms(s.quantile(0.95))) }
	row := fmt.Sprintf("| %d | %s | %s | %s | %s | %s | %s | %s | %d |", n, med(silent), med(detFirst), med(detLast), med(regroup), med(total), med(join), med(joinAll), ms(cold))
	t.Logf("nodes=%d last heard→suspicion %s; kill→suspicion %s; last suspicion %s; regroup %s; kill→install %s; join %s; join→all %s; cold start %v",
		n, silent, detFirst, detLast, regroup, total, join, joinAll, cold.Round(time.Millisecond))
	return row
}

// randomPhase waits a random 0-200 ms (two heartbeat intervals) to put the
// next fault at a random point of the heartbeat cycle. It is not a wait for
// a condition: the timing itself is the point.
func randomPhase(ctx context.Context, t *testing.T) {
	tm := time.NewTimer(rand.N(200 * time.Millisecond))
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
}
