package mdns

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Port is Multicast DNS's UDP port (RFC 6762 §3).
const Port = 5353

// Group4 and Group6 are its groups.
var (
	Group4 = netip.MustParseAddr("224.0.0.251")
	Group6 = netip.MustParseAddr("ff02::fb")
)

const (
	cacheFlush = 1 << 15 // rrclass top bit in responses (§10.2)
	unicastQ   = 1 << 15 // qclass top bit in questions: QU (§5.4)
	// legacyTTL caps the TTL in answers to legacy unicast queries (§6.7).
	legacyTTL = 10
)

// FQDN is the name as the responder answers it: "vs1" → "vs1.local.".
func FQDN(name string) string {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if !strings.HasSuffix(n, ".local") {
		n += ".local"
	}
	return n + "."
}

// zone is the records of one name: the pure part of the responder.
type zone struct {
	name  string // FQDN, lower case, e.g. "vs1.local."
	addrs []netip.Addr
	ttl   uint32
}

// records are the name's A and AAAA records of qtype (ANY: all).
func (z *zone) records(qtype uint16, ttl uint32, flush bool) []dns.RR {
	class := uint16(dns.ClassINET)
	if flush {
		class |= cacheFlush
	}
	var rrs []dns.RR
	for _, a := range z.addrs {
		switch {
		case a.Is4() && (qtype == dns.TypeA || qtype == dns.TypeANY):
			rrs = append(rrs, &dns.A{Hdr: dns.RR_Header{Name: z.name, Rrtype: dns.TypeA, Class: class, Ttl: ttl}, A: a.AsSlice()})
		case a.Is6() && (qtype == dns.TypeAAAA || qtype == dns.TypeANY):
			rrs = append(rrs, &dns.AAAA{Hdr: dns.RR_Header{Name: z.name, Rrtype: dns.TypeAAAA, Class: class, Ttl: ttl}, AAAA: a.AsSlice()})
		}
	}
	return rrs
}

// announcement is an unsolicited response with every record, cache-flush
// bit set; with ttl 0 it is a goodbye.
func (z *zone) announcement(ttl uint32) *dns.Msg {
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}}
	m.Answer = z.records(dns.TypeANY, ttl, true)
	return m
}

// probe is a probe query (§8.1): the name, type ANY, the QU bit on the
// first, our proposed records in the authority section.
func (z *zone) probe(first bool) *dns.Msg {
	class := uint16(dns.ClassINET)
	if first {
		class |= unicastQ
	}
	m := &dns.Msg{Question: []dns.Question{{Name: z.name, Qtype: dns.TypeANY, Qclass: class}}}
	m.Ns = z.records(dns.TypeANY, z.ttl, false)
	return m
}

func (z *zone) owns(name string) bool { return strings.EqualFold(name, z.name) }

// respond decides the reply to a packet received from src: the message, and
// whether it goes by unicast to src (else to the group). ok is false when
// nothing is to be sent.
func (z *zone) respond(pkt []byte, src netip.AddrPort) (reply *dns.Msg, unicast bool, ok bool) {
	var q dns.Msg
	if err := q.Unpack(pkt); err != nil {
		return nil, false, false
	}
	// Responses are not answered; queries with another opcode or a
	// non-zero rcode are ignored (§18.3, §18.11).
	if q.Response || q.Opcode != dns.OpcodeQuery || q.Rcode != dns.RcodeSuccess {
		return nil, false, false
	}
	legacy := src.Port() != Port
	ttl := z.ttl
	if legacy && ttl > legacyTTL {
		ttl = legacyTTL
	}
	var answers []dns.RR
	qu := false
	for _, qq := range q.Question {
		class := qq.Qclass &^ unicastQ
		if !z.owns(qq.Name) || (class != dns.ClassINET && class != dns.ClassANY) {
			continue
		}
		qu = qu || qq.Qclass&unicastQ != 0
		for _, rr := range z.records(qq.Qtype, ttl, !legacy) {
			if !slices.ContainsFunc(answers, func(x dns.RR) bool { return dns.IsDuplicate(x, rr) }) && !knownAnswer(q.Answer, rr) {
				answers = append(answers, rr)
			}
		}
	}
	if len(answers) == 0 {
		return nil, false, false
	}
	r := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}, Answer: answers}
	if legacy {
		// §6.7: the query's ID and question, sent back by unicast.
		r.Id = q.Id
		r.Question = q.Question
		return r, true, true
	}
	return r, qu, true
}

// knownAnswer says whether the querier listed rr with at least half its TTL
// (known-answer suppression, §7.1).
func knownAnswer(known []dns.RR, rr dns.RR) bool {
	for _, k := range known {
		kh := *k.Header()
		kh.Class &^= cacheFlush
		c := dns.Copy(k)
		*c.Header() = kh
		r := dns.Copy(rr)
		r.Header().Class &^= cacheFlush
		if dns.IsDuplicate(c, r) && k.Header().Ttl >= rr.Header().Ttl/2 {
			return true
		}
	}
	return false
}

// conflict says whether a packet received while probing shows another
// host holding the name with other data (§8.1, §9): a response with a
// record of our name that is not one of ours. It returns that record.
func (z *zone) conflict(pkt []byte) (dns.RR, bool) {
	var m dns.Msg
	if err := m.Unpack(pkt); err != nil || !m.Response {
		return nil, false
	}
	for _, rr := range append(m.Answer, m.Extra...) {
		h := rr.Header()
		if !z.owns(h.Name) || (h.Rrtype != dns.TypeA && h.Rrtype != dns.TypeAAAA) {
			continue
		}
		var ip netip.Addr
		switch r := rr.(type) {
		case *dns.A:
			ip, _ = netip.AddrFromSlice(r.A)
		case *dns.AAAA:
			ip, _ = netip.AddrFromSlice(r.AAAA)
		}
		if !slices.Contains(z.addrs, ip.Unmap()) {
			rr = dns.Copy(rr)
			rr.Header().Class &^= cacheFlush // shown as IN, not CLASS32769
			return rr, true
		}
	}
	return nil, false
}
