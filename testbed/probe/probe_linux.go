package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Reply is one answer of testbed/probe/echo to the Prober.
type Reply struct {
	Seq        uint64
	Sent, Recv time.Time
	// From is what the server appended: its $WOLFPACK_PROBE_ID, "/", and
	// the name of the namespace it runs in.
	From string
}

// ID is the server's $WOLFPACK_PROBE_ID, the part of From before "/".
func (r Reply) ID() string {
	id, _, _ := strings.Cut(r.From, "/")
	return id
}

// Node is the id of the node that answered when the server runs in a
// namespace named "<prefix>-n<N>" (testbed/nscluster's), 0 if the answer
// names none.
func (r Reply) Node() int {
	i := strings.LastIndex(r.From, "-n")
	if i < 0 {
		return 0
	}
	n, _ := strconv.Atoi(r.From[i+2:])
	return n
}

// Prober is a client in the client namespace that sends a datagram with a
// sequence number to a UDP echo server (testbed/probe/echo) every
// Interval and records every answer.
type Prober struct {
	Target   netip.AddrPort
	Interval time.Duration

	udpLoop

	mu      sync.Mutex
	sent    []time.Time // by sequence number
	replies []Reply     // in the order received
	changed chan struct{}
}

// Start starts a Prober of target from the network namespace ns ("": the
// caller's); Close stops it.
func Start(ns string, target netip.AddrPort, interval time.Duration) (*Prober, error) {
	p := &Prober{Target: target, Interval: interval, udpLoop: udpLoop{stop: make(chan struct{})}, changed: make(chan struct{})}
	dial := func() error {
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
		p.conn = conn
		return err
	}
	err := inNS(ns, dial)
	if err != nil {
		return nil, fmt.Errorf("probe: prober of %v: %w", target, err)
	}
	p.wg.Add(2)
	go p.send()
	go p.recv()
	return p, nil
}

func (p *Prober) send() {
	defer p.wg.Done()
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	buf := make([]byte, 8)
	for {
		p.mu.Lock()
		seq := uint64(len(p.sent))
		p.sent = append(p.sent, time.Now())
		p.mu.Unlock()
		binary.BigEndian.PutUint64(buf, seq)
		// A datagram to an address whose neighbour entry is unresolved
		// waits in the kernel's queue and holds the socket's send buffer:
		// a blocking write would stop the probes for the whole outage.
		p.conn.SetWriteDeadline(time.Now().Add(p.Interval))
		p.conn.Write(buf) // a refused or unreachable target, or a full buffer, is an outage, not an error
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

func (p *Prober) recv() {
	defer p.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, err := p.conn.Read(buf)
		now := time.Now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ECONNREFUSED after a port unreachable: nobody listens (yet)
		}
		if n < 9 || buf[8] != '@' {
			continue
		}
		seq := binary.BigEndian.Uint64(buf)
		p.mu.Lock()
		if seq < uint64(len(p.sent)) {
			p.replies = append(p.replies, Reply{Seq: seq, Sent: p.sent[seq], Recv: now, From: string(buf[9:n])})
			close(p.changed)
			p.changed = make(chan struct{})
		}
		p.mu.Unlock()
	}
}

// Replies returns every answer so far, in the order received.
func (p *Prober) Replies() []Reply {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Reply(nil), p.replies...)
}

// Sent is the number of datagrams sent so far.
func (p *Prober) Sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sent)
}

// WaitReply waits for an answer received at or after since for which pred
// (nil: any) holds, and returns it.
func (p *Prober) WaitReply(ctx context.Context, since time.Time, pred func(Reply) bool) (Reply, error) {
	next := 0
	for {
		p.mu.Lock()
		rs := p.replies[next:]
		next = len(p.replies)
		ch := p.changed
		p.mu.Unlock()
		for _, r := range rs {
			if !r.Recv.Before(since) && (pred == nil || pred(r)) {
				return r, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			last := "none"
			if rs := p.Replies(); len(rs) > 0 {
				r := rs[len(rs)-1]
				last = fmt.Sprintf("#%d from %s at %s", r.Seq, r.From, r.Recv.Format("15:04:05.000"))
			}
			return Reply{}, fmt.Errorf("probe: prober of %v: no such answer since %s (last answer: %s): %w",
				p.Target, since.Format("15:04:05.000"), last, ctx.Err())
		}
	}
}

// Outage is the longest silence the client saw around an event.
type Outage struct {
	// Gap is the time between the last answer before the silence and the
	// first one after it (Before and After).
	Gap           time.Duration
	Before, After Reply
	// Lost counts the datagrams sent in the silence that got no answer.
	Lost int
}

func (o Outage) String() string {
	return fmt.Sprintf("%v (last answer #%d from %s at %s, next #%d from %s at %s, %d lost)",
		o.Gap.Round(time.Millisecond), o.Before.Seq, o.Before.From, o.Before.Recv.Format("15:04:05.000"),
		o.After.Seq, o.After.From, o.After.Recv.Format("15:04:05.000"), o.Lost)
}

// Outage returns the longest gap between two consecutive answers that
// ends after since (the event), considering answers received up to until
// (zero: all). It fails if no answer came after since, or none before it.
func (p *Prober) Outage(since, until time.Time) (Outage, error) {
	rs := p.Replies()
	var o Outage
	found := false
	for k := 1; k < len(rs); k++ {
		a, b := rs[k-1], rs[k]
		if !b.Recv.After(since) || (!until.IsZero() && b.Recv.After(until)) {
			continue
		}
		if g := b.Recv.Sub(a.Recv); !found || g > o.Gap {
			o = Outage{Gap: g, Before: a, After: b}
			found = true
		}
	}
	if !found {
		return o, fmt.Errorf("probe: prober of %v: no answer before and after %s (%d answers, %d sent)",
			p.Target, since.Format("15:04:05.000"), len(rs), p.Sent())
	}
	o.Lost = int(o.After.Seq) - int(o.Before.Seq) - 1
	return o, nil
}
