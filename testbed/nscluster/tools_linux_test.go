package nscluster

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/net/announce"
	"github.com/wolfpack-ha/wolfpack/testbed"
	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// TestIntegrationClientTools checks the failover tests' instruments
// without any daemon: an address moved by hand from node 1 to node 2 (ip
// addr, the echo server, a gratuitous ARP from node 2), seen by the
// Prober (who answers, the outage), the ARP capture (node 2's MAC claims
// the address after node 1's) and the AddrWatch (on one node, then the
// other, never both); then Crash takes every process and link of node 2
// and Reboot clears the address.
func TestIntegrationClientTools(t *testing.T) {
	Require(t)
	standin, err := testbed.BuildGo(t.Context(), "./testbed/nscluster/internal/standin")
	if err != nil {
		t.Fatal(err)
	}
	echo, err := testbed.BuildGo(t.Context(), "./testbed/probe/echo")
	if err != nil {
		t.Fatal(err)
	}
	c := New(t, Config{Nodes: 2, Binary: standin, Deferred: []int{1, 2}})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	vip := netip.MustParseAddr("10.97.0.50")
	const port = 7777

	w, err := c.WatchAddr(vip, 2*time.Millisecond, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	arps, err := c.CaptureARP()
	if err != nil {
		t.Fatal(err)
	}
	up := func(i int) {
		t.Helper()
		n := c.Node(i)
		if out, err := n.Exec(ctx, "ip", "addr", "add", "10.97.0.50/24", "dev", "eth0"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if _, err := n.Spawn("env", "WOLFPACK_PROBE_ID=vs1", echo, "-listen", "0.0.0.0:7777"); err != nil {
			t.Fatal(err)
		}
		err := netns.Visit(n.Netns, func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			a, err := announce.Start(ifi, vip, announce.Config{Count: 1})
			if err != nil {
				return err
			}
			time.AfterFunc(time.Second, a.Stop)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	up(1)
	p, err := c.StartProber(netip.AddrPortFrom(vip, port), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	r, err := p.WaitReply(wctx, time.Time{}, nil)
	wcancel()
	if err != nil {
		n, aerr := arps.Err()
		ps, _ := c.Node(1).Procs()
		out, _ := c.Node(1).Exec(ctx, "ss", "-uapn")
		out2, _ := c.ClientExec(ctx, "ping", "-c1", "-W1", "10.97.0.50")
		out3, _ := c.ClientExec(ctx, "ip", "neigh")
		out4, _ := c.ClientExec(ctx, "ss", "-uapn")
		t.Fatalf("%v\narp errors %d %v %v\nnode 1 runs %v\n%s\n%s\n%s\n%s", err, n, aerr, arps.Frames(), ps, out, out2, out3, out4)
	}
	if r.Node() != 1 || r.From != "vs1/"+c.Node(1).Netns {
		t.Fatalf("first answer from %q (node %d), want vs1/%s", r.From, r.Node(), c.Node(1).Netns)
	}
	time.Sleep(100 * time.Millisecond)

	// The move.
	moved := time.Now()
	if err := c.Crash(1); err != nil {
		t.Fatal(err)
	}
	if ps, _ := c.Node(1).Procs(); len(ps) != 0 {
		t.Fatalf("node 1 still runs %v after Crash", ps)
	}
	if out, err := c.Node(1).Exec(ctx, "ip", "addr", "del", "10.97.0.50/24", "dev", "eth0"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	time.Sleep(50 * time.Millisecond)
	up(2)
	r2, err := p.WaitReply(ctx, moved, func(r Reply) bool { return r.Node() == 2 })
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	o, err := p.Outage(moved, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("outage_ms=%d: %v; first answer from node 2: #%d", o.Gap.Milliseconds(), o, r2.Seq)
	if o.Gap < 50*time.Millisecond || o.Gap > 3*time.Second || o.Before.Node() != 1 || o.After.Node() != 2 {
		t.Errorf("outage %v: want 50 ms..3 s, from node 1 to node 2", o)
	}

	mac1, err := c.Node(1).MAC("eth0")
	if err != nil {
		t.Fatal(err)
	}
	mac2, err := c.Node(2).MAC("eth0")
	if err != nil {
		t.Fatal(err)
	}
	var seq []string
	for _, f := range arps.Claims(vip, time.Time{}) {
		if l := len(seq); l == 0 || seq[l-1] != f.SenderMAC.String() {
			seq = append(seq, f.SenderMAC.String())
		}
	}
	if len(seq) != 2 || seq[0] != mac1.String() || seq[1] != mac2.String() {
		t.Errorf("ARP claims of %s by MAC, in order: %v; want %s then %s\n%v", vip, seq, mac1, mac2, arps.Frames())
	}

	w.Close()
	ch, err := w.Changes()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("address changes: %v", ch)
	if len(ch) != 3 || ch[0].Node != 1 || !ch[0].Present || ch[1].Node != 1 || ch[1].Present || ch[2].Node != 2 || !ch[2].Present {
		t.Errorf("address changes %v: want on node 1, gone from node 1, on node 2", ch)
	}
	if ov := Overlaps(ch); len(ov) != 0 {
		t.Errorf("address on two nodes at once: %v", ov)
	}
	if ov := Overlaps([]AddrChange{{Node: 1, Present: true, At: moved}, {Node: 2, Present: true, At: moved.Add(time.Millisecond)},
		{Node: 1, At: moved.Add(3 * time.Millisecond), Prev: moved.Add(2 * time.Millisecond)}}); len(ov) != 1 {
		t.Errorf("Overlaps missed an overlap: %v", ov)
	}

	// Crash node 2, then reboot it: its address is gone.
	if err := c.Crash(2); err != nil {
		t.Fatal(err)
	}
	if has, err := c.Node(2).HasAddr(vip); err != nil || !has {
		t.Fatalf("after Crash node 2 has %s: %v, %v (a crash keeps the kernel's state until the reboot)", vip, has, err)
	}
	if err := c.Reboot(2); err != nil {
		t.Fatal(err)
	}
	if has, err := c.Node(2).HasAddr(vip); err != nil || has {
		t.Fatalf("after Reboot node 2 has %s: %v, %v", vip, has, err)
	}
	if has, err := c.Node(2).HasAddr(Addr(Public, 2)); err != nil || !has {
		t.Fatalf("after Reboot node 2 lacks its own address: %v, %v", has, err)
	}
}
