package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// NameAnswer is one mDNS answer to a NameProber's query.
type NameAnswer struct {
	Query uint16 // the query's id (one per Interval)
	Sent  time.Time
	Recv  time.Time
	// From is the responder's source address; Addrs the A records for
	// the name in its answer.
	From  netip.Addr
	Addrs []netip.Addr
}

// NameProber asks for a name's A record every Interval as a one-shot
// mDNS querier (RFC 6762 section 5.1: a query to 224.0.0.251:5353 from an
// ephemeral port, answered by unicast) and records every answer.
type NameProber struct {
	Name     string
	Interval time.Duration

	udpLoop

	mu      sync.Mutex
	sent    map[uint16]time.Time
	queries int
	answers []NameAnswer
}

// StartName starts a NameProber of name (e.g. "web.local") from the
// namespace ns ("": the caller's), whose routing table must send
// 224.0.0.251 out of the interface that reaches the responders.
func StartName(ns, name string, interval time.Duration) (*NameProber, error) {
	p := &NameProber{Name: dns.Fqdn(name), Interval: interval, udpLoop: udpLoop{stop: make(chan struct{})}, sent: map[uint16]time.Time{}}
	listen := func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		p.conn = c
		return err
	}
	err := inNS(ns, listen)
	if err != nil {
		return nil, fmt.Errorf("probe: name prober of %s: %w", name, err)
	}
	p.wg.Add(2)
	go p.send()
	go p.recv()
	return p, nil
}

func (p *NameProber) send() {
	defer p.wg.Done()
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	group := &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
	var id uint16
	for {
		id++
		q := new(dns.Msg)
		q.SetQuestion(p.Name, dns.TypeA)
		q.Id = id
		if b, err := q.Pack(); err == nil {
			p.mu.Lock()
			p.sent[id] = time.Now()
			p.queries++
			p.mu.Unlock()
			p.conn.WriteTo(b, group) // a lost query is an outage, not an error
		}
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

func (p *NameProber) recv() {
	defer p.wg.Done()
	buf := make([]byte, 9000)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		now := time.Now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		var m dns.Msg
		if m.Unpack(buf[:n]) != nil || !m.Response {
			continue
		}
		a := NameAnswer{Query: m.Id, Recv: now, From: from.Addr().Unmap()}
		for _, rr := range m.Answer {
			if r, ok := rr.(*dns.A); ok && strings.EqualFold(r.Hdr.Name, p.Name) {
				if ip, ok := netip.AddrFromSlice(r.A.To4()); ok {
					a.Addrs = append(a.Addrs, ip)
				}
			}
		}
		if len(a.Addrs) == 0 {
			continue
		}
		p.mu.Lock()
		sent, ok := p.sent[m.Id]
		if ok {
			a.Sent = sent
			p.answers = append(p.answers, a)
		}
		p.mu.Unlock()
	}
}

// Answers returns every answer so far, in the order received, and the
// number of queries sent.
func (p *NameProber) Answers() ([]NameAnswer, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]NameAnswer(nil), p.answers...), p.queries
}

// Outage is the longest silence of a NameProber: the time between two
// consecutive answers (by arrival) that ends after since, considering the
// answers received up to until (zero: all).
func (p *NameProber) Outage(since, until time.Time) (gap time.Duration, before, after NameAnswer, err error) {
	as, q := p.Answers()
	found := false
	for k := 1; k < len(as); k++ {
		a, b := as[k-1], as[k]
		if !b.Recv.After(since) || !until.IsZero() && b.Recv.After(until) {
			continue
		}
		if g := b.Recv.Sub(a.Recv); !found || g > gap {
			gap, before, after, found = g, a, b, true
		}
	}
	if !found {
		return 0, before, after, fmt.Errorf("probe: name prober of %s: no answer before and after %s (%d answers, %d queries)",
			p.Name, since.Format("15:04:05.000"), len(as), q)
	}
	return gap, before, after, nil
}

// NameSplitBrain returns the queries answered by two responders and the
// answers whose records are not want.
func NameSplitBrain(as []NameAnswer, want netip.Addr) []string {
	var out []string
	by := map[uint16]netip.Addr{}
	for _, a := range as {
		if prev, ok := by[a.Query]; ok && prev != a.From {
			out = append(out, fmt.Sprintf("query %d answered by %s and by %s", a.Query, prev, a.From))
		}
		by[a.Query] = a.From
		if len(a.Addrs) != 1 || a.Addrs[0] != want {
			out = append(out, fmt.Sprintf("query %d answered by %s with %v, want %s", a.Query, a.From, a.Addrs, want))
		}
	}
	return out
}
