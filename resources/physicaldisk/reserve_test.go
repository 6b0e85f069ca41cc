package physicaldisk

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"

	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

func TestKey(t *testing.T) {
	k, err := Key(2)
	if err != nil || k != 0x5750_4449_534b_0002 {
		t.Fatalf("Key(2) = %#x, %v", k, err)
	}
	if n, ok := KeyNode(k); !ok || n != 2 {
		t.Errorf("KeyNode(%#x) = %d, %v", k, n, ok)
	}
	for _, bad := range []int64{0, -1, MaxNodeID + 1} {
		if _, err := Key(bad); err == nil {
			t.Errorf("Key(%d): no error", bad)
		}
	}
	// A quorum LUN key (cluster tag, node id: internal/core.Key) is never
	// a data-disk key, whatever the tag.
	for _, tag := range []uint64{1, 0x5750_4449, 0xffff_ffff} {
		for node := uint64(1); node <= MaxNodeID; node++ {
			if _, ok := KeyNode(tag<<32 | node); ok {
				t.Fatalf("quorum key %#x taken for a data-disk key", tag<<32|node)
			}
		}
	}
}

// The disk's takeover against the in-memory target, in SPC-4 mode and in
// tgt's (which refuses PREEMPT AND ABORT: the PREEMPT fallback).
func TestTakeOverFencesEveryOtherRegistrant(t *testing.T) {
	for _, compat := range []memtarget.Compat{memtarget.CompatSPC4, memtarget.CompatTgt} {
		t.Run(compat.String(), func(t *testing.T) {
			ctx := context.Background()
			log := slog.New(slog.DiscardHandler)
			lu := memtarget.New(memtarget.Config{Compat: compat})
			n1, n2, n3 := lu.Nexus("node1"), lu.Nexus("node2"), lu.Nexus("node3")
			k1, _ := Key(1)
			k2, _ := Key(2)
			k3, _ := Key(3)

			// Nobody holds it: node1 registers and reserves.
			if err := takeOver(ctx, n1, k1, log); err != nil {
				t.Fatal(err)
			}
			wantState(t, lu, "node1", k1, k1)
			if err := writeBlock(ctx, n1); err != nil {
				t.Fatalf("holder's write: %v", err)
			}
			// A stale registration (node3 registered and left it).
			if err := scsi.RegisterAndIgnore(ctx, n3, k3); err != nil {
				t.Fatal(err)
			}
			if err := writeBlock(ctx, n3); err != nil {
				t.Fatalf("a registrant may write under Registrants Only: %v", err)
			}

			// node2 takes it over: the holder and the stale registrant go.
			if err := takeOver(ctx, n2, k2, log); err != nil {
				t.Fatal(err)
			}
			wantState(t, lu, "node2", k2, k2)
			for _, nx := range []scsi.Device{n1, n3} {
				if err := writeBlock(ctx, nx); !errors.Is(err, scsi.ErrReservationConflict) {
					t.Errorf("fenced nexus's write: %v, want RESERVATION CONFLICT", err)
				}
			}
			if err := checkHeld(ctx, n1, k1); !errors.Is(err, errLost) {
				t.Errorf("node1's check after the takeover: %v, want lost", err)
			}
			if err := checkHeld(ctx, n2, k2); err != nil {
				t.Errorf("node2's check: %v", err)
			}
			// Taking over what one holds changes nothing.
			gen := lu.Generation()
			if err := takeOver(ctx, n2, k2, log); err != nil {
				t.Fatal(err)
			}
			wantState(t, lu, "node2", k2, k2)
			if lu.Generation() != gen+1 { // only the REGISTER AND IGNORE
				t.Errorf("generation %d -> %d, want one registration", gen, lu.Generation())
			}

			// node1's release finds nothing of its own; node2's leaves the disk free.
			if err := release(ctx, n1, k1); err != nil {
				t.Errorf("release of a preempted key: %v", err)
			}
			wantState(t, lu, "node2", k2, k2)
			if err := release(ctx, n2, k2); err != nil {
				t.Fatal(err)
			}
			if regs := lu.Registrations(); len(regs) != 0 {
				t.Errorf("registrations after release: %v", regs)
			}
			if r, ok := lu.Reservation(); ok {
				t.Errorf("reservation after release: %+v", r)
			}
			if err := checkHeld(ctx, n2, k2); !errors.Is(err, errLost) {
				t.Errorf("check after release: %v, want lost", err)
			}
		})
	}
}

func wantState(t *testing.T, lu *memtarget.Target, holder string, holderKey uint64, keys ...uint64) {
	t.Helper()
	r, ok := lu.Reservation()
	if !ok || r.Holder != holder || r.Key != holderKey || r.Type != uint8(ReservationType) {
		t.Errorf("reservation %+v (held %v), want %s with %#x, type %d", r, ok, holder, holderKey, ReservationType)
	}
	var got []uint64
	for _, reg := range lu.Registrations() {
		got = append(got, reg.Key)
	}
	if !slices.Equal(got, keys) {
		t.Errorf("registered keys %s, want %s", keyList(got), keyList(keys))
	}
}

func writeBlock(ctx context.Context, dev scsi.Device) error {
	return scsi.Write16(ctx, dev, 1, 1, make([]byte, 512), false)
}
