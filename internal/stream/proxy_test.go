package stream

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// proxy forwards TCP connections from 127.0.0.1 to target. In the
// client-to-server direction it parses TLS records (5-byte header: type,
// version, length) and applies act, once, to the first application-data
// record of length recLen.
type proxy struct {
	ln     net.Listener
	target string
	recLen int
	act    func(rec []byte) [][]byte
	done   atomic.Bool
	conns  atomic.Int32
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string, recLen int, act func([]byte) [][]byte) *proxy {
	p := &proxy{ln: listen(t, ""), target: target, recLen: recLen, act: act}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { p.ln.Close(); p.wg.Wait() })
	return p
}

func (p *proxy) serve() {
	defer p.wg.Done()
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.conns.Add(1)
		open = append(open, c, s)
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			io.Copy(c, s)
			c.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.records(c, s)
			s.Close()
		}()
	}
}

// records copies TLS records from c to s, acting on the chosen one.
func (p *proxy) records(c, s net.Conn) {
	for {
		var h [5]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(h[3:]))
		rec := make([]byte, 5+n)
		copy(rec, h[:])
		if _, err := io.ReadFull(c, rec[5:]); err != nil {
			return
		}
		out := [][]byte{rec}
		if h[0] == 23 && n == p.recLen && p.done.CompareAndSwap(false, true) {
			out = p.act(rec)
		}
		for _, r := range out {
			if _, err := s.Write(r); err != nil {
				return
			}
		}
	}
}

// markerLen is the payload of the frame the proxy acts on: its TLS record
// is the header, the payload, the inner content type and the 16-byte tag.
const markerLen = 3000

const markerRecord = HeaderLen + markerLen + 1 + 16

// recordAttack runs node 1 → proxy → node 2; the proxy does act to the
// record of a marker frame. It checks that node 2 closes the connection on
// a bad record, counts and logs it, and that later frames arrive on a new
// connection; it returns how many markers node 2 received.
func recordAttack(t *testing.T, act func([]byte) [][]byte) int {
	ca := clusterCA(t)
	ln1, ln2 := listen(t, ""), listen(t, "")
	px := newProxy(t, ln2.Addr().String(), markerRecord, act)
	a := startMesh(t, creds(t, ca, 1), ln1, map[nodes.ID]string{2: px.ln.Addr().String()}, nil)
	b := startMesh(t, creds(t, ca, 2), ln2, map[nodes.ID]string{1: ln1.Addr().String()}, nil)
	// Settle the connection through the proxy.
	if !wait(5*time.Second, func() bool {
		a.Send(2, 16, nil)
		time.Sleep(10 * time.Millisecond)
		return len(b.in.snapshot()) > 0
	}) {
		t.Fatal("no frame through the proxy")
	}
	marker := bytes.Repeat([]byte{0xab}, markerLen)
	a.Send(2, 17, marker)
	// A frame right behind the marker: it may arrive, on a new
	// connection, if node 1 saw the close before writing it.
	a.Send(2, 18, []byte("right behind the marker"))
	if !wait(5*time.Second, func() bool { return b.Counters().BadRecords == 1 }) {
		t.Fatalf("node 2 counters %+v: no bad record\n%s", b.Counters(), b.log)
	}
	if l := b.log.line("TLS record failed authentication", "peer=1", "remote=127.0.0.1:"); l == "" {
		t.Errorf("bad record not logged:\n%s", b.log)
	}
	if !wait(5*time.Second, func() bool { return !b.Connected().Has(1) }) {
		t.Error("node 2 kept the connection after a bad record")
	}
	// Recovery: node 1 redials through the proxy, which now forwards
	// untouched.
	if !wait(10*time.Second, func() bool {
		a.Send(2, 19, []byte("after"))
		time.Sleep(20 * time.Millisecond)
		for _, f := range b.in.snapshot() {
			if f.typ == 19 {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("nothing arrived after the bad record; node 1 %+v, node 2 %+v", a.Counters(), b.Counters())
	}
	if px.conns.Load() < 2 || b.Counters().Connections < 2 {
		t.Errorf("proxy saw %d connections, node 2 counted %d: want a new one", px.conns.Load(), b.Counters().Connections)
	}
	if c := b.Counters(); c.BadRecords != 1 || c.DecodeErrors != 0 {
		t.Errorf("node 2 counters %+v", c)
	}
	markers := 0
	for _, f := range b.in.snapshot() {
		switch {
		case f.typ == 17 && bytes.Equal(f.payload, marker):
			markers++
		case f.typ == 17:
			t.Errorf("delivered type %d, %d bytes: a frame the attack should have stopped", f.typ, len(f.payload))
		}
	}
	return markers
}

// TestTamperedRecord: one flipped byte in the marker's TLS record: node 2
// refuses the record (bad record MAC), delivers nothing of it, closes the
// connection, counts it, and node 1's later frames arrive on a new one.
func TestTamperedRecord(t *testing.T) {
	got := recordAttack(t, func(rec []byte) [][]byte {
		rec[5+markerLen/2] ^= 0x01
		return [][]byte{rec}
	})
	if got != 0 {
		t.Fatalf("the tampered marker was delivered %d times", got)
	}
}

// TestReplayedRecord: the marker's TLS record sent twice: the first copy
// is delivered, the second fails authentication (its sequence number is
// the next one's), so the marker arrives once and the connection closes.
func TestReplayedRecord(t *testing.T) {
	got := recordAttack(t, func(rec []byte) [][]byte {
		return [][]byte{rec, append([]byte(nil), rec...)}
	})
	if got != 1 {
		t.Fatalf("the replayed marker was delivered %d times, want once", got)
	}
}
