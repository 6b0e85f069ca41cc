package daemon

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

// TestAdvance: the loop runs the ticks due by the clock, each one; a loop
// that wakes a few ticks late runs them all, and one that wakes more than
// maxCatchUp ticks after the core's next tick (a stopped or starved
// process) runs the ticks up to it and drops the rest of the stall, as a
// ticker drops the ticks its reader missed, and counts the ticks after it
// from then on.
func TestAdvance(t *testing.T) {
	now := time.Unix(1000, 0)
	d, err := New(Config{
		ClusterTag: testTag, Key: testKey, Self: 1, Port: 7400,
		Nodes:    []Node{{ID: 1, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}, {ID: 2, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.2")}}},
		Networks: []Network{{Name: "priv1"}},
		Device:   memtarget.New(memtarget.Config{Blocks: 1024}).Nexus("iqn.2024-01.dev.wolfpack:node1"),
		Now:      func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	d.noteStart()
	ms := func(n int) { now = now.Add(time.Duration(n) * time.Millisecond) }
	want := func(tick int64) {
		t.Helper()
		if got := d.node.Now(); got != tick {
			t.Fatalf("at %v after tick 0: the core is at tick %d, want %d", now.Sub(time.Unix(1000, 0)), got, tick)
		}
	}
	// A node not started ticks only for its heartbeat sends: every 10
	// ticks at the default interval, at phase 0.
	if next := d.node.NextTick(); next != 10 {
		t.Fatalf("NextTick %d at tick 0, want 10 (the first heartbeat send)", next)
	}
	ms(9)
	d.advance()
	want(0)
	ms(30) // 39 ms: ticks 1, 2 and 3, all before the send
	d.advance()
	want(3)
	ms(61) // 100 ms: tick 10, the send
	d.advance()
	want(10)
	if !d.node.HasReady() || len(d.node.Ready().Sends) == 0 {
		t.Fatal("tick 10 sent no heartbeat")
	}
	// Woken 40 ms late for tick 20 (a busy machine): ticks up to 24 run
	// at once, the clock's.
	ms(140) // 240 ms
	d.advance()
	want(24)
	// Woken 150 ms late for tick 30 (a stall): tick 30 runs now, and
	// tick 31 is due 10 ms from now.
	ms(210) // 450 ms: tick 45 by the first schedule
	d.advance()
	want(30)
	ms(9)
	d.advance()
	want(30)
	ms(1)
	d.advance()
	want(31)
	if got, want := d.tickAt(40).Sub(now), 90*time.Millisecond; got != want {
		t.Fatalf("tick 40 due in %v, want %v", got, want)
	}
}
