package iscsi

import (
	"context"
	"encoding/binary"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeTarget is the target end of a net.Pipe, driven step by step by a
// test: it logs the initiator in with the keys the test chooses and then
// reads and writes PDUs as the test's script says.
type fakeTarget struct {
	t        testing.TB
	nc       net.Conn
	rd       *Reader
	tx       Codec
	statSN   uint32
	expCmdSN uint32
	window   uint32 // MaxCmdSN - ExpCmdSN + 1
}

// fakeOpts are the keys the fake answers with during login.
type fakeOpts struct {
	keys    map[string]string // overrides of the operational answers
	maxRecv int               // the target's MaxRecvDataSegmentLength
	window  uint32            // CmdSN window; zero means 32
	tsih    uint16
}

// dialer returns a Config.Dialer whose every call yields a new pipe; the
// target ends arrive on the channel.
func pipeDialer() (func(context.Context, string, string) (net.Conn, error), chan net.Conn) {
	ch := make(chan net.Conn, 4)
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		a, b := net.Pipe()
		select {
		case ch <- b:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return a, nil
	}, ch
}

func acceptFake(t testing.TB, ch chan net.Conn, o fakeOpts) *fakeTarget {
	t.Helper()
	var nc net.Conn
	select {
	case nc = <-ch:
	case <-time.After(5 * time.Second):
		t.Error("fake target: no connection")
		return nil
	}
	f := &fakeTarget{t: t, nc: nc, rd: NewReader(nc, Codec{MaxDataSegment: LoginMaxDataSegment}), window: o.window}
	if f.window == 0 {
		f.window = 32
	}
	if o.maxRecv == 0 {
		o.maxRecv = 8192
	}
	if o.tsih == 0 {
		o.tsih = 7
	}
	var hd, dd bool
	for {
		p, err := f.rd.Read()
		if err != nil {
			t.Errorf("fake target: login read: %v", err)
			return nil
		}
		h := p.Header
		if h.Opcode() != OpLoginReq {
			t.Errorf("fake target: got %s during login", h.Opcode())
			return nil
		}
		kvs, err := ParseText(p.Data)
		if err != nil {
			t.Errorf("fake target: login text: %v", err)
			return nil
		}
		f.expCmdSN = h.U32(offCmdSN)
		csg := int(h[1]>>2) & 3
		var ans []KeyValue
		final := false
		if csg == stageSecurity {
			ans = append(ans, KeyValue{"TargetPortalGroupTag", "1"})
			if _, ok := lookup(kvs, "AuthMethod"); ok {
				ans = append(ans, KeyValue{"AuthMethod", "None"})
			}
		} else {
			for _, kv := range kvs {
				v := kv.Value
				if o, ok := o.keys[kv.Key]; ok {
					v = o
				} else if i := strings.IndexByte(v, ','); i >= 0 {
					v = v[:i]
				}
				switch kv.Key {
				case "MaxRecvDataSegmentLength":
					continue
				case "HeaderDigest":
					hd = v == "CRC32C"
				case "DataDigest":
					dd = v == "CRC32C"
				}
				ans = append(ans, KeyValue{kv.Key, v})
			}
			ans = append(ans, KeyValue{"MaxRecvDataSegmentLength", strconv.Itoa(o.maxRecv)})
			final = true
		}
		var q PDU
		q.Header.SetOpcode(OpLoginResp, false)
		q.Header[1] = 0x80 | byte(csg<<2) | byte(h[1]&3)
		copy(q.Header[8:14], h[8:14])
		if final {
			q.Header.SetU16(14, o.tsih)
		}
		q.Header.SetITT(h.ITT())
		f.stamp(&q, true)
		q.Data = AppendText(nil, ans)
		f.write(&q)
		if final {
			break
		}
	}
	f.tx = Codec{HeaderDigest: hd, DataDigest: dd}
	f.rd.Codec = Codec{HeaderDigest: hd, DataDigest: dd, MaxDataSegment: 1 << 20}
	return f
}

// stamp fills StatSN (advancing it if status), ExpCmdSN and MaxCmdSN.
func (f *fakeTarget) stamp(p *PDU, status bool) {
	p.Header.SetU32(offStatSN, f.statSN)
	if status {
		f.statSN++
	}
	p.Header.SetU32(offExpCmdSN, f.expCmdSN)
	p.Header.SetU32(offMaxCmdSN, f.expCmdSN+f.window-1)
}

func (f *fakeTarget) write(p *PDU) {
	b, err := f.tx.Marshal(p)
	if err != nil {
		f.t.Errorf("fake target: marshal: %v", err)
		return
	}
	if _, err := f.nc.Write(b); err != nil {
		f.t.Logf("fake target: write: %v", err)
	}
}

// read returns the next PDU with its data copied; commands advance ExpCmdSN.
func (f *fakeTarget) read() PDU {
	f.t.Helper()
	p, err := f.rd.Read()
	if err != nil {
		f.t.Errorf("fake target: read: %v", err)
		return PDU{}
	}
	p.Data = append([]byte(nil), p.Data...)
	p.AHS = nil
	if p.Header.Opcode() == OpSCSICommand && !p.Header.Immediate() {
		f.expCmdSN = p.Header.U32(offCmdSN) + 1
	}
	return p
}

// expect reads PDUs until one with opcode op, answering nothing else.
func (f *fakeTarget) expect(op Opcode) PDU {
	f.t.Helper()
	p := f.read()
	if p.Header.Opcode() != op {
		f.t.Errorf("fake target: got %s, want %s", p.Header.Opcode(), op)
	}
	return p
}

// respond sends a SCSI Response for cmd with status and sense.
func (f *fakeTarget) respond(cmd PDU, status uint8, sense []byte, residual uint32) {
	var p PDU
	p.Header.SetOpcode(OpSCSIResponse, false)
	p.Header[1] = 0x80
	if residual > 0 {
		p.Header[1] |= 0x02
		p.Header.SetU32(offResidual, residual)
	}
	p.Header[3] = status
	p.Header.SetITT(cmd.Header.ITT())
	f.stamp(&p, true)
	if sense != nil {
		p.Data = binary.BigEndian.AppendUint16(nil, uint16(len(sense)))
		p.Data = append(p.Data, sense...)
	}
	f.write(&p)
}

// dataIn sends one Data-In; status >= 0 puts the status in it.
func (f *fakeTarget) dataIn(cmd PDU, dataSN, off uint32, data []byte, status int) {
	var p PDU
	p.Header.SetOpcode(OpDataIn, false)
	p.Header.SetITT(cmd.Header.ITT())
	p.Header.SetU32(offTTT, ReservedTag)
	p.Header.SetU32(offDataSN, dataSN)
	p.Header.SetU32(offBufferOff, off)
	if status >= 0 {
		p.Header[1] = 0x81
		p.Header[3] = uint8(status)
	}
	f.stamp(&p, status >= 0)
	p.Data = data
	f.write(&p)
}

func (f *fakeTarget) close() { f.nc.Close() }
