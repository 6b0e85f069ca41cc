package iscsi

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

const fakeAddr = "iscsi://fake:3260/iqn.2024-01.org.example:fake/1"

// fakeSession opens a Session to a fake target and returns both ends.
func fakeSession(t *testing.T, o fakeOpts, mod func(*Config)) (*Session, *fakeTarget, chan net.Conn) {
	t.Helper()
	dial, ch := pipeDialer()
	cfg := Config{InitiatorName: "iqn.2024-01.org.example:init", Dialer: dial, Logger: testLogger(t), Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	fch := make(chan *fakeTarget, 1)
	go func() { fch <- acceptFake(t, ch, o) }()
	s, err := Open(context.Background(), fakeAddr, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	f := <-fch
	if f == nil {
		t.FailNow()
	}
	t.Cleanup(func() {
		f.close()
		s.Close()
	})
	return s, f, ch
}

type result struct {
	resp scsi.Response
	err  error
}

func goExecute(s *Session, cmd *scsi.Command) chan result {
	ch := make(chan result, 1)
	go func() {
		r, err := s.Execute(context.Background(), cmd)
		ch <- result{r, err}
	}()
	return ch
}

func wait(t *testing.T, ch chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Execute did not return")
	}
	return result{}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// Reference: RFC 7143 11.8 (R2T), 11.7 (Data-Out), 13.12-13.14 (burst
// lengths), 13.10-13.11 (InitialR2T, ImmediateData).
func TestR2TDataOut(t *testing.T) {
	s, f, _ := fakeSession(t, fakeOpts{
		keys:    map[string]string{"ImmediateData": "No", "InitialR2T": "Yes", "MaxBurstLength": "4096", "FirstBurstLength": "4096"},
		maxRecv: 1024,
	}, nil)
	p := s.Params()
	if p.ImmediateData || !p.InitialR2T || p.MaxBurstLength != 4096 || p.TargetMaxRecvDataSegmentLength != 1024 {
		t.Fatalf("negotiated %+v", p)
	}
	data := pattern(10000)
	res := goExecute(s, &scsi.Command{CDB: scsi.Write16CDB(0, 20, true), Dir: scsi.DirToDevice, Data: data[:]})
	cmd := f.expect(OpSCSICommand)
	if len(cmd.Data) != 0 || cmd.Header[1]&0x20 == 0 || cmd.Header.U32(offExpDataLen) != 10000 || !cmd.Header.Final() {
		t.Fatalf("command: flags %#x, %d bytes immediate, EDTL %d", cmd.Header[1], len(cmd.Data), cmd.Header.U32(offExpDataLen))
	}
	got := make([]byte, len(data))
	for i, off := range []uint32{0, 4096, 8192} {
		n := min(uint32(4096), 10000-off)
		var r2t PDU
		r2t.Header.SetOpcode(OpR2T, false)
		r2t.Header[1] = 0x80
		r2t.Header.SetITT(cmd.Header.ITT())
		r2t.Header.SetU32(offTTT, 0x100+uint32(i))
		r2t.Header.SetU32(offDataSN, uint32(i))
		r2t.Header.SetU32(offBufferOff, off)
		r2t.Header.SetU32(offResidual, n)
		f.stamp(&r2t, false)
		f.write(&r2t)
		var sent uint32
		for dataSN := uint32(0); sent < n; dataSN++ {
			d := f.expect(OpDataOut)
			h := d.Header
			if h.ITT() != cmd.Header.ITT() || h.U32(offTTT) != 0x100+uint32(i) || h.U32(offDataSN) != dataSN || h.U32(offBufferOff) != off+sent {
				t.Fatalf("Data-Out: ITT %#x TTT %#x DataSN %d offset %d", h.ITT(), h.U32(offTTT), h.U32(offDataSN), h.U32(offBufferOff))
			}
			if len(d.Data) > 1024 {
				t.Fatalf("Data-Out of %d bytes exceeds the target's MaxRecvDataSegmentLength 1024", len(d.Data))
			}
			copy(got[off+sent:], d.Data)
			sent += uint32(len(d.Data))
			if h.Final() != (sent == n) {
				t.Fatalf("Data-Out F bit %v at %d of %d", h.Final(), sent, n)
			}
		}
	}
	f.respond(cmd, 0, nil, 0)
	r := wait(t, res)
	if r.err != nil || r.resp.Status != scsi.StatusGood {
		t.Fatalf("write: %+v %v", r.resp, r.err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("target received different data")
	}
}

// Immediate data plus unsolicited Data-Out up to FirstBurstLength when
// InitialR2T=No. Reference: RFC 7143 13.10, 13.11, 13.14.
func TestImmediateAndUnsolicitedData(t *testing.T) {
	s, f, _ := fakeSession(t, fakeOpts{
		keys:    map[string]string{"InitialR2T": "No", "FirstBurstLength": "3000"},
		maxRecv: 1000,
	}, nil)
	data := pattern(3000)
	res := goExecute(s, &scsi.Command{CDB: scsi.Write16CDB(0, 6, false), Dir: scsi.DirToDevice, Data: data})
	cmd := f.expect(OpSCSICommand)
	if len(cmd.Data) != 1000 || cmd.Header.Final() {
		t.Fatalf("command: %d bytes immediate, F %v; want 1000 and unsolicited data to follow", len(cmd.Data), cmd.Header.Final())
	}
	got := append([]byte(nil), cmd.Data...)
	for len(got) < 3000 {
		d := f.expect(OpDataOut)
		if d.Header.U32(offTTT) != ReservedTag || int(d.Header.U32(offBufferOff)) != len(got) {
			t.Fatalf("unsolicited Data-Out: TTT %#x offset %d", d.Header.U32(offTTT), d.Header.U32(offBufferOff))
		}
		got = append(got, d.Data...)
		if d.Header.Final() != (len(got) == 3000) {
			t.Fatalf("F bit %v at %d", d.Header.Final(), len(got))
		}
	}
	f.respond(cmd, 0, nil, 0)
	if r := wait(t, res); r.err != nil || !bytes.Equal(got, data) {
		t.Fatalf("write: %v", r.err)
	}
}

// Reference: RFC 7143 11.7 (Data-In, status in the last PDU, residuals).
func TestSplitDataIn(t *testing.T) {
	s, f, _ := fakeSession(t, fakeOpts{}, nil)
	want := pattern(3000)
	buf := make([]byte, 4096)
	res := goExecute(s, &scsi.Command{CDB: scsi.Read16CDB(0, 8, false), Dir: scsi.DirFromDevice, Data: buf})
	cmd := f.expect(OpSCSICommand)
	if cmd.Header[1]&0x40 == 0 {
		t.Fatal("read command without R bit")
	}
	f.dataIn(cmd, 0, 0, want[:1000], -1)
	f.dataIn(cmd, 1, 1000, want[1000:2000], -1)
	var last PDU
	last.Header.SetOpcode(OpDataIn, false)
	last.Header[1] = 0x80 | 0x02 | 0x01 // F, U, S
	last.Header.SetITT(cmd.Header.ITT())
	last.Header.SetU32(offTTT, ReservedTag)
	last.Header.SetU32(offDataSN, 2)
	last.Header.SetU32(offBufferOff, 2000)
	last.Header.SetU32(offResidual, 1096)
	f.stamp(&last, true)
	last.Data = want[2000:]
	f.write(&last)
	r := wait(t, res)
	if r.err != nil || r.resp.Status != scsi.StatusGood || r.resp.Residual != 1096 {
		t.Fatalf("read: %+v %v; want GOOD, residual 1096", r.resp, r.err)
	}
	if !bytes.Equal(buf[:3000], want) {
		t.Fatal("data differs")
	}

	// Data-In without status, then a separate SCSI Response.
	res = goExecute(s, &scsi.Command{CDB: scsi.Read16CDB(0, 1, false), Dir: scsi.DirFromDevice, Data: buf[:512]})
	cmd = f.expect(OpSCSICommand)
	f.dataIn(cmd, 0, 0, want[:512], -1)
	f.respond(cmd, 0, nil, 0)
	if r := wait(t, res); r.err != nil || r.resp.Residual != 0 || !bytes.Equal(buf[:512], want[:512]) {
		t.Fatalf("read with separate response: %+v %v", r.resp, r.err)
	}
}

// Reference: RFC 7143 11.4.7 (sense data in the SCSI Response data segment).
func TestSenseInResponse(t *testing.T) {
	s, f, _ := fakeSession(t, fakeOpts{}, nil)
	res := goExecute(s, &scsi.Command{CDB: scsi.TestUnitReadyCDB()})
	cmd := f.expect(OpSCSICommand)
	sense := []byte{0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x2a, 0x03, 0, 0, 0, 0}
	f.respond(cmd, uint8(scsi.StatusCheckCondition), sense, 0)
	r := wait(t, res)
	if r.err != nil || r.resp.Status != scsi.StatusCheckCondition || !bytes.Equal(r.resp.Sense, sense) {
		t.Fatalf("got %+v %v", r.resp, r.err)
	}
	var se *scsi.SenseError
	if err := scsi.CheckResponse("TEST UNIT READY", r.resp); !errors.As(err, &se) || se.Key != scsi.SenseUnitAttention || se.ASC != 0x2a || se.ASCQ != 3 {
		t.Fatalf("CheckResponse: %v", err)
	}
	// A sense length larger than the segment is clipped, not trusted.
	res = goExecute(s, &scsi.Command{CDB: scsi.TestUnitReadyCDB()})
	cmd = f.expect(OpSCSICommand)
	var p PDU
	p.Header.SetOpcode(OpSCSIResponse, false)
	p.Header[1] = 0x80
	p.Header[3] = uint8(scsi.StatusCheckCondition)
	p.Header.SetITT(cmd.Header.ITT())
	f.stamp(&p, true)
	p.Data = []byte{0xff, 0xff, 0x70, 0, 5}
	f.write(&p)
	if r := wait(t, res); r.err != nil || len(r.resp.Sense) != 3 {
		t.Fatalf("clipped sense: %+v %v", r.resp, r.err)
	}
}

// Reference: RFC 7143 11.18, 11.19 (NOP-In from the target is answered
// with a NOP-Out echoing its TTT and data).
func TestNOPInAnswered(t *testing.T) {
	s, f, _ := fakeSession(t, fakeOpts{}, nil)
	var p PDU
	p.Header.SetOpcode(OpNOPIn, false)
	p.Header[1] = 0x80
	p.Header.SetITT(ReservedTag)
	p.Header.SetU32(offTTT, 0x1234)
	f.stamp(&p, false)
	p.Data = []byte("ping")
	f.write(&p)
	q := f.expect(OpNOPOut)
	if q.Header.ITT() != ReservedTag || q.Header.U32(offTTT) != 0x1234 || !q.Header.Immediate() || string(q.Data) != "ping" {
		t.Fatalf("NOP-Out: ITT %#x TTT %#x I %v data %q", q.Header.ITT(), q.Header.U32(offTTT), q.Header.Immediate(), q.Data)
	}
	// Our own ping.
	errc := make(chan error, 1)
	go func() { errc <- s.Ping(context.Background()) }()
	q = f.expect(OpNOPOut)
	if q.Header.ITT() == ReservedTag || q.Header.U32(offTTT) != ReservedTag {
		t.Fatalf("ping NOP-Out: ITT %#x TTT %#x", q.Header.ITT(), q.Header.U32(offTTT))
	}
	var r PDU
	r.Header.SetOpcode(OpNOPIn, false)
	r.Header[1] = 0x80
	r.Header.SetITT(q.Header.ITT())
	r.Header.SetU32(offTTT, ReservedTag)
	f.stamp(&r, true)
	f.write(&r)
	if err := <-errc; err != nil {
		t.Fatalf("ping: %v", err)
	}
}

// A command waits while the target's CmdSN window is closed and goes out
// when a NOP-In opens it. Reference: RFC 7143 4.2.2.1.
func TestCmdSNWindow(t *testing.T) {
	s, f, _ := fakeSession(t, fakeOpts{window: 1}, nil)
	res := goExecute(s, &scsi.Command{CDB: scsi.TestUnitReadyCDB()})
	first := f.expect(OpSCSICommand)
	res2 := goExecute(s, &scsi.Command{CDB: scsi.TestUnitReadyCDB()})
	// The second command cannot be sent: window is CmdSN..CmdSN. Answer
	// the first with the window still closed for the second... then open.
	f.window = 0 // MaxCmdSN = ExpCmdSN - 1: closed
	f.respond(first, 0, nil, 0)
	if r := wait(t, res); r.err != nil {
		t.Fatal(r.err)
	}
	select {
	case r := <-res2:
		t.Fatalf("second command completed with the window closed: %+v %v", r.resp, r.err)
	default:
	}
	f.window = 4
	var p PDU
	p.Header.SetOpcode(OpNOPIn, false)
	p.Header[1] = 0x80
	p.Header.SetITT(ReservedTag)
	p.Header.SetU32(offTTT, ReservedTag)
	f.stamp(&p, false)
	f.write(&p)
	second := f.expect(OpSCSICommand)
	if second.Header.U32(offCmdSN) != first.Header.U32(offCmdSN)+1 {
		t.Fatalf("CmdSN %d after %d", second.Header.U32(offCmdSN), first.Header.U32(offCmdSN))
	}
	f.respond(second, 0, nil, 0)
	if r := wait(t, res2); r.err != nil {
		t.Fatal(r.err)
	}
}

// Header and data digests: a bad data digest on Data-In fails only that
// attempt (a read is re-sent on the same connection); a bad header digest
// drops the connection (a read is re-sent on a new one, a write's outcome
// is unknown). Reference: RFC 7143 7.8 (digest errors), 13.1.
func TestDigests(t *testing.T) {
	s, f, ch := fakeSession(t, fakeOpts{}, func(c *Config) {
		c.HeaderDigest, c.DataDigest = DigestCRC32C, DigestCRC32COnly
	})
	if p := s.Params(); !p.HeaderDigest || !p.DataDigest {
		t.Fatalf("digests not negotiated: %+v", p)
	}
	want := pattern(512)
	buf := make([]byte, 512)
	res := goExecute(s, &scsi.Command{CDB: scsi.Read16CDB(0, 1, false), Dir: scsi.DirFromDevice, Data: buf})
	cmd := f.expect(OpSCSICommand)
	// Corrupt the data digest of the Data-In.
	var p PDU
	p.Header.SetOpcode(OpDataIn, false)
	p.Header[1] = 0x81
	p.Header.SetITT(cmd.Header.ITT())
	p.Header.SetU32(offTTT, ReservedTag)
	f.stamp(&p, true)
	p.Data = want
	b, _ := f.tx.Marshal(&p)
	b[len(b)-1] ^= 0xff
	f.nc.Write(b)
	cmd = f.expect(OpSCSICommand) // re-sent on the same connection
	f.dataIn(cmd, 0, 0, want, 0)
	if r := wait(t, res); r.err != nil || !bytes.Equal(buf, want) {
		t.Fatalf("read after a data digest error: %v", r.err)
	}

	// A bad header digest kills the connection; the write's outcome is unknown.
	wres := goExecute(s, &scsi.Command{CDB: scsi.Write16CDB(0, 1, true), Dir: scsi.DirToDevice, Data: want})
	cmd = f.expect(OpSCSICommand)
	var q PDU
	q.Header.SetOpcode(OpSCSIResponse, false)
	q.Header[1] = 0x80
	q.Header.SetITT(cmd.Header.ITT())
	f.stamp(&q, true)
	b, _ = f.tx.Marshal(&q)
	b[BHSLen] ^= 0xff
	f.nc.Write(b)
	r := wait(t, wres)
	if !errors.Is(r.err, ErrOutcomeUnknown) || !errors.Is(r.err, ErrHeaderDigest) {
		t.Fatalf("write after a header digest error: %v; want outcome unknown from a header digest error", r.err)
	}
	t.Logf("error: %v", r.err)
	// The next command reconnects.
	res = goExecute(s, &scsi.Command{CDB: scsi.TestUnitReadyCDB()})
	f2 := acceptFake(t, ch, fakeOpts{})
	t.Cleanup(f2.close)
	cmd = f2.expect(OpSCSICommand)
	f2.respond(cmd, 0, nil, 0)
	if r := wait(t, res); r.err != nil {
		t.Fatalf("after reconnect: %v", r.err)
	}
}

// A PDU cut short or lying about its length kills the connection without
// a panic or a large allocation; a read in flight is re-sent on a new
// connection. Reference: RFC 7143 11.2.1.
func TestTruncatedAndHugePDU(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(f *fakeTarget, cmd PDU)
		want error
	}{
		{"truncated", func(f *fakeTarget, cmd PDU) {
			var p PDU
			p.Header.SetOpcode(OpDataIn, false)
			p.Header.SetITT(cmd.Header.ITT())
			p.Data = make([]byte, 400)
			b, _ := f.tx.Marshal(&p)
			f.nc.Write(b[:100])
			f.close()
		}, ErrTruncatedPDU},
		{"huge", func(f *fakeTarget, cmd PDU) {
			var h BHS
			h.SetOpcode(OpDataIn, false)
			h.SetITT(cmd.Header.ITT())
			h[5], h[6], h[7] = 0xff, 0xff, 0xff
			f.nc.Write(h[:])
		}, ErrPDUTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f, ch := fakeSession(t, fakeOpts{}, nil)
			buf := make([]byte, 512)
			res := goExecute(s, &scsi.Command{CDB: scsi.Read16CDB(0, 1, false), Dir: scsi.DirFromDevice, Data: buf})
			cmd := f.expect(OpSCSICommand)
			go tc.send(f, cmd)
			f2 := acceptFake(t, ch, fakeOpts{})
			t.Cleanup(f2.close)
			cmd = f2.expect(OpSCSICommand)
			f2.dataIn(cmd, 0, 0, pattern(512), 0)
			if r := wait(t, res); r.err != nil || !bytes.Equal(buf, pattern(512)) {
				t.Fatalf("read re-sent after %s PDU: %v", tc.name, r.err)
			}
		})
	}
}

// A command that times out is aborted with ABORT TASK; a write then
// reports an unknown outcome. Reference: RFC 7143 11.5 (Task Management).
func TestTimeoutAbortsTask(t *testing.T) {
	s, f, _ := fakeSession(t, fakeOpts{}, nil)
	res := goExecute(s, &scsi.Command{CDB: scsi.Write16CDB(0, 1, true), Dir: scsi.DirToDevice, Data: pattern(512), Timeout: 50 * time.Millisecond})
	cmd := f.expect(OpSCSICommand)
	r := wait(t, res)
	if !errors.Is(r.err, ErrOutcomeUnknown) || !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("timed-out write: %v; want outcome unknown, deadline exceeded", r.err)
	}
	tmf := f.expect(OpTaskMgmtReq)
	if tmf.Header[1]&0x7f != tmfAbortTask || tmf.Header.U32(offTTT) != cmd.Header.ITT() || tmf.Header.U32(offMaxCmdSN) != cmd.Header.U32(offCmdSN) || !tmf.Header.Immediate() {
		t.Fatalf("TMF: function %d RTT %#x RefCmdSN %d", tmf.Header[1]&0x7f, tmf.Header.U32(offTTT), tmf.Header.U32(offMaxCmdSN))
	}
	// A late response for the aborted task is ignored.
	f.respond(cmd, 0, nil, 0)
	var p PDU
	p.Header.SetOpcode(OpTaskMgmtResp, false)
	p.Header[1] = 0x80
	p.Header.SetITT(tmf.Header.ITT())
	f.stamp(&p, true)
	f.write(&p)
	// The session still works.
	res = goExecute(s, &scsi.Command{CDB: scsi.TestUnitReadyCDB()})
	cmd = f.expect(OpSCSICommand)
	f.respond(cmd, 0, nil, 0)
	if r := wait(t, res); r.err != nil {
		t.Fatal(r.err)
	}
}

// LOGICAL UNIT RESET and Logout on Close.
// Reference: RFC 7143 11.5.1, 11.14.
func TestLUResetAndLogout(t *testing.T) {
	s, f, _ := fakeSession(t, fakeOpts{}, nil)
	errc := make(chan error, 1)
	go func() { errc <- s.LogicalUnitReset(context.Background()) }()
	tmf := f.expect(OpTaskMgmtReq)
	if tmf.Header[1]&0x7f != tmfLogicalUnitReset {
		t.Fatalf("TMF function %d", tmf.Header[1]&0x7f)
	}
	var p PDU
	p.Header.SetOpcode(OpTaskMgmtResp, false)
	p.Header[1] = 0x80
	p.Header[2] = 5 // not supported
	p.Header.SetITT(tmf.Header.ITT())
	f.stamp(&p, true)
	f.write(&p)
	if err := <-errc; err == nil {
		t.Fatal("LU reset refused by the target: want an error")
	}
	go func() { errc <- s.Close() }()
	lo := f.expect(OpLogoutReq)
	var q PDU
	q.Header.SetOpcode(OpLogoutResp, false)
	q.Header[1] = 0x80
	q.Header.SetITT(lo.Header.ITT())
	f.stamp(&q, true)
	f.write(&q)
	if err := <-errc; err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := s.Execute(context.Background(), &scsi.Command{CDB: scsi.TestUnitReadyCDB()}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Address
		err  string
	}{
		{in: "iscsi://127.0.0.1:3260/iqn.2024-01.org.example:quorum/1", want: Address{"127.0.0.1:3260", "iqn.2024-01.org.example:quorum", 1}},
		{in: "iscsi://10.0.0.1/iqn.2024-01.org.example:quorum/0", want: Address{"10.0.0.1:3260", "iqn.2024-01.org.example:quorum", 0}},
		{in: "iscsi://[::1]:3261/iqn.2024-01.org.example:q/300", want: Address{"[::1]:3261", "iqn.2024-01.org.example:q", 300}},
		{in: "iscsi://h/eui.0123456789abcdef/2", want: Address{"h:3260", "eui.0123456789abcdef", 2}},
		{in: "http://h/iqn.2024-01.org.example:q/1", err: "scheme"},
		{in: "iscsi://user%pw@h/iqn.2024-01.org.example:q/1", err: "credentials"},
		{in: "iscsi://user:pw@h/iqn.2024-01.org.example:q/1", err: "credentials"},
		{in: "iscsi://h/iqn.2024-01.org.example:q", err: "LUN"},
		{in: "iscsi://h/iqn.2024-01.org.example:q/x", err: "LUN"},
		{in: "iscsi://h/iqn.2024-01.org.example:q/16384", err: "LUN"},
		{in: "iscsi://h/IQN.2024-01.org.example:q/1", err: "not allowed"},
		{in: "iscsi://h/iqn.24-01.org:q/1", err: "iqn.yyyy-mm"},
		{in: "iscsi://h:0/iqn.2024-01.org.example:q/1", err: "port"},
		{in: "iscsi:///iqn.2024-01.org.example:q/1", err: "no host"},
	} {
		got, err := ParseAddress(tc.in)
		if tc.err != "" {
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.err)) {
				t.Errorf("ParseAddress(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseAddress(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if err == nil {
			if again, err := ParseAddress(got.String()); err != nil || again != got {
				t.Errorf("round trip of %q: %+v %v", got.String(), again, err)
			}
		}
	}
}

func TestDefaultISIDStable(t *testing.T) {
	a, b := DefaultISID(node1), DefaultISID(node1)
	if a != b || a == DefaultISID(node2) || a[0]&0xc0 != 0xc0 {
		t.Fatalf("ISIDs %x %x %x", a, b, DefaultISID(node2))
	}
}

// Reference: RFC 7143 Appendix B.4 (CRC32C examples).
func TestCRC32CVectors(t *testing.T) {
	zeros := make([]byte, 32)
	ones := bytes.Repeat([]byte{0xff}, 32)
	inc := make([]byte, 32)
	for i := range inc {
		inc[i] = byte(i)
	}
	for _, tc := range []struct {
		in   []byte
		want uint32
	}{{zeros, 0x8a9136aa}, {ones, 0x62a8ab43}, {inc, 0x46dd794e}} {
		if got := CRC32C(tc.in); got != tc.want {
			t.Errorf("CRC32C = %#x, want %#x", got, tc.want)
		}
	}
}
