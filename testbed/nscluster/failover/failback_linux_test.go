package failover

import (
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// maxFailbackOutage bounds a failback's outage: a move (offline, hand
// over, claim, online), with a wide margin. A failback right at the join
// measures about 1.05 s where a later one measures 70 ms: the joiner learns
// the locker only at its periodic announcement (1 s), and its first claim,
// made on its stale local copy of the database, waits for that.
const maxFailbackOutage = 5 * time.Second

// TestIntegrationFailback: preferred owners node1, node2.
//
//   - failback immediate: node 1 (the owner) crashes, the group comes
//     online on node 2; node 1 reboots and joins, and the group moves back
//     to it.
//   - failback window outside the current local hour: the same crash and
//     reboot leave the group on node 2 (for 5 s after node 1 joined);
//     then the window is set around the current hour and the group moves
//     back, which shows that the window alone held it.
func TestIntegrationFailback(t *testing.T) {
	r := newRig(t, 2, 4*time.Minute)
	r.createVS(vsOpts{failback: "immediate"}, 1)

	crashAndReboot := func() (joined time.Time, mark int) {
		t.Helper()
		mark = r.c.Mark()
		crash := time.Now()
		if err := r.c.Crash(1); err != nil {
			t.Fatal(err)
		}
		r.waitEvent(2, evGroupOnline, mark, ofGroup)
		o := r.outage(crash, 2)
		r.checkOwner(2, 2)
		t.Logf("crash: outage_ms=%d", ms(o.Gap))
		mark = r.c.Mark()
		if err := r.c.Reboot(1); err != nil {
			t.Fatal(err)
		}
		r.c.WaitMembership(r.ctx, t, mark, []int{1, 2}, []int{1, 2})
		return time.Now(), mark
	}

	// Immediate.
	joined, mark := crashAndReboot()
	fb := r.waitEvent(2, evFailback, mark, ofGroup)
	online := r.waitEvent(1, evGroupOnline, mark, ofGroup)
	o := r.outage(joined, 1)
	r.checkOwner(1, 2)
	t.Logf("failback immediate: joined_to_failback_ms=%d joined_to_online_ms=%d failback outage_ms=%d (%v)",
		ms(since(joined, fb)), ms(since(joined, online)), ms(o.Gap), o)
	t.Logf("timeline from node 1's join:\n%s%s", r.timeline(2, mark, joined), r.timeline(1, mark, joined))
	if o.Gap > maxFailbackOutage {
		t.Errorf("failback outage %v > %v", o.Gap, maxFailbackOutage)
	}

	// A window that excludes the current hour (and the next: the test
	// may cross an hour).
	h := time.Now().Hour()
	r.setGroup(1, map[string]any{"failback": "window", "failback_window_start": (h + 2) % 24, "failback_window_end": (h + 3) % 24})
	joined, mark = crashAndReboot()
	time.Sleep(5 * time.Second)
	r.checkOwner(2, 1)
	if l := r.c.Events(0, evFailback, nscluster.After(mark)); len(l) > 0 {
		t.Fatalf("failback outside the window [%d, %d) at hour %d: %s", (h+2)%24, (h+3)%24, h, l[0].Format())
	}
	t.Logf("failback window [%d,%d) at hour %d: still on node 2 %v after node 1 joined", (h+2)%24, (h+3)%24, h, time.Since(joined).Round(time.Millisecond))

	// Now a window around the current hour: the group moves back.
	h = time.Now().Hour()
	mark = r.c.Mark()
	set := time.Now()
	r.setGroup(1, map[string]any{"failback_window_start": h, "failback_window_end": (h + 2) % 24})
	r.waitEvent(2, evFailback, mark, ofGroup)
	r.waitEvent(1, evGroupOnline, mark, ofGroup)
	o = r.outage(set, 1)
	r.checkOwner(1, 2)
	t.Logf("failback window [%d,%d) at hour %d: back on node 1, outage_ms=%d", h, (h+2)%24, h, ms(o.Gap))
	if o.Gap > maxFailbackOutage {
		t.Errorf("failback outage %v > %v", o.Gap, maxFailbackOutage)
	}
}
