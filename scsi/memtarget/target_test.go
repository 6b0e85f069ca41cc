package memtarget

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

// Reference: SPC-4 6.6.2 (standard INQUIRY data), 7.8.
func TestInquiry(t *testing.T) {
	tg := newLU(t, Config{Vendor: "ACME", Product: "QUORUM", Serial: "SN42"})
	a := open(t, tg, "a")

	resp, b := a.inquiry(false, 0, 96)
	mustGood(t, resp)
	if len(b) != 66 || b[0] != 0 || int(b[4]) != len(b)-5 {
		t.Fatalf("standard data % x", b)
	}
	if got := string(b[8:16]) + string(b[16:32]); got != "ACME    QUORUM          " {
		t.Errorf("vendor/product %q", got)
	}

	resp, b = a.inquiry(false, 0, 36)
	mustGood(t, resp)
	if len(b) != 36 {
		t.Errorf("allocation length 36 gave %d bytes", len(b))
	}

	resp, b = a.inquiry(true, 0x00, 64)
	mustGood(t, resp)
	if !bytes.Equal(b, []byte{0, 0, 0, 3, 0x00, 0x80, 0x83}) {
		t.Errorf("VPD 0x00 % x", b)
	}
	resp, b = a.inquiry(true, 0x80, 64)
	mustGood(t, resp)
	if b[1] != 0x80 || string(b[4:]) != "SN42" {
		t.Errorf("VPD 0x80 % x", b)
	}
	resp, b = a.inquiry(true, 0x83, 255)
	mustGood(t, resp)
	if b[1] != 0x83 || int(binary.BigEndian.Uint16(b[2:]))+4 != len(b) {
		t.Fatalf("VPD 0x83 % x", b)
	}
	// First designator: T10 vendor ID, ASCII; second: NAA (3 = locally assigned).
	d1 := b[4:]
	if d1[0]&0x0f != 2 || d1[1]&0x0f != 1 || string(d1[4:12]) != "ACME    " {
		t.Errorf("T10 designator % x", d1)
	}
	d2 := d1[4+int(d1[3]):]
	if d2[1]&0x0f != 3 || d2[3] != 8 || d2[4]>>4 != 3 {
		t.Errorf("NAA designator % x", d2)
	}

	resp, _ = a.inquiry(true, 0xb0, 64)
	wantSense(t, "unsupported VPD page", resp, scsi.SenseIllegalRequest, 0x24, 0)
	resp, _ = a.inquiry(false, 0x80, 64)
	wantSense(t, "page code without EVPD", resp, scsi.SenseIllegalRequest, 0x24, 0)
}

// Reference: SBC-3 5.16 (READ CAPACITY(16)).
func TestReadCapacity16(t *testing.T) {
	tg := newLU(t, Config{BlockSize: 4096, Blocks: 1000})
	a := open(t, tg, "a")
	cdb := make([]byte, 16)
	cdb[0], cdb[1] = 0x9e, 0x10
	binary.BigEndian.PutUint32(cdb[10:], 32)
	buf := make([]byte, 32)
	mustGood(t, a.exec(cdb, scsi.DirFromDevice, buf))
	if last, bs := binary.BigEndian.Uint64(buf), binary.BigEndian.Uint32(buf[8:]); last != 999 || bs != 4096 {
		t.Errorf("last LBA %d block size %d", last, bs)
	}
	cdb[1] = 0x11
	wantSense(t, "other SERVICE ACTION IN", a.exec(cdb, scsi.DirFromDevice, buf), scsi.SenseIllegalRequest, 0x24, 0)
}

// Reference: SBC-3 5.15, 5.40, 5.22 (READ(16), WRITE(16), SYNCHRONIZE CACHE(16)).
func TestReadWrite(t *testing.T) {
	const bs = 512
	tg := newLU(t, Config{Blocks: 100})
	a := open(t, tg, "a")
	b := open(t, tg, "b")

	data := make([]byte, 3*bs)
	for i := range data {
		data[i] = byte(i * 7)
	}
	cdb := rw16(opWrite16, 10, 3)
	cdb[1] = 0x08 // FUA
	mustGood(t, a.exec(cdb, scsi.DirToDevice, data))

	resp, got := b.read(9, 5, bs)
	mustGood(t, resp)
	if !bytes.Equal(got[bs:4*bs], data) {
		t.Error("read back differs from what was written")
	}
	if !bytes.Equal(got[:bs], make([]byte, bs)) || !bytes.Equal(got[4*bs:], make([]byte, bs)) {
		t.Error("unwritten blocks are not zero")
	}

	// The caller's buffer is not retained.
	data[bs] ^= 0xff
	_, again := a.read(11, 1, bs)
	if again[0] == data[bs] {
		t.Error("target aliases the write buffer")
	}

	resp, _ = a.read(99, 2, bs)
	wantSense(t, "read past the end", resp, scsi.SenseIllegalRequest, 0x21, 0)
	wantSense(t, "write past the end", a.write(100, make([]byte, bs), bs), scsi.SenseIllegalRequest, 0x21, 0)
	resp, _ = a.read(100, 0, bs)
	mustGood(t, resp)

	sync := make([]byte, 16)
	sync[0] = opSyncCache16
	mustGood(t, a.exec(sync, scsi.DirNone, nil))

	// A larger buffer than the transfer: residual.
	buf := make([]byte, 2*bs)
	resp = a.exec(rw16(opRead16, 0, 1), scsi.DirFromDevice, buf)
	mustGood(t, resp)
	if resp.Residual != bs {
		t.Errorf("residual %d, want %d", resp.Residual, bs)
	}
}

// Reference: SPC-4 4.5.6 (sense data), Annex D (ASC 20/00).
func TestInvalidOpcode(t *testing.T) {
	tg := newLU(t, Config{})
	a := open(t, tg, "a")
	for _, op := range []byte{0x04, 0x1a, 0x83, 0xff} {
		cdb := make([]byte, 16)
		cdb[0] = op
		wantSense(t, "opcode", a.exec(cdb, scsi.DirNone, nil), scsi.SenseIllegalRequest, 0x20, 0)
	}
	resp := a.exec([]byte{opRead16, 0, 0}, scsi.DirNone, nil)
	wantSense(t, "short CDB", resp, scsi.SenseIllegalRequest, 0x24, 0)
}

// Reference: SAM-5 5.14, 6.2 (unit attention after power on; INQUIRY and
// REPORT LUNS do not clear it; reported once).
func TestPowerOnAttention(t *testing.T) {
	tg := New(Config{})
	a := open(t, tg, "a")
	resp, _ := a.inquiry(false, 0, 36)
	mustGood(t, resp)
	luns := make([]byte, 12)
	luns[0] = opReportLUNs
	binary.BigEndian.PutUint32(luns[6:], 16)
	mustGood(t, a.exec(luns, scsi.DirFromDevice, make([]byte, 16)))
	wantSense(t, "first TUR", a.tur(), scsi.SenseUnitAttention, 0x29, 0)
	mustGood(t, a.tur())

	// Same name: same nexus, no new power-on attention.
	a2 := open(t, tg, "a")
	mustGood(t, a2.tur())

	tg.PowerCycle()
	// REQUEST SENSE returns the attention as data and clears it.
	buf := make([]byte, 18)
	mustGood(t, a.exec([]byte{opRequestSense, 0, 0, 0, 18, 0}, scsi.DirFromDevice, buf))
	if buf[2] != 0x06 || buf[12] != 0x29 {
		t.Errorf("REQUEST SENSE % x", buf)
	}
	mustGood(t, a.tur())
}

// Reference: SAM-5 5.14 (the command that reports a unit attention is not
// executed).
func TestAttentionBlocksCommand(t *testing.T) {
	tg := New(Config{Blocks: 8})
	a := open(t, tg, "a")
	data := bytes.Repeat([]byte{0xaa}, 512)
	wantSense(t, "write with UA pending", a.write(0, data, 512), scsi.SenseUnitAttention, 0x29, 0)
	_, got := a.read(0, 1, 512)
	if got[0] != 0 {
		t.Error("the write that reported the UA was executed")
	}
}

func TestFaults(t *testing.T) {
	tg := newLU(t, Config{})
	a := open(t, tg, "a")
	b := open(t, tg, "b")
	ctx := context.Background()

	tg.SetFault("a", FaultDrop)
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[8:], 0xa)
	reg := &scsi.Command{CDB: []byte{opPROut, 0, 0, 0, 0, 0, 0, 0, 24, 0}, Dir: scsi.DirToDevice, Data: p}
	if _, err := a.d.Execute(ctx, reg); !errors.Is(err, ErrTransport) {
		t.Fatalf("dropped command: err %v", err)
	}
	if len(tg.Registrations()) != 0 {
		t.Fatal("dropped command was executed")
	}

	tg.SetFault("a", FaultLoseCompletion)
	if _, err := a.d.Execute(ctx, reg); !errors.Is(err, ErrTransport) {
		t.Fatalf("lost completion: err %v", err)
	}
	if r := tg.Registrations(); len(r) != 1 || r[0] != (Registration{"a", 0xa}) {
		t.Fatalf("registrations %v after lost completion", r)
	}
	mustGood(t, b.tur()) // other nexuses unaffected

	tg.SetFault("a", FaultNone)
	mustGood(t, a.tur())

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.d.Execute(cctx, reg); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err %v", err)
	}
	a.d.Close()
	if _, err := a.d.Execute(ctx, reg); !errors.Is(err, ErrClosed) {
		t.Errorf("closed device: err %v", err)
	}
	if len(tg.Registrations()) != 1 {
		t.Error("Close changed registrations")
	}
}
