package memtarget

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

// Raw CDBs, built here so the tests check the wire format and not another
// package's builders.

// lun is a test's view of one nexus.
type lun struct {
	t    *testing.T
	name string
	d    scsi.Device
}

func newLU(t *testing.T, cfg Config) *Target {
	t.Helper()
	cfg.NoPowerOnAttention = true
	return New(cfg)
}

func open(t *testing.T, tg *Target, name string) *lun {
	t.Helper()
	return &lun{t: t, name: name, d: tg.Nexus(name)}
}

func (l *lun) exec(cdb []byte, dir scsi.Direction, data []byte) scsi.Response {
	l.t.Helper()
	resp, err := l.d.Execute(context.Background(), &scsi.Command{CDB: cdb, Dir: dir, Data: data})
	if err != nil {
		l.t.Fatalf("%s: execute % x: %v", l.name, cdb, err)
	}
	return resp
}

func (l *lun) tur() scsi.Response { return l.exec(make([]byte, 6), scsi.DirNone, nil) }

func (l *lun) inquiry(evpd bool, page uint8, alloc uint16) (scsi.Response, []byte) {
	cdb := []byte{opInquiry, 0, page, 0, 0, 0}
	if evpd {
		cdb[1] = 1
	}
	binary.BigEndian.PutUint16(cdb[3:], alloc)
	buf := make([]byte, alloc)
	resp := l.exec(cdb, scsi.DirFromDevice, buf)
	return resp, buf[:len(buf)-resp.Residual]
}

func rw16(op byte, lba uint64, blocks uint32) []byte {
	cdb := make([]byte, 16)
	cdb[0] = op
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], blocks)
	return cdb
}

func (l *lun) read(lba uint64, blocks uint32, bs int) (scsi.Response, []byte) {
	buf := make([]byte, int(blocks)*bs)
	resp := l.exec(rw16(opRead16, lba, blocks), scsi.DirFromDevice, buf)
	return resp, buf
}

func (l *lun) write(lba uint64, data []byte, bs int) scsi.Response {
	return l.exec(rw16(opWrite16, lba, uint32(len(data)/bs)), scsi.DirToDevice, data)
}

func (l *lun) prOut(sa, typ uint8, key, saKey uint64) scsi.Response {
	cdb := make([]byte, 10)
	cdb[0] = opPROut
	cdb[1] = sa
	cdb[2] = typ
	binary.BigEndian.PutUint32(cdb[5:], 24)
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:], key)
	binary.BigEndian.PutUint64(p[8:], saKey)
	return l.exec(cdb, scsi.DirToDevice, p)
}

func (l *lun) register(old, new uint64) scsi.Response { return l.prOut(saRegister, 0, old, new) }
func (l *lun) reserve(key uint64, typ uint8) scsi.Response {
	return l.prOut(saReserve, typ, key, 0)
}
func (l *lun) release(key uint64, typ uint8) scsi.Response {
	return l.prOut(saRelease, typ, key, 0)
}
func (l *lun) preempt(key, victim uint64, typ uint8) scsi.Response {
	return l.prOut(saPreempt, typ, key, victim)
}

func (l *lun) prIn(sa uint8, alloc uint16) (scsi.Response, []byte) {
	cdb := make([]byte, 10)
	cdb[0] = opPRIn
	cdb[1] = sa
	binary.BigEndian.PutUint16(cdb[7:], alloc)
	buf := make([]byte, alloc)
	resp := l.exec(cdb, scsi.DirFromDevice, buf)
	return resp, buf[:len(buf)-resp.Residual]
}

// keys runs READ KEYS and fails the test unless it is GOOD.
func (l *lun) keys() (gen uint32, keys []uint64) {
	l.t.Helper()
	resp, b := l.prIn(saReadKeys, 1024)
	mustGood(l.t, resp)
	gen = binary.BigEndian.Uint32(b[0:])
	n := binary.BigEndian.Uint32(b[4:])
	for i := 8; i < 8+int(n); i += 8 {
		keys = append(keys, binary.BigEndian.Uint64(b[i:]))
	}
	return gen, keys
}

// resv runs READ RESERVATION: key and type, ok false when none.
func (l *lun) resv() (key uint64, typ uint8, ok bool) {
	l.t.Helper()
	resp, b := l.prIn(saReadReservation, 64)
	mustGood(l.t, resp)
	if binary.BigEndian.Uint32(b[4:]) == 0 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(b[8:]), b[21] & 0x0f, true
}

func mustGood(t *testing.T, r scsi.Response) {
	t.Helper()
	if r.Status != scsi.StatusGood {
		t.Fatalf("status %v sense % x, want GOOD", r.Status, r.Sense)
	}
}

func wantStatus(t *testing.T, what string, r scsi.Response, s scsi.Status) {
	t.Helper()
	if r.Status != s {
		t.Errorf("%s: status %v sense % x, want %v", what, r.Status, r.Sense, s)
	}
}

// wantSense checks CHECK CONDITION with fixed-format sense key/ASC/ASCQ.
func wantSense(t *testing.T, what string, r scsi.Response, key scsi.SenseKey, asc, ascq uint8) {
	t.Helper()
	if r.Status != scsi.StatusCheckCondition || len(r.Sense) < 14 || r.Sense[0] != 0x70 {
		t.Errorf("%s: status %v sense % x, want CHECK CONDITION %v %02x/%02x", what, r.Status, r.Sense, key, asc, ascq)
		return
	}
	if got := scsi.SenseKey(r.Sense[2] & 0x0f); got != key || r.Sense[12] != asc || r.Sense[13] != ascq {
		t.Errorf("%s: sense %v %02x/%02x, want %v %02x/%02x", what, got, r.Sense[12], r.Sense[13], key, asc, ascq)
	}
}

func wantUA(t *testing.T, what string, r scsi.Response, ascq uint8) {
	t.Helper()
	wantSense(t, what, r, scsi.SenseUnitAttention, 0x2a, ascq)
}

func wantAttentions(t *testing.T, tg *Target, name string, want ...UnitAttention) {
	t.Helper()
	got := tg.PendingAttentions(name)
	if len(got) != len(want) {
		t.Errorf("%s pending UAs %v, want %v", name, got, want)
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s pending UAs %v, want %v", name, got, want)
			return
		}
	}
}

var (
	uaPreempted     = UnitAttention{0x2a, 0x03}
	uaReleased      = UnitAttention{0x2a, 0x04}
	uaRegsPreempted = UnitAttention{0x2a, 0x05}
)

var allTypes = []uint8{1, 3, 5, 6, 7, 8}
