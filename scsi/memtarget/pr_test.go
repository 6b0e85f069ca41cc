package memtarget

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

const (
	keyA uint64 = 0xaaaa
	keyB uint64 = 0xbbbb
	keyC uint64 = 0xcccc
)

// three returns a target with nexuses a, b, c; a and b registered.
func three(t *testing.T, c Compat) (*Target, *lun, *lun, *lun) {
	t.Helper()
	tg := newLU(t, Config{Compat: c})
	a, b, cc := open(t, tg, "a"), open(t, tg, "b"), open(t, tg, "c")
	mustGood(t, a.register(0, keyA))
	mustGood(t, b.register(0, keyB))
	return tg, a, b, cc
}

// Reference: SPC-4 5.12.7 (registering), 6.16.2 (REGISTER, REGISTER AND
// IGNORE EXISTING KEY).
func TestRegister(t *testing.T) {
	for _, c := range []Compat{CompatSPC4, CompatTgt} {
		t.Run(c.String(), func(t *testing.T) {
			tg := newLU(t, Config{Compat: c})
			a := open(t, tg, "a")
			b := open(t, tg, "b")

			wantStatus(t, "unregistered, non-zero key", a.register(1, keyA), scsi.StatusReservationConflict)
			mustGood(t, a.register(0, 0)) // no-op, still counted
			mustGood(t, a.register(0, keyA))
			mustGood(t, b.register(0, keyB))
			wantStatus(t, "registered, wrong key", a.register(keyB, 0x1), scsi.StatusReservationConflict)
			mustGood(t, a.register(keyA, 0xa2))
			mustGood(t, a.prOut(saRegisterAndIgnoreKey, 0, 0xdead, keyA))
			mustGood(t, open(t, tg, "c").prOut(saRegisterAndIgnoreKey, 0, 0xdead, keyC))

			gen, keys := b.keys()
			if want := []uint64{keyA, keyB, keyC}; !slices.Equal(keys, want) {
				t.Errorf("keys %x, want %x", keys, want)
			}
			if gen != 6 {
				t.Errorf("PRgeneration %d, want 6", gen)
			}
			mustGood(t, b.register(keyB, 0))
			if _, keys = a.keys(); !slices.Equal(keys, []uint64{keyA, keyC}) {
				t.Errorf("after unregister keys %x", keys)
			}
			// Two nexuses may share a key.
			mustGood(t, b.register(0, keyA))
			if _, keys = a.keys(); !slices.Equal(keys, []uint64{keyA, keyC, keyA}) {
				t.Errorf("shared key: keys %x", keys)
			}
		})
	}
}

// Reference: SPC-4 5.12.9 (reserving), 6.16.3.4 (types).
func TestReserve(t *testing.T) {
	for _, typ := range allTypes {
		t.Run(fmt.Sprint("type", typ), func(t *testing.T) {
			tg, a, b, c := three(t, CompatSPC4)
			wantStatus(t, "unregistered", c.reserve(0, typ), scsi.StatusReservationConflict)
			wantStatus(t, "wrong key", a.reserve(keyB, typ), scsi.StatusReservationConflict)
			mustGood(t, a.reserve(keyA, typ))
			mustGood(t, a.reserve(keyA, typ)) // same type again: GOOD
			other := uint8(1)
			if typ == 1 {
				other = 3
			}
			wantStatus(t, "holder, other type", a.reserve(keyA, other), scsi.StatusReservationConflict)
			if allRegistrants(typ) {
				mustGood(t, b.reserve(keyB, typ)) // every registrant is a holder
			} else {
				wantStatus(t, "non-holder", b.reserve(keyB, typ), scsi.StatusReservationConflict)
			}
			key, gotTyp, ok := c.resv()
			wantKey := keyA
			if allRegistrants(typ) {
				wantKey = 0
			}
			if !ok || key != wantKey || gotTyp != typ {
				t.Errorf("READ RESERVATION key %x type %d ok %v, want %x %d", key, gotTyp, ok, wantKey, typ)
			}
			if gen, _ := a.keys(); gen != 2 {
				t.Errorf("RESERVE changed PRgeneration to %d", gen)
			}
			r, ok := tg.Reservation()
			if !ok || r.Type != typ || (allRegistrants(typ) != (r.Holder == "")) {
				t.Errorf("Reservation() %+v %v", r, ok)
			}
		})
	}
	t.Run("bad type and scope", func(t *testing.T) {
		_, a, _, _ := three(t, CompatSPC4)
		for _, typ := range []uint8{0, 2, 4, 9, 0x15} {
			wantSense(t, fmt.Sprint("type ", typ), a.reserve(keyA, typ), scsi.SenseIllegalRequest, 0x24, 0)
		}
	})
}

// Reference: SPC-4 5.12.1 Table 60, SBC-3 4.18.2 Table 13: which commands
// conflict, per reservation type, for the holder, a registered nexus and an
// unregistered one.
func TestConflictMatrix(t *testing.T) {
	const (
		ok = scsi.StatusGood
		rc = scsi.StatusReservationConflict
	)
	// want[type] = {read, write} for {holder, registered, unregistered}.
	want := map[uint8][3][2]scsi.Status{
		1: {{ok, ok}, {ok, rc}, {ok, rc}},
		3: {{ok, ok}, {rc, rc}, {rc, rc}},
		5: {{ok, ok}, {ok, ok}, {ok, rc}},
		6: {{ok, ok}, {ok, ok}, {rc, rc}},
		7: {{ok, ok}, {ok, ok}, {ok, rc}},
		8: {{ok, ok}, {ok, ok}, {rc, rc}},
	}
	for _, c := range []Compat{CompatSPC4, CompatTgt} {
		for _, typ := range allTypes {
			t.Run(fmt.Sprintf("%v/type%d", c, typ), func(t *testing.T) {
				_, a, b, u := three(t, c)
				mustGood(t, a.reserve(keyA, typ))
				for i, l := range []*lun{a, b, u} {
					resp, _ := l.read(0, 1, 512)
					wantStatus(t, l.name+" READ(16)", resp, want[typ][i][0])
					wantStatus(t, l.name+" WRITE(16)", l.write(0, make([]byte, 512), 512), want[typ][i][1])
					sync := make([]byte, 16)
					sync[0] = opSyncCache16
					wantStatus(t, l.name+" SYNCHRONIZE CACHE(16)", l.exec(sync, scsi.DirNone, nil), want[typ][i][1])
					// Always allowed.
					wantStatus(t, l.name+" TEST UNIT READY", l.tur(), ok)
					resp, _ = l.inquiry(false, 0, 36)
					wantStatus(t, l.name+" INQUIRY", resp, ok)
					rc16 := make([]byte, 16)
					rc16[0], rc16[1], rc16[13] = 0x9e, 0x10, 32
					wantStatus(t, l.name+" READ CAPACITY(16)", l.exec(rc16, scsi.DirFromDevice, make([]byte, 32)), ok)
					resp, _ = l.prIn(saReadKeys, 64)
					wantStatus(t, l.name+" READ KEYS", resp, ok)
				}
			})
		}
	}
}

// Reference: SPC-4 5.12.11.2 (releasing): RESERVATIONS RELEASED to the
// other registrants for the registrants-only and all-registrants types only.
func TestRelease(t *testing.T) {
	for _, typ := range allTypes {
		t.Run(fmt.Sprint("type", typ), func(t *testing.T) {
			tg, a, b, c := three(t, CompatSPC4)
			wantStatus(t, "unregistered", c.release(0, typ), scsi.StatusReservationConflict)
			mustGood(t, b.release(keyB, typ)) // no reservation: GOOD
			mustGood(t, a.reserve(keyA, typ))
			if !allRegistrants(typ) {
				mustGood(t, b.release(keyB, typ)) // not the holder: GOOD, no change
				if _, _, ok := c.resv(); !ok {
					t.Fatal("non-holder RELEASE released the reservation")
				}
			}
			wantStatus(t, "wrong key", a.release(keyB, typ), scsi.StatusReservationConflict)
			other := uint8(1)
			if typ == 1 {
				other = 3
			}
			wantSense(t, "other type", a.release(keyA, other), scsi.SenseIllegalRequest, 0x26, 0x04)
			mustGood(t, a.release(keyA, typ))
			if _, _, ok := c.resv(); ok {
				t.Fatal("reservation survived RELEASE")
			}
			if registrantsOnly(typ) || allRegistrants(typ) {
				wantAttentions(t, tg, "b", uaReleased)
			} else {
				wantAttentions(t, tg, "b")
			}
			wantAttentions(t, tg, "a")
			wantAttentions(t, tg, "c")
			if gen, keys := a.keys(); gen != 2 || len(keys) != 2 {
				t.Errorf("RELEASE changed PRgeneration (%d) or keys (%x)", gen, keys)
			}
		})
	}
	t.Run("all registrants, by any registrant", func(t *testing.T) {
		tg, a, b, _ := three(t, CompatSPC4)
		mustGood(t, a.reserve(keyA, TypeWriteExclusiveAllRegistrants))
		mustGood(t, b.release(keyB, TypeWriteExclusiveAllRegistrants))
		if _, ok := tg.Reservation(); ok {
			t.Fatal("reservation survived RELEASE by another registrant")
		}
	})
}

// Reference: SPC-4 5.12.11.2 (a registration removed with REGISTER releases
// the reservation it held).
func TestUnregisterHolder(t *testing.T) {
	for _, typ := range allTypes {
		t.Run(fmt.Sprint("type", typ), func(t *testing.T) {
			tg, a, b, _ := three(t, CompatSPC4)
			mustGood(t, a.reserve(keyA, typ))
			mustGood(t, a.register(keyA, 0))
			_, ok := tg.Reservation()
			if allRegistrants(typ) {
				if !ok {
					t.Fatal("all-registrants reservation lost with one registrant")
				}
				wantAttentions(t, tg, "b")
				mustGood(t, b.register(keyB, 0)) // the last one
				if _, _, ok := open(t, tg, "c").resv(); ok {
					t.Fatal("reservation survived its last registrant")
				}
				return
			}
			if ok {
				t.Fatal("reservation survived its holder's unregistration")
			}
			if registrantsOnly(typ) {
				wantAttentions(t, tg, "b", uaReleased)
			} else {
				wantAttentions(t, tg, "b")
			}
			if gen := tg.Generation(); gen != 3 {
				t.Errorf("PRgeneration %d, want 3", gen)
			}
		})
	}
}

// Reference: SPC-4 5.12.11.6 (clearing): everything goes, RESERVATIONS
// PREEMPTED to the other registered nexuses.
func TestClear(t *testing.T) {
	tg, a, b, c := three(t, CompatSPC4)
	mustGood(t, a.reserve(keyA, TypeExclusiveAccess))
	wantStatus(t, "unregistered", c.prOut(saClear, 0, 0, 0), scsi.StatusReservationConflict)
	wantStatus(t, "wrong key", b.prOut(saClear, 0, keyA, 0), scsi.StatusReservationConflict)
	mustGood(t, b.prOut(saClear, 0, keyB, 0))
	gen, keys := c.keys()
	if gen != 3 || len(keys) != 0 {
		t.Errorf("after CLEAR: gen %d keys %x", gen, keys)
	}
	if _, _, ok := c.resv(); ok {
		t.Error("reservation survived CLEAR")
	}
	wantAttentions(t, tg, "a", uaPreempted)
	wantAttentions(t, tg, "b")
	wantAttentions(t, tg, "c")
	wantUA(t, "a after CLEAR", a.tur(), 0x03)
	mustGood(t, a.tur())
}

// Reference: SPC-4 5.12.11.4 (preempting).
func TestPreempt(t *testing.T) {
	t.Run("holder, same type", func(t *testing.T) {
		// Reference: SPC-4 5.12.11.4.3.
		tg, a, b, _ := three(t, CompatSPC4)
		mustGood(t, a.reserve(keyA, TypeWriteExclusiveRegistrantsOnly))
		mustGood(t, b.preempt(keyB, keyA, TypeWriteExclusiveRegistrantsOnly))
		if key, typ, ok := b.resv(); !ok || key != keyB || typ != 5 {
			t.Errorf("reservation %x type %d ok %v", key, typ, ok)
		}
		if gen, keys := b.keys(); gen != 3 || !slices.Equal(keys, []uint64{keyB}) {
			t.Errorf("gen %d keys %x", gen, keys)
		}
		wantAttentions(t, tg, "a", uaRegsPreempted)
		// The preempted node: UA first, then fenced from writes, reads still work.
		wantUA(t, "a's next write", a.write(0, make([]byte, 512), 512), 0x05)
		wantStatus(t, "a's write", a.write(0, make([]byte, 512), 512), scsi.StatusReservationConflict)
		resp, _ := a.read(0, 1, 512)
		mustGood(t, resp)
		mustGood(t, b.write(0, make([]byte, 512), 512))
	})
	t.Run("holder, type change", func(t *testing.T) {
		tg, a, b, c := three(t, CompatSPC4)
		mustGood(t, c.register(0, keyC))
		mustGood(t, a.reserve(keyA, TypeWriteExclusive))
		mustGood(t, b.preempt(keyB, keyA, TypeExclusiveAccessRegistrantsOnly))
		wantAttentions(t, tg, "a", uaRegsPreempted)
		wantAttentions(t, tg, "b")
		wantAttentions(t, tg, "c", uaReleased)
	})
	t.Run("registration only", func(t *testing.T) {
		// Reference: SPC-4 5.12.11.4.4 (removing registrations).
		tg, a, _, c := three(t, CompatSPC4)
		mustGood(t, c.register(0, keyC))
		mustGood(t, a.reserve(keyA, TypeWriteExclusive))
		mustGood(t, a.preempt(keyA, keyC, TypeWriteExclusive))
		if key, _, _ := a.resv(); key != keyA {
			t.Errorf("holder changed to %x", key)
		}
		if _, keys := a.keys(); !slices.Equal(keys, []uint64{keyA, keyB}) {
			t.Errorf("keys %x", keys)
		}
		wantAttentions(t, tg, "b")
		wantAttentions(t, tg, "c", uaRegsPreempted)
	})
	t.Run("no reservation", func(t *testing.T) {
		tg, a, _, _ := three(t, CompatSPC4)
		mustGood(t, a.preempt(keyA, keyB, TypeWriteExclusive))
		if _, _, ok := a.resv(); ok {
			t.Error("PREEMPT without a reservation created one")
		}
		wantAttentions(t, tg, "b", uaRegsPreempted)
	})
	t.Run("all registrants, zero key", func(t *testing.T) {
		// Reference: SPC-4 5.12.11.4.3: a zero SERVICE ACTION RESERVATION
		// KEY preempts every other registrant of an all-registrants type.
		tg, a, b, c := three(t, CompatSPC4)
		mustGood(t, c.register(0, keyC))
		mustGood(t, a.reserve(keyA, TypeWriteExclusiveAllRegistrants))
		mustGood(t, b.preempt(keyB, 0, TypeWriteExclusiveRegistrantsOnly))
		if key, typ, ok := b.resv(); !ok || key != keyB || typ != 5 {
			t.Errorf("reservation %x type %d ok %v", key, typ, ok)
		}
		wantAttentions(t, tg, "a", uaRegsPreempted)
		wantAttentions(t, tg, "c", uaRegsPreempted)
	})
	t.Run("all registrants, non-zero key", func(t *testing.T) {
		tg, a, b, _ := three(t, CompatSPC4)
		mustGood(t, a.reserve(keyA, TypeExclusiveAccessAllRegistrants))
		mustGood(t, b.preempt(keyB, keyA, TypeExclusiveAccessAllRegistrants))
		if _, typ, ok := b.resv(); !ok || typ != 8 {
			t.Errorf("all-registrants reservation lost: type %d ok %v", typ, ok)
		}
		r, _ := tg.Reservation()
		if r.Holder != "" {
			t.Errorf("holder %q for all-registrants", r.Holder)
		}
		resp, _ := a.read(0, 1, 512) // UA
		wantUA(t, "a", resp, 0x05)
		resp, _ = a.read(0, 1, 512)
		wantStatus(t, "a unregistered under EA-AR", resp, scsi.StatusReservationConflict)
	})
	t.Run("errors", func(t *testing.T) {
		_, a, b, c := three(t, CompatSPC4)
		mustGood(t, a.reserve(keyA, TypeWriteExclusive))
		wantStatus(t, "unregistered", c.preempt(0, keyA, 1), scsi.StatusReservationConflict)
		wantStatus(t, "wrong key", b.preempt(keyA, keyA, 1), scsi.StatusReservationConflict)
		wantStatus(t, "unknown victim", b.preempt(keyB, keyC, 1), scsi.StatusReservationConflict)
		wantSense(t, "zero victim", b.preempt(keyB, 0, 1), scsi.SenseIllegalRequest, 0x26, 0)
		wantSense(t, "bad type", b.preempt(keyB, keyA, 2), scsi.SenseIllegalRequest, 0x24, 0)
		if gen, _ := a.keys(); gen != 2 {
			t.Errorf("failed PREEMPTs changed PRgeneration to %d", gen)
		}
	})
}

// Reference: SPC-4 5.12.11.5 (PREEMPT AND ABORT: as PREEMPT, plus aborting
// tasks, of which an in-memory target never has any in flight).
func TestPreemptAndAbort(t *testing.T) {
	tg, a, b, _ := three(t, CompatSPC4)
	mustGood(t, a.reserve(keyA, TypeWriteExclusiveRegistrantsOnly))
	mustGood(t, b.prOut(saPreemptAndAbort, TypeWriteExclusiveRegistrantsOnly, keyB, keyA))
	if r, _ := tg.Reservation(); r.Holder != "b" || r.Key != keyB {
		t.Errorf("reservation %+v", r)
	}
	wantAttentions(t, tg, "a", uaRegsPreempted)
}

// Reference: SPC-4 6.15.2: PRgeneration counts REGISTER, REGISTER AND
// IGNORE EXISTING KEY, CLEAR, PREEMPT and PREEMPT AND ABORT that complete,
// not RESERVE, RELEASE, PR IN or failed commands.
func TestGeneration(t *testing.T) {
	tg, a, b, c := three(t, CompatSPC4) // 2
	steps := []struct {
		do   func() scsi.Response
		good bool
		gen  uint32
	}{
		{func() scsi.Response { return a.reserve(keyA, 1) }, true, 2},
		{func() scsi.Response { return b.release(keyB, 1) }, true, 2},
		{func() scsi.Response { return c.register(5, keyC) }, false, 2},
		{func() scsi.Response { return c.register(0, keyC) }, true, 3},
		{func() scsi.Response { return c.prOut(saRegisterAndIgnoreKey, 0, 0, 0xc2) }, true, 4},
		{func() scsi.Response { return b.preempt(keyB, keyA, 1) }, true, 5},
		{func() scsi.Response { return b.preempt(keyB, 0x77, 1) }, false, 5},
		{func() scsi.Response { return b.prOut(saPreemptAndAbort, 1, keyB, 0xc2) }, true, 6},
		{func() scsi.Response { return b.release(keyB, 1) }, true, 6},
		{func() scsi.Response { return b.prOut(saClear, 0, keyB, 0) }, true, 7},
	}
	for i, s := range steps {
		r := s.do()
		if (r.Status == scsi.StatusGood) != s.good {
			t.Fatalf("step %d: status %v", i, r.Status)
		}
		if g := tg.Generation(); g != s.gen {
			t.Fatalf("step %d: PRgeneration %d, want %d", i, g, s.gen)
		}
	}
}

// Reference: SPC-4 6.15.4 (REPORT CAPABILITIES), identical to tgt's.
func TestReportCapabilities(t *testing.T) {
	for _, c := range []Compat{CompatSPC4, CompatTgt} {
		a := open(t, newLU(t, Config{Compat: c}), "a")
		resp, b := a.prIn(saReportCapabilities, 8)
		mustGood(t, resp)
		if want := []byte{0, 8, 0, 0x80, 0xea, 0x01, 0, 0}; !bytes.Equal(b, want) {
			t.Errorf("%v: % x, want % x", c, b, want)
		}
	}
}

// Reference: SPC-4 6.15.5 (READ FULL STATUS), 7.6.4.6 (iSCSI TransportID).
func TestReadFullStatus(t *testing.T) {
	_, a, _, _ := three(t, CompatSPC4)
	mustGood(t, a.reserve(keyA, TypeWriteExclusiveRegistrantsOnly))
	resp, b := a.prIn(saReadFullStatus, 1024)
	mustGood(t, resp)
	if gen := binary.BigEndian.Uint32(b); gen != 2 || int(binary.BigEndian.Uint32(b[4:]))+8 != len(b) {
		t.Fatalf("header % x", b[:8])
	}
	type entry struct {
		key    uint64
		holder bool
		typ    uint8
		name   string
	}
	var got []entry
	for d := b[8:]; len(d) > 0; {
		n := 24 + int(binary.BigEndian.Uint32(d[20:]))
		tid := d[24:n]
		if tid[0] != 0x05 || int(binary.BigEndian.Uint16(tid[2:]))+4 != len(tid) || len(tid)%4 != 0 {
			t.Fatalf("TransportID % x", tid)
		}
		name, _, _ := bytes.Cut(tid[4:], []byte{0})
		got = append(got, entry{binary.BigEndian.Uint64(d), d[12]&1 == 1, d[13] & 0xf, string(name)})
		d = d[n:]
	}
	want := []entry{{keyA, true, 5, "a"}, {keyB, false, 0, "b"}}
	if !slices.Equal(got, want) {
		t.Errorf("full status %+v, want %+v", got, want)
	}
}

// Reference: SPC-4 6.16.3 (basic PERSISTENT RESERVE OUT parameter list).
func TestParameterListErrors(t *testing.T) {
	tg := newLU(t, Config{})
	a := open(t, tg, "a")
	cdb := []byte{opPROut, saRegister, 0, 0, 0, 0, 0, 0, 20, 0}
	wantSense(t, "length 20", a.exec(cdb, scsi.DirToDevice, make([]byte, 20)), scsi.SenseIllegalRequest, 0x1a, 0)
	cdb[8] = 24
	for _, flag := range []byte{0x01, 0x04, 0x08} { // APTPL, ALL_TG_PT, SPEC_I_PT
		p := make([]byte, 24)
		p[15] = 1
		p[20] = flag
		wantSense(t, fmt.Sprintf("flags %#x", flag), a.exec(cdb, scsi.DirToDevice, p), scsi.SenseIllegalRequest, 0x26, 0)
	}
	for _, sa := range []uint8{0x07, 0x08, 0x1f} {
		wantSense(t, fmt.Sprintf("PROUT service action %#x", sa), a.prOut(sa, 0, 0, 1), scsi.SenseIllegalRequest, 0x24, 0)
	}
	resp, _ := a.prIn(0x04, 64)
	wantSense(t, "PRIN service action 4", resp, scsi.SenseIllegalRequest, 0x24, 0)
	if tg.Generation() != 0 || len(tg.Registrations()) != 0 {
		t.Error("rejected commands changed state")
	}
}

// Unit attentions are queued per nexus and reported once each, oldest
// first, on the next command that is not INQUIRY, REPORT LUNS or REQUEST
// SENSE. Reference: SAM-5 5.14, SPC-4 5.12.11.
func TestAttentionDelivery(t *testing.T) {
	tg, a, b, c := three(t, CompatSPC4)
	mustGood(t, c.register(0, keyC))
	mustGood(t, a.reserve(keyA, TypeWriteExclusiveRegistrantsOnly))
	mustGood(t, a.release(keyA, TypeWriteExclusiveRegistrantsOnly)) // 2a/04 to b, c
	mustGood(t, a.reserve(keyA, TypeWriteExclusiveRegistrantsOnly))
	mustGood(t, a.release(keyA, TypeWriteExclusiveRegistrantsOnly)) // already pending: not queued twice
	mustGood(t, a.prOut(saClear, 0, keyA, 0))                       // 2a/03 to b, c
	wantAttentions(t, tg, "b", uaReleased, uaPreempted)
	resp, _ := b.inquiry(false, 0, 36)
	mustGood(t, resp)
	wantUA(t, "b first", b.tur(), 0x04)
	resp, _ = b.prIn(saReadKeys, 64)
	wantUA(t, "b second (PR IN)", resp, 0x03)
	mustGood(t, b.tur())
	wantAttentions(t, tg, "c", uaReleased, uaPreempted)
	wantAttentions(t, tg, "a")
}

// Two nexuses race to preempt each other: the target serialises them and
// exactly one ends up holding the reservation.
// Reference: SPC-4 5.12.11.4; docs/design.md, "Quorum arbitration".
func TestConcurrentPreempt(t *testing.T) {
	for round := 0; round < 50; round++ {
		tg, a, b, _ := three(t, CompatSPC4)
		mustGood(t, a.reserve(keyA, TypeWriteExclusiveRegistrantsOnly))
		var wg sync.WaitGroup
		res := make([]scsi.Status, 2)
		for i, p := range []struct {
			l         *lun
			own, them uint64
		}{{a, keyA, keyB}, {b, keyB, keyA}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 20; j++ {
					p.l.write(uint64(i), make([]byte, 512), 512)
				}
				res[i] = p.l.preempt(p.own, p.them, TypeWriteExclusiveRegistrantsOnly).Status
			}()
		}
		wg.Wait()
		regs := tg.Registrations()
		r, ok := tg.Reservation()
		if !ok || len(regs) != 1 || r.Holder != regs[0].Initiator {
			t.Fatalf("round %d: registrations %v reservation %+v (statuses %v)", round, regs, r, res)
		}
		if (res[0] == scsi.StatusGood) == (res[1] == scsi.StatusGood) {
			t.Fatalf("round %d: statuses %v, want exactly one GOOD", round, res)
		}
	}
}
