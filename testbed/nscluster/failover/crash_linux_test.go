package failover

import (
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// maxCrashOutage bounds the client's outage when the owner crashes:
// detection (500 ms at the default heartbeat), the arbitration, the lease
// wait (a disk beat for a crash) and the online, with a wide margin for a
// loaded machine.
const maxCrashOutage = 5 * time.Second

// TestIntegrationFailoverOnCrash: the owner of the virtual server crashes
// (every process of its namespace SIGKILLed, its links down). The group
// comes online on the survivor: the database names it the owner, the
// client's answers come from it. Measured: the client's outage and the
// times from the crash to the survivor's install, claim, lease wait and
// group online.
func TestIntegrationFailoverOnCrash(t *testing.T) {
	r := newRig(t, 2, 3*time.Minute)
	r.createVS(vsOpts{}, 1)
	time.Sleep(200 * time.Millisecond)

	mark := r.c.Mark()
	crash := time.Now()
	if err := r.c.Crash(1); err != nil {
		t.Fatal(err)
	}
	inst := r.waitEvent(2, "membership installed", mark, func(e nscluster.Event) bool {
		return nscluster.SameSet(e.Ints("members"), []int{2})
	})
	online := r.waitEvent(2, evGroupOnline, mark, ofGroup)
	o := r.outage(crash, 2)
	r.checkOwner(2, 2)

	claim := r.c.Events(2, evClaim, nscluster.And(nscluster.After(mark), ofGroup))
	wait := r.c.Events(2, evLeaseWait, nscluster.And(nscluster.After(mark), ofGroup))
	t.Logf("outage_ms=%d (%v)", ms(o.Gap), o)
	t.Logf("crash_to_install_ms=%d crash_to_online_ms=%d install_to_online_ms=%d",
		ms(since(crash, inst)), ms(since(crash, online)), ms(online.Time.Sub(inst.Time)))
	if len(claim) > 0 {
		t.Logf("crash_to_claim_ms=%d", ms(since(crash, claim[0])))
	} else {
		t.Errorf("node 2 logged no %q for %s after the crash", evClaim, group)
	}
	if len(wait) > 0 {
		w, _ := wait[0].Int("ms")
		t.Logf("crash_to_lease_wait_ms=%d lease_wait_ms=%d", ms(since(crash, wait[0])), w)
	} else {
		t.Logf("lease_wait_ms=0 (no %q event: the disk already showed the owner's lease over)", evLeaseWait)
	}
	if e, ok := r.firstEvent(2, mark, resState(resIP, "online-pending")); ok {
		t.Logf("crash_to_ip_online_pending_ms=%d wait_after_install_ms=%d", ms(since(crash, e)), ms(e.Time.Sub(inst.Time)))
	}
	if e, ok := r.firstEvent(2, mark, resState(resApp, "online")); ok {
		t.Logf("crash_to_app_online_ms=%d", ms(since(crash, e)))
	}
	t.Logf("node 2's timeline from the crash:\n%s", r.timeline(2, mark, crash))
	if o.Gap > maxCrashOutage {
		t.Errorf("outage %v > %v", o.Gap, maxCrashOutage)
	}
	if got := r.answeredBy(crash); len(got) == 0 || got[len(got)-1] != 2 || len(got) > 2 {
		t.Errorf("answers after the crash came from nodes %v, want node 1 then node 2 only", got)
	}
}
