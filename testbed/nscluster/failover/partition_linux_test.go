package failover

import (
	"context"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationPartitionedOwner: the owner of the virtual server loses
// the private networks (nscluster's Partition; the public network and the
// quorum LUN stay). It is not the quorum holder, so the holder wins the
// arbitration and preempts its key; until then the owner goes on renewing
// its lease with accepted disk writes, which is the case the new owner's
// wait is for (docs/resources.md: "a partitioned one wrote until it was
// preempted, and its wait stays 350 ms"). Checked as for the frozen owner:
// the address leaves the old owner (its next disk write is refused: it
// halts, exit status 3, and resmon terminates everything; else its lease
// runs out) before the new owner's first ARP claim, and is never on both.
// Fast heartbeat (30 ms, 4 missed), as in TestIntegrationFrozenOwner.
func TestIntegrationPartitionedOwner(t *testing.T) {
	r := newRig(t, 2, 3*time.Minute, nscluster.Timing{HeartbeatInterval: 30 * time.Millisecond, HeartbeatThreshold: 4})
	cl := clusterapi.NewClient(r.c.Node(1).Socket)
	var holder int
	r.poll("a locker", func() (bool, string) {
		in, err := cl.Info(r.ctx)
		holder = in.Locker
		return err == nil && holder != 0, ""
	})
	cl.Close()
	owner := 3 - holder
	r.createVS(vsOpts{preferred: []string{nodeName(owner), nodeName(holder)}}, owner)
	w, err := r.c.WatchAddr(vip, 2*time.Millisecond, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	macNew, err := r.c.Node(holder).MAC("eth0")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	mark := r.c.Mark()
	cut := time.Now()
	if err := r.c.Partition([]int{1}, []int{2}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	st, err := r.c.Node(owner).Wait(wctx)
	if err != nil {
		t.Fatalf("the partitioned owner (node %d) does not stop: %v\n%s", owner, err, r.c.Recent(mark))
	}
	if st.ExitCode() != 3 {
		t.Errorf("the partitioned owner (node %d) exited with status %d, want 3 (fenced: halt)", owner, st.ExitCode())
	}
	online := r.waitEvent(holder, evGroupOnline, mark, ofGroup)
	inst := r.waitEvent(holder, "membership installed", mark, func(e nscluster.Event) bool {
		return nscluster.SameSet(e.Ints("members"), []int{holder})
	})
	o := r.outage(cut, holder)
	r.checkOwner(holder, holder)
	time.Sleep(300 * time.Millisecond)
	w.Close()
	changes, err := w.Changes()
	if err != nil {
		t.Fatal(err)
	}
	var gone, on *nscluster.AddrChange
	for k := range changes {
		ch := &changes[k]
		if ch.At.Before(cut) {
			continue
		}
		if ch.Node == owner && !ch.Present && gone == nil {
			gone = ch
		}
		if ch.Node == holder && ch.Present && on == nil {
			on = ch
		}
	}
	if gone == nil || on == nil {
		t.Fatalf("address changes %v: want gone from node %d and on node %d after the cut", changes, owner, holder)
	}
	var garp *nscluster.ARPFrame
	for _, f := range r.arp.Claims(vip, cut) {
		if f.SenderMAC.String() == macNew.String() {
			garp = &f
			break
		}
	}
	if garp == nil {
		t.Fatalf("no ARP claim of %s from node %d after the cut", vip, holder)
	}
	var bound int
	if l := r.c.Events(holder, evLeaseWait, nscluster.And(nscluster.After(mark), ofGroup)); len(l) > 0 {
		bound, _ = l[0].Int("ms")
	}
	halt, _ := r.firstEvent(owner, mark, func(e nscluster.Event) bool { return e.Msg == "halt" })
	t.Logf("holder node %d, owner node %d: outage_ms=%d (%v)", holder, owner, ms(o.Gap), o)
	t.Logf("cut_to_install_ms=%d cut_to_old_halt_ms=%d cut_to_addr_gone_ms=%d..%d cut_to_new_addr_ms=%d cut_to_first_garp_ms=%d gone_before_garp_ms=%d lease_wait_bound_ms=%d cut_to_online_ms=%d",
		ms(since(cut, inst)), ms(since(cut, halt)), ms(gone.Prev.Sub(cut)), ms(gone.At.Sub(cut)), ms(on.At.Sub(cut)),
		ms(garp.At.Sub(cut)), ms(garp.At.Sub(gone.At)), bound, ms(since(cut, online)))
	t.Logf("timeline:\n%s%s", r.timeline(owner, mark, cut), r.timeline(holder, mark, cut))
	if !gone.At.Before(garp.At) {
		t.Errorf("node %d still had %s at %s, when node %d's first ARP claim came (%s)", owner, vip,
			gone.Prev.Format("15:04:05.000000"), holder, garp.At.Format("15:04:05.000000"))
	}
	if ov := nscluster.Overlaps(changes); len(ov) > 0 {
		t.Errorf("the address on two nodes at once: %v", ov)
	}
	for _, ch := range changes {
		if ch.Node == owner && ch.Present && ch.At.After(gone.At) {
			t.Errorf("the address came back on node %d: %v", owner, ch)
		}
	}
}
