package failover

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/loadgen"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationBenchFailover repeats TestIntegrationFailoverOnCrash's
// crash WOLFPACK_BENCH_FAILOVER times on one 2-node cluster (the owner
// crashes, the group comes online on the other node, the crashed node
// reboots and joins; the next round crashes the new owner) and reports
// the median and p95 of the client's outage, of the detection (crash to
// the survivor's install), of the wait (install to the address's online,
// the lease wait as it happened) and the lease wait's bound as logged;
// then as many planned moves of the group back and forth (the client's
// outage, and the move to the group online on its new node).
func TestIntegrationBenchFailover(t *testing.T) {
	env := os.Getenv("WOLFPACK_BENCH_FAILOVER")
	if env == "" {
		t.Skip("set WOLFPACK_BENCH_FAILOVER=N to repeat the crash failover N times")
	}
	runs, err := strconv.Atoi(env)
	if err != nil || runs < 1 || runs > 1000 {
		t.Fatalf("WOLFPACK_BENCH_FAILOVER=%q: want a count of 1..1000", env)
	}
	r := newRig(t, 2, time.Duration(runs)*30*time.Second+2*time.Minute)
	r.createVS(vsOpts{}, 1)
	var outage, detect, wait, bound, online []int64
	owner := 1
	for k := 1; k <= runs; k++ {
		survivor := 3 - owner
		time.Sleep(500 * time.Millisecond)
		mark := r.c.Mark()
		crash := time.Now()
		if err := r.c.Crash(owner); err != nil {
			t.Fatal(err)
		}
		inst := r.waitEvent(survivor, "membership installed", mark, func(e nscluster.Event) bool {
			return nscluster.SameSet(e.Ints("members"), []int{survivor})
		})
		up := r.waitEvent(survivor, "state", mark, resState(resIP, "online-pending"))
		gon := r.waitEvent(survivor, evGroupOnline, mark, ofGroup)
		o := r.outage(crash, survivor)
		var b int64
		if l := r.c.Events(survivor, evLeaseWait, nscluster.And(nscluster.After(mark), ofGroup)); len(l) > 0 {
			n, _ := l[0].Int("ms")
			b = int64(n)
		}
		outage = append(outage, ms(o.Gap))
		detect = append(detect, ms(since(crash, inst)))
		wait = append(wait, ms(up.Time.Sub(inst.Time)))
		bound = append(bound, b)
		online = append(online, ms(since(crash, gon)))
		t.Logf("run=%d crash node%d: outage_ms=%d detect_ms=%d wait_ms=%d lease_wait_bound_ms=%d group_online_ms=%d",
			k, owner, outage[k-1], detect[k-1], wait[k-1], b, online[k-1])
		if o.Gap > maxCrashOutage {
			t.Errorf("run %d: outage %v > %v", k, o.Gap, maxCrashOutage)
		}
		if k == runs {
			break
		}
		mark = r.c.Mark()
		if err := r.c.Reboot(owner); err != nil {
			t.Fatal(err)
		}
		r.c.WaitMembership(r.ctx, t, mark, []int{1, 2}, []int{1, 2})
		// The rebooted node must know the locker and have caught up
		// before it can take the group over.
		r.waitEvent(owner, "locker known", mark, nil)
		owner = survivor
	}
	for _, m := range []struct {
		name string
		v    []int64
	}{{"outage_ms", outage}, {"detect_ms", detect}, {"wait_ms", wait}, {"lease_wait_bound_ms", bound}, {"group_online_ms", online}} {
		t.Logf("failover on crash, %d runs: %s median=%d p95=%d max=%d", runs, m.name,
			loadgen.Median(m.v), loadgen.Percentile(m.v, 95), loadgen.Percentile(m.v, 100))
	}

	// Planned moves, back and forth, as many: the administrator's move
	// (moving_to through the admin API) of the same group.
	// The last round's crashed node comes back first.
	mark := r.c.Mark()
	if err := r.c.Reboot(owner); err != nil {
		t.Fatal(err)
	}
	r.c.WaitMembership(r.ctx, t, mark, []int{1, 2}, []int{1, 2})
	r.waitEvent(owner, "locker known", mark, nil)
	cur := 3 - owner
	var moveOutage, moveOnline []int64
	for k := 1; k <= runs; k++ {
		to := 3 - cur
		time.Sleep(500 * time.Millisecond)
		mark = r.c.Mark()
		move := time.Now()
		r.commitMove(cur, "node"+strconv.Itoa(to))
		gon := r.waitEvent(to, evGroupOnline, mark, ofGroup)
		o := r.outage(move, to)
		moveOutage = append(moveOutage, ms(o.Gap))
		moveOnline = append(moveOnline, ms(since(move, gon)))
		t.Logf("move=%d node%d -> node%d: outage_ms=%d group_online_ms=%d", k, cur, to, moveOutage[k-1], moveOnline[k-1])
		cur = to
	}
	for _, m := range []struct {
		name string
		v    []int64
	}{{"outage_ms", moveOutage}, {"group_online_ms", moveOnline}} {
		t.Logf("planned move, %d runs: %s median=%d p95=%d max=%d", runs, m.name,
			loadgen.Median(m.v), loadgen.Percentile(m.v, 95), loadgen.Percentile(m.v, 100))
	}
}
