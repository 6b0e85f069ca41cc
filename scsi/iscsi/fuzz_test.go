package iscsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

func seedPDUs() [][]byte {
	var out [][]byte
	for _, p := range []PDU{
		{Header: BHS{0x25, 0x81, 0, 0, 0, 0, 0, 4}, Data: []byte{1, 2, 3, 4}},
		{Header: BHS{0x21, 0x80, 0, 2, 0, 0, 0, 5}, Data: []byte{0, 3, 0x70, 0, 6}},
		{Header: BHS{0x31, 0x80}, AHS: []byte{0, 4, 1, 0, 1, 2, 3, 4}},
		{Header: BHS{0x23, 0x87}, Data: []byte("TargetPortalGroupTag=1\x00")},
	} {
		b, _ := p.MarshalBinary()
		out = append(out, b)
		b, _ = Codec{HeaderDigest: true, DataDigest: true}.Marshal(&p)
		out = append(out, b)
	}
	return out
}

// FuzzPDU decodes arbitrary bytes with every digest setting; whatever
// decodes must encode back to the same bytes, and nothing may panic or
// read past its limit.
func FuzzPDU(f *testing.F) {
	for _, b := range seedPDUs() {
		f.Add(b, uint8(0))
		f.Add(b, uint8(3))
	}
	f.Fuzz(func(t *testing.T, b []byte, mode uint8) {
		c := Codec{HeaderDigest: mode&1 != 0, DataDigest: mode&2 != 0, MaxDataSegment: 4096}
		p, n, err := c.Decode(b)
		if err == nil {
			if len(p.Data) > 4096 || n > len(b) {
				t.Fatalf("decoded %d data bytes, used %d of %d", len(p.Data), n, len(b))
			}
			again, err := c.Marshal(&p)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			// Padding bytes are not checked on decode; compare all else.
			if len(again) != n || !bytes.Equal(again[:BHSLen+len(p.AHS)], b[:BHSLen+len(p.AHS)]) {
				t.Fatalf("round trip: %x != %x", again, b[:n])
			}
		}
		// The stream reader agrees with Decode on success and failure.
		r := NewReader(bytes.NewReader(b), c)
		q, rerr := r.Read()
		if (err == nil || errors.Is(err, ErrDataDigest)) != (rerr == nil || errors.Is(rerr, ErrDataDigest)) {
			t.Fatalf("Decode err %v, Reader err %v", err, rerr)
		}
		if err == nil && (q.Header != p.Header || !bytes.Equal(q.Data, p.Data)) {
			t.Fatal("Reader and Decode differ")
		}
		var u PDU
		_ = u.UnmarshalBinary(b)
	})
}

// FuzzParseText checks the key=value parser: no panics, limits kept, and
// what parses re-encodes to something that parses the same.
func FuzzParseText(f *testing.F) {
	f.Add([]byte("HeaderDigest=None\x00MaxRecvDataSegmentLength=8192\x00"))
	f.Add([]byte("CHAP_C=0x0123456789abcdef\x00CHAP_I=7\x00\x00\x00"))
	f.Add([]byte("a=b"))
	f.Add([]byte("=\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kvs, err := ParseText(b)
		if err != nil {
			return
		}
		if len(kvs) > MaxTextKeys {
			t.Fatalf("%d keys", len(kvs))
		}
		again, err := ParseText(AppendText(nil, kvs))
		if err != nil || len(again) != len(kvs) {
			t.Fatalf("re-parse: %v", err)
		}
		for i := range kvs {
			if kvs[i] != again[i] {
				t.Fatalf("re-parse %d: %q != %q", i, again[i], kvs[i])
			}
			if len(kvs[i].Key) > MaxKeyLen || len(kvs[i].Value) > MaxValueLen {
				t.Fatalf("limits: %q", kvs[i])
			}
		}
		if v, ok := lookup(kvs, "CHAP_C"); ok {
			decodeBinary(v)
		}
	})
}

// FuzzHostileTarget logs in to a fake target that then sends arbitrary
// bytes while a read and a write are in flight: the initiator must not
// panic or hang, and must not report success with data it did not get.
func FuzzHostileTarget(f *testing.F) {
	for _, b := range seedPDUs() {
		f.Add(b)
	}
	f.Add([]byte{0x21, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, garbage []byte) {
		dial, ch := pipeDialer()
		// A short command timeout keeps one run near 10 ms (the commands
		// garbage does not complete end at it), so the fuzzer explores
		// about 100 inputs a second a worker instead of 20.
		cfg := Config{InitiatorName: "iqn.2024-01.org.example:fuzz", Dialer: dial, Timeout: 10 * time.Millisecond, LoginTimeout: time.Second}
		fch := make(chan *fakeTarget, 1)
		go func() { fch <- acceptFake(t, ch, fakeOpts{}) }()
		s, err := Open(context.Background(), fakeAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ft := <-fch
		defer s.Close()
		defer ft.close()
		// Drain whatever the initiator sends (commands, NOP-Outs, TMFs).
		go io.Copy(io.Discard, ft.nc)
		buf := make([]byte, 512)
		for i := range buf {
			buf[i] = 0xee
		}
		rd := make(chan result, 1)
		go func() {
			r, err := s.Execute(context.Background(), &scsi.Command{CDB: scsi.Read16CDB(0, 1, false), Dir: scsi.DirFromDevice, Data: buf})
			rd <- result{r, err}
		}()
		wr := make(chan result, 1)
		go func() {
			r, err := s.Execute(context.Background(), &scsi.Command{CDB: scsi.Write16CDB(0, 1, false), Dir: scsi.DirToDevice, Data: make([]byte, 512)})
			wr <- result{r, err}
		}()
		// Aim the garbage at the first ITTs the session will use.
		g := append([]byte(nil), garbage...)
		if len(g) >= 20 {
			binary.BigEndian.PutUint32(g[16:20], binary.BigEndian.Uint32(g[16:20])%4+1)
		}
		ft.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		ft.nc.Write(g)
		for _, c := range []chan result{rd, wr} {
			select {
			case <-c:
			case <-time.After(5 * time.Second):
				t.Fatal("Execute hung on a hostile target")
			}
		}
	})
}
