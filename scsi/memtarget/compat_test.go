package memtarget

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

// Each numbered difference of the package documentation, on both sides.
// The tgt side is what usr/spc.c of tgt 1.0.85 does.
func TestCompatDifferences(t *testing.T) {
	t.Run("1 PREEMPT AND ABORT", func(t *testing.T) {
		_, a, b, _ := three(t, CompatTgt)
		mustGood(t, a.reserve(keyA, 5))
		wantSense(t, "tgt", b.prOut(saPreemptAndAbort, 5, keyB, keyA), scsi.SenseIllegalRequest, 0x24, 0)
	})
	t.Run("2 READ FULL STATUS", func(t *testing.T) {
		_, a, _, _ := three(t, CompatTgt)
		resp, _ := a.prIn(saReadFullStatus, 256)
		wantSense(t, "tgt", resp, scsi.SenseIllegalRequest, 0x24, 0)
	})
	t.Run("3 PREEMPT attention", func(t *testing.T) {
		tg, a, b, c := three(t, CompatTgt)
		mustGood(t, c.register(0, keyC))
		mustGood(t, a.reserve(keyA, 1))
		mustGood(t, b.preempt(keyB, keyA, 6))
		wantAttentions(t, tg, "a", uaPreempted)
		wantAttentions(t, tg, "c", uaReleased)
		wantAttentions(t, tg, "b")
	})
	t.Run("4 RELEASE attention", func(t *testing.T) {
		for _, typ := range allTypes {
			tg, a, _, c := three(t, CompatTgt)
			open(t, tg, "d") // unregistered
			mustGood(t, c.register(0, keyC))
			mustGood(t, a.reserve(keyA, typ))
			mustGood(t, a.release(keyA, typ))
			if typ != 1 && typ != 3 {
				for _, n := range []string{"a", "b", "c", "d"} {
					wantAttentions(t, tg, n)
				}
				continue
			}
			// Other registrants b and c: b's turn queues to a, c, d; c's to a, b, d.
			wantAttentions(t, tg, "a", uaReleased, uaReleased)
			wantAttentions(t, tg, "b", uaReleased)
			wantAttentions(t, tg, "c", uaReleased)
			wantAttentions(t, tg, "d", uaReleased, uaReleased)
		}
	})
	t.Run("5 unregistering holder", func(t *testing.T) {
		for _, typ := range []uint8{1, 5} {
			tg, a, _, _ := three(t, CompatTgt) // gen 2; c unregistered
			mustGood(t, a.reserve(keyA, typ))
			mustGood(t, a.register(keyA, 0))
			if _, ok := tg.Reservation(); ok {
				t.Fatal("reservation survived")
			}
			// One remaining registrant (b): everyone but b.
			wantAttentions(t, tg, "a", uaReleased)
			wantAttentions(t, tg, "b")
			wantAttentions(t, tg, "c", uaReleased)
			if g := tg.Generation(); g != 4 {
				t.Errorf("type %d: PRgeneration %d, want 4 (counted twice)", typ, g)
			}
		}
	})
	t.Run("6 RESERVE key", func(t *testing.T) {
		_, a, _, _ := three(t, CompatTgt)
		mustGood(t, a.reserve(0x1234, 1))
		if key, _, _ := a.resv(); key != keyA {
			t.Errorf("holder key %x", key)
		}
	})
	t.Run("7 RELEASE key", func(t *testing.T) {
		_, a, b, _ := three(t, CompatTgt)
		mustGood(t, a.release(0x1234, 1)) // no reservation
		mustGood(t, a.reserve(keyA, 1))
		mustGood(t, b.release(0x1234, 1)) // not the holder
		wantStatus(t, "holder, wrong key", a.release(0x1234, 1), scsi.StatusReservationConflict)
	})
	t.Run("8 PREEMPT zero key", func(t *testing.T) {
		tg, a, b, _ := three(t, CompatTgt)
		mustGood(t, a.preempt(keyA, 0, 1))
		if g := tg.Generation(); g != 3 {
			t.Errorf("PRgeneration %d, want 3", g)
		}
		mustGood(t, a.reserve(keyA, 1))
		wantSense(t, "reserved", b.preempt(keyB, 0, 1), scsi.SenseIllegalRequest, 0x24, 0)
		mustGood(t, b.preempt(keyB, keyA, 2)) // TYPE not checked
		if r, _ := tg.Reservation(); r.Type != 2 || r.Holder != "b" {
			t.Errorf("reservation %+v", r)
		}
	})
	t.Run("9 parameter list", func(t *testing.T) {
		a := open(t, newLU(t, Config{Compat: CompatTgt}), "a")
		cdb := []byte{opPROut, saRegister, 0, 0, 0, 0, 0, 0, 20, 0}
		wantSense(t, "length 20", a.exec(cdb, scsi.DirToDevice, make([]byte, 20)), scsi.SenseIllegalRequest, 0x24, 0)
		cdb[8] = 24
		p := make([]byte, 24)
		p[20] = 0x01
		wantSense(t, "APTPL", a.exec(cdb, scsi.DirToDevice, p), scsi.SenseIllegalRequest, 0x24, 0)
	})
	t.Run("10 PR IN allocation length", func(t *testing.T) {
		for _, c := range []Compat{CompatSPC4, CompatTgt} {
			a := open(t, newLU(t, Config{Compat: c}), "a")
			resp, b := a.prIn(saReadKeys, 4)
			if c == CompatTgt {
				wantSense(t, "tgt", resp, scsi.SenseIllegalRequest, 0x24, 0)
			} else if resp.Status != scsi.StatusGood || len(b) != 4 {
				t.Errorf("spc4: %v, %d bytes", resp.Status, len(b))
			}
		}
	})
	t.Run("11 duplicate attentions", func(t *testing.T) {
		tg, a, _, _ := three(t, CompatTgt)
		mustGood(t, a.reserve(keyA, 1))
		// Self-preempts that change the type: 2a/04 to b each time.
		mustGood(t, a.preempt(keyA, keyA, 3))
		mustGood(t, a.preempt(keyA, keyA, 1))
		wantAttentions(t, tg, "b", uaReleased, uaReleased)
	})
}

// step is one command of a scripted scenario.
type step struct {
	who  string
	op   string // register, ignore, reserve, release, clear, preempt, write, read
	key  uint64
	sa   uint64
	typ  uint8
	want scsi.Status // the status once unit attentions are out of the way
}

// runScenario plays steps on a fresh target the way an initiator with
// UNIT ATTENTION retry (scsi.Run) does, and returns one line per step:
// the unit attentions it swallowed, its status, then READ KEYS and READ
// RESERVATION as seen by an observer nexus.
func runScenario(t *testing.T, c Compat, steps []step) []string {
	t.Helper()
	tg := New(Config{Compat: c})
	luns := map[string]*lun{}
	get := func(n string) *lun {
		if luns[n] == nil {
			luns[n] = open(t, tg, n)
		}
		return luns[n]
	}
	retry := func(l *lun, f func() scsi.Response) (scsi.Response, []string) {
		var uas []string
		for {
			r := f()
			if r.Status == scsi.StatusCheckCondition && r.Sense[2]&0xf == byte(scsi.SenseUnitAttention) {
				uas = append(uas, fmt.Sprintf("%02x/%02x", r.Sense[12], r.Sense[13]))
				continue
			}
			return r, uas
		}
	}
	var out []string
	for i, s := range steps {
		l := get(s.who)
		r, uas := retry(l, func() scsi.Response {
			switch s.op {
			case "register":
				return l.register(s.key, s.sa)
			case "ignore":
				return l.prOut(saRegisterAndIgnoreKey, 0, s.key, s.sa)
			case "reserve":
				return l.reserve(s.key, s.typ)
			case "release":
				return l.release(s.key, s.typ)
			case "clear":
				return l.prOut(saClear, 0, s.key, 0)
			case "preempt":
				return l.preempt(s.key, s.sa, s.typ)
			case "write":
				return l.write(0, make([]byte, 512), 512)
			case "read":
				r, _ := l.read(0, 1, 512)
				return r
			}
			t.Fatalf("unknown op %q", s.op)
			return scsi.Response{}
		})
		if r.Status != s.want {
			t.Errorf("%v step %d (%s %s): %v, want %v", c, i, s.who, s.op, r.Status, s.want)
		}
		obs := get("observer")
		retry(obs, obs.tur)
		_, keys := obs.keys()
		key, typ, ok := obs.resv()
		out = append(out, fmt.Sprintf("%s %s: %v uas=%v keys=%x resv=%v/%x/%d",
			s.who, s.op, r.Status, strings.Join(uas, ","), keys, ok, key, typ))
	}
	return out
}

// The quorum scenario (docs/design.md, "Quorum arbitration") on three
// nexuses, played in both
// modes: statuses, keys, holder and type agree; only unit attentions
// differ. The same script runs against tgt in the integration tests.
// Reference: SPC-4 5.12.
func TestScenarioSPC4AndTgtAgree(t *testing.T) {
	const (
		ok = scsi.StatusGood
		rc = scsi.StatusReservationConflict
		we = TypeWriteExclusiveRegistrantsOnly
	)
	steps := []step{
		{who: "n1", op: "register", sa: keyA, want: ok},
		{who: "n2", op: "register", sa: keyB, want: ok},
		{who: "n3", op: "write", want: ok},
		{who: "n1", op: "reserve", key: keyA, typ: we, want: ok},
		{who: "n3", op: "write", want: rc},
		{who: "n3", op: "read", want: ok},
		{who: "n2", op: "write", want: ok},
		{who: "n2", op: "reserve", key: keyB, typ: we, want: rc},
		{who: "n3", op: "register", key: 7, sa: keyC, want: rc},
		{who: "n3", op: "register", sa: keyC, want: ok},
		{who: "n2", op: "preempt", key: keyB, sa: keyA, typ: we, want: ok},
		{who: "n1", op: "write", want: rc},
		{who: "n1", op: "read", want: ok},
		{who: "n1", op: "register", key: keyA, sa: 0x1a, want: rc},
		{who: "n1", op: "ignore", sa: 0x1a, want: ok},
		{who: "n3", op: "preempt", key: keyC, sa: 0x1a, typ: we, want: ok},
		{who: "n2", op: "release", key: keyB, typ: 1, want: scsi.StatusCheckCondition},
		{who: "n3", op: "release", key: keyC, typ: we, want: ok},
		{who: "n2", op: "release", key: keyB, typ: we, want: ok},
		{who: "n3", op: "reserve", key: keyC, typ: TypeExclusiveAccess, want: ok},
		{who: "n2", op: "read", want: rc},
		{who: "n2", op: "preempt", key: keyB, sa: keyC, typ: TypeExclusiveAccess, want: ok},
		{who: "n3", op: "read", want: rc},
		{who: "n2", op: "clear", key: keyB, want: ok},
		{who: "n2", op: "write", want: ok},
	}
	spc := runScenario(t, CompatSPC4, steps)
	tgt := runScenario(t, CompatTgt, steps)
	strip := func(s string) string {
		i := strings.Index(s, " uas=")
		j := strings.Index(s, " keys=")
		return s[:i] + s[j:]
	}
	for i := range spc {
		if strip(spc[i]) != strip(tgt[i]) {
			t.Errorf("step %d:\n spc4 %s\n tgt  %s", i, spc[i], tgt[i])
		}
	}
	if t.Failed() || testing.Verbose() {
		for i := range spc {
			t.Logf("%2d spc4 %s", i, spc[i])
			t.Logf("%2d tgt  %s", i, tgt[i])
		}
	}
	// The attentions the preempted node sees: 2a/05 vs 2a/03.
	if !strings.Contains(spc[11], "uas=2a/05") || !strings.Contains(tgt[11], "uas=2a/03") {
		t.Errorf("preempted node's attentions:\n spc4 %s\n tgt  %s", spc[11], tgt[11])
	}
}
