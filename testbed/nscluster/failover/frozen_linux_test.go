package failover

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationFrozenOwner: the owner's clusterd is frozen (SIGSTOP);
// its resmon and the applications run on, and its kernel still answers
// ARP. The lease must take the address away from it before anyone else
// announces it (docs/resources.md, "What storage cannot fence: the
// lease"):
//
//   - the address leaves node 1 (resmon's lease expiry; sampled every
//     2 ms) before the first ARP frame from node 2's MAC that claims it
//     (captured on the client);
//   - the address is never on both nodes at once, and the ARP claims go
//     from node 1's MAC to node 2's, never back;
//   - thawed, node 1's clusterd finds itself fenced and exits with status
//     3 (halt) without bringing the address back.
//
// The heartbeat is fast (30 ms, 4 missed: the survivor installs its
// membership about 150 ms after the freeze): at the default 500 ms the
// frozen owner's lease (300 ms after its last disk write) is over before
// anyone notices, and the test could not tell a new owner that waits out
// the lease from one that does not.
func TestIntegrationFrozenOwner(t *testing.T) {
	r := newRig(t, 2, 3*time.Minute, nscluster.Timing{HeartbeatInterval: 30 * time.Millisecond, HeartbeatThreshold: 4})
	r.createVS(vsOpts{}, 1)
	w, err := r.c.WatchAddr(vip, 2*time.Millisecond, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	mac2, err := r.c.Node(2).MAC("eth0")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	mark := r.c.Mark()
	freeze := time.Now()
	if err := r.c.Node(1).Stop(); err != nil {
		t.Fatal(err)
	}
	online := r.waitEvent(2, evGroupOnline, mark, ofGroup)
	o := r.outage(freeze, 2)
	r.checkOwner(2, 2)

	// The address left node 1 before node 2 first claimed it.
	changes, err := w.Changes()
	if err != nil {
		t.Fatal(err)
	}
	var gone, on2 *nscluster.AddrChange
	for k := range changes {
		ch := &changes[k]
		if ch.At.Before(freeze) {
			continue
		}
		if ch.Node == 1 && !ch.Present && gone == nil {
			gone = ch
		}
		if ch.Node == 2 && ch.Present && on2 == nil {
			on2 = ch
		}
	}
	if gone == nil || on2 == nil {
		t.Fatalf("address changes %v: want gone from node 1 and on node 2 after the freeze", changes)
	}
	var garp *nscluster.ARPFrame
	for _, f := range r.arp.Claims(vip, freeze) {
		if f.SenderMAC.String() == mac2.String() {
			garp = &f
			break
		}
	}
	if garp == nil {
		t.Fatalf("no ARP frame from node 2 (%s) claims %s after the freeze:\n%v", mac2, vip, r.arp.Frames())
	}
	t.Logf("outage_ms=%d (%v)", ms(o.Gap), o)
	inst := r.waitEvent(2, "membership installed", mark, nil)
	t.Logf("freeze_to_install_ms=%d freeze_to_addr_gone_ms=%d..%d freeze_to_node2_addr_ms=%d freeze_to_first_garp_ms=%d gone_before_garp_ms=%d freeze_to_online_ms=%d",
		ms(since(freeze, inst)), ms(gone.Prev.Sub(freeze)), ms(gone.At.Sub(freeze)), ms(on2.At.Sub(freeze)), ms(garp.At.Sub(freeze)),
		ms(garp.At.Sub(gone.At)), ms(since(freeze, online)))
	if !gone.At.Before(garp.At) {
		t.Errorf("node 1 still had %s at %s, when node 2's first ARP claim came (%s)", vip,
			gone.Prev.Format("15:04:05.000000"), garp.At.Format("15:04:05.000000"))
	}
	if !gone.At.Before(on2.At) {
		t.Errorf("the address appeared on node 2 (%v) before it left node 1 (%v)", on2, gone)
	}

	// Thaw: node 1 must find itself fenced and halt.
	mark2 := r.c.Mark()
	if err := r.c.Node(1).Cont(); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	st, err := r.c.Node(1).Wait(wctx)
	if err != nil {
		t.Fatalf("thawed node 1 does not exit: %v\n%s", err, r.c.Recent(mark2))
	}
	t.Logf("thawed node 1 exited: %v", st)
	if st.ExitCode() != 3 {
		t.Errorf("thawed node 1 exit status %d, want 3 (fenced: halt)\n%s", st.ExitCode(), r.c.Recent(mark2))
	}
	r.poll("node 1's resmon and applications gone", func() (bool, string) {
		ps, _ := r.c.Node(1).Procs()
		return len(ps) == 0, ""
	})
	time.Sleep(300 * time.Millisecond)
	w.Close()
	changes, _ = w.Changes()
	for _, ch := range changes {
		if ch.Node == 1 && ch.Present && ch.At.After(freeze) {
			t.Errorf("the address came back on node 1: %v (all: %v)", ch, changes)
		}
	}
	if ov := nscluster.Overlaps(changes); len(ov) > 0 {
		t.Errorf("the address on two nodes at once: %v", ov)
	}
	if seq := r.macSequence(freeze.Add(-time.Second)); len(seq) == 0 || seq[len(seq)-1] != "node2" ||
		slices.Index(seq, "node2") != len(seq)-1 {
		t.Errorf("ARP claims of %s by MAC in order since the freeze: %v: want node 2's last and once\n%v", vip, seq, r.arp.Frames())
	} else {
		t.Logf("ARP claims by MAC since the freeze: %v", seq)
	}
	if got := r.answeredBy(freeze); len(got) > 2 || got[len(got)-1] != 2 {
		t.Errorf("answers since the freeze from nodes %v: want node 1 then node 2", got)
	}
	t.Logf("timeline:\n%s%s", r.timeline(1, mark, freeze), r.timeline(2, mark, freeze))
}
