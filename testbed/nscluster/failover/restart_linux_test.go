package failover

import (
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationRestartThenFailover: the echo server is killed behind
// resmon's back (SIGKILL) on its owner. The first three times (the
// application's restart_threshold, 3 by default) it is restarted there: a
// new process on the same node, the database's owner unchanged, the
// client's answers back from the same node. The fourth failure is past the
// threshold: the owner pushes the group, which comes online on the other
// node. Measured: each restart's outage and the push's.
func TestIntegrationRestartThenFailover(t *testing.T) {
	r := newRig(t, 2, 3*time.Minute)
	r.createVS(vsOpts{}, 1)

	for k := 1; k <= 4; k++ {
		pid := r.waitEcho(1)
		time.Sleep(100 * time.Millisecond)
		mark := r.c.Mark()
		kill := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		r.waitEvent(1, evResourceFailed, mark, func(e nscluster.Event) bool { return e.String("resource") == resApp })
		if k <= 3 {
			r.waitEvent(1, evRestart, mark, func(e nscluster.Event) bool { return e.String("resource") == resApp })
			np := r.waitEcho(1)
			if np == pid {
				t.Fatalf("kill %d: echo server %d still runs", k, pid)
			}
			o := r.outage(kill, 1)
			r.checkOwner(1, 2)
			if p := r.c.Events(0, evPush, nscluster.After(mark)); len(p) > 0 {
				t.Fatalf("kill %d: pushed before the threshold: %v", k, p[0].Format())
			}
			t.Logf("kill=%d restart outage_ms=%d (%v); new pid %d", k, ms(o.Gap), o, np)
			if got := r.answeredBy(kill); len(got) != 1 || got[0] != 1 {
				t.Errorf("kill %d: answers from nodes %v, want node 1 only", k, got)
			}
			continue
		}
		push := r.waitEvent(1, evPush, mark, ofGroup)
		online := r.waitEvent(2, evGroupOnline, mark, ofGroup)
		o := r.outage(kill, 2)
		r.checkOwner(2, 2)
		t.Logf("kill=4 push: outage_ms=%d (%v) kill_to_push_ms=%d kill_to_online_ms=%d",
			ms(o.Gap), o, ms(since(kill, push)), ms(since(kill, online)))
		t.Logf("timeline:\n%s%s", r.timeline(1, mark, kill), r.timeline(2, mark, kill))
		if n := len(r.echoPids(1)); n != 0 {
			t.Errorf("%d echo servers still on node 1 after the push", n)
		}
		_, _, props, err := r.groupState(2, false)
		if err != nil {
			t.Fatal(err)
		}
		if f, _ := props["failovers"].([]any); len(f) != 1 {
			t.Errorf("group failovers %v: want the one push", props["failovers"])
		}
	}
}
