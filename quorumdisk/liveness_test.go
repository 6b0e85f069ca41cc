package quorumdisk

import (
	"context"
	"testing"
)

// TestDiskLiveness: a node whose slot keeps changing is alive on the disk;
// one whose slot stops is not, after the timeout; a restart (new
// incarnation) counts as a change.
//
// Reference: docs/quorum-disk.md "Heartbeat slot (64 bytes)" (the quorum
// LUN carries one slot per node); docs/design.md, "The disk as the last
// heartbeat path".
func TestDiskLiveness(t *testing.T) {
	ctx := context.Background()
	dev := NewMemBlocks(512, 4096)
	d, err := Format(ctx, dev, FormatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h1 := &Heartbeat{Node: 1, Incarnation: 1}
	h2 := &Heartbeat{Node: 2, Incarnation: 1}
	l := NewDiskLiveness(3)
	for tick := 0; tick < 10; tick++ {
		if err := d.Beat(ctx, h1, int64(tick), 4); err != nil {
			t.Fatal(err)
		}
		if tick < 2 || tick == 8 {
			if tick == 8 {
				h2.Incarnation, h2.Counter = 2, 0 // node 2 rebooted
			}
			if err := d.Beat(ctx, h2, int64(tick), 4); err != nil {
				t.Fatal(err)
			}
		}
		hs, err := d.ReadHeartbeats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l.Observe(hs)
		want2 := tick >= 1 && tick <= 3 || tick >= 8
		if l.Alive(1) != (tick >= 1) || l.Alive(2) != want2 || l.Alive(3) {
			t.Fatalf("tick %d: alive 1=%v 2=%v (want %v) 3=%v", tick, l.Alive(1), l.Alive(2), want2, l.Alive(3))
		}
		l.Tick()
	}
}
