package probe

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
)

// Frame is one answer of the echo server as it arrived on the client's
// interface: the Ethernet source address (the MAC that answered) and the
// probe's sequence number.
type Frame struct {
	At  time.Time
	MAC net.HardwareAddr
	Seq uint64
}

// Frames records, through a packet socket on an interface (as tcpdump),
// every IPv4 UDP datagram from a server address and port that carries a
// Prober's answer.
type Frames struct {
	From netip.AddrPort

	conn   *packet.Conn
	wg     sync.WaitGroup
	once   sync.Once
	closed atomic.Bool

	mu      sync.Mutex
	frames  []Frame
	errs    int
	lastErr error
}

// CaptureFrames starts recording the answers from from on the interface
// ifname of the namespace ns ("": the caller's); Close stops it.
func CaptureFrames(ns, ifname string, from netip.AddrPort) (*Frames, error) {
	f := &Frames{From: from}
	open := func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		f.conn, err = packet.Listen(ifi, packet.Raw, 0x0800, nil) // ETH_P_IP
		return err
	}
	err := inNS(ns, open)
	if err != nil {
		return nil, fmt.Errorf("probe: capture on %s in %q: %w", ifname, ns, err)
	}
	f.wg.Add(1)
	go f.read()
	return f, nil
}

func (f *Frames) read() {
	defer f.wg.Done()
	buf := make([]byte, 2048)
	src := f.From.Addr().As4()
	for {
		n, _, err := f.conn.ReadFrom(buf)
		now := time.Now()
		if err != nil {
			if f.closed.Load() || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			f.mu.Lock()
			f.errs++
			f.lastErr = err
			f.mu.Unlock()
			time.Sleep(time.Millisecond)
			continue
		}
		// Ethernet (14) + IPv4 (IHL) + UDP (8) + the sequence number (8) and '@'.
		if n < 14+20+8+9 {
			continue
		}
		ip := buf[14:n]
		ihl := int(ip[0]&0x0f) * 4
		if ip[0]>>4 != 4 || ip[9] != 17 || [4]byte(ip[12:16]) != src || len(ip) < ihl+8+9 {
			continue
		}
		udp := ip[ihl:]
		if binary.BigEndian.Uint16(udp[0:2]) != f.From.Port() || udp[8+8] != '@' {
			continue
		}
		fr := Frame{At: now, MAC: net.HardwareAddr(append([]byte(nil), buf[6:12]...)), Seq: binary.BigEndian.Uint64(udp[8:16])}
		f.mu.Lock()
		f.frames = append(f.frames, fr)
		f.mu.Unlock()
	}
}

// Close stops the capture.
func (f *Frames) Close() error {
	f.once.Do(func() {
		f.closed.Store(true)
		f.conn.Close()
		f.wg.Wait()
	})
	return nil
}

// Err returns the number of failed reads and the last error.
func (f *Frames) Err() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs, f.lastErr
}

// All returns every answer so far, in the order received.
func (f *Frames) All() []Frame {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Frame(nil), f.frames...)
}

// SplitBrain returns the evidence of two servers answering at once, by
// the probes' order (one sequence number per Interval of the Prober): a
// probe answered from two MACs, or a MAC that answers a probe again within
// window probes after another MAC answered a probe before it, as "MAC a,
// MAC b, MAC a". A move from one node to another (and back, more than
// window probes later) is not one; nor is an answer that arrives late
// (Late).
func SplitBrain(frames []Frame, window uint64) []string {
	var out []string
	bySeq := map[uint64]string{}
	for _, f := range frames {
		m := f.MAC.String()
		if prev, ok := bySeq[f.Seq]; ok && prev != m {
			out = append(out, fmt.Sprintf("probe #%d answered by %s and by %s", f.Seq, prev, m))
		}
		bySeq[f.Seq] = m
	}
	sorted := slices.Clone(frames)
	slices.SortStableFunc(sorted, func(a, b Frame) int { return cmp.Compare(a.Seq, b.Seq) })
	// The runs of one MAC, in probe order.
	type run struct {
		mac         string
		first, last Frame
	}
	var runs []run
	for _, f := range sorted {
		m := f.MAC.String()
		if len(runs) > 0 && runs[len(runs)-1].mac == m {
			runs[len(runs)-1].last = f
			continue
		}
		runs = append(runs, run{mac: m, first: f, last: f})
	}
	for k := 2; k < len(runs); k++ {
		a, b, c := runs[k-2], runs[k-1], runs[k]
		if a.mac == c.mac && c.first.Seq-a.last.Seq < window {
			out = append(out, fmt.Sprintf("%s answered probes until #%d (at %s), %s from #%d (at %s), %s again from #%d (at %s)",
				a.mac, a.last.Seq, a.last.At.Format("15:04:05.000"), b.mac, b.first.Seq, b.first.At.Format("15:04:05.000"),
				c.mac, c.first.Seq, c.first.At.Format("15:04:05.000")))
		}
	}
	return out
}

// Late returns the answers that arrived after another MAC had already
// answered a later probe: a server that answers requests it received
// long before (queued while it was frozen), while another serves the
// address.
func Late(frames []Frame) []Frame {
	var out []Frame
	var newest Frame // the answer to the latest probe so far
	for _, f := range frames {
		if f.Seq < newest.Seq && f.MAC.String() != newest.MAC.String() {
			out = append(out, f)
			continue
		}
		if f.Seq >= newest.Seq {
			newest = f
		}
	}
	return out
}

// MACs returns the MACs that answered, in the order each first answered.
func MACs(frames []Frame) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range frames {
		if m := f.MAC.String(); !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}
