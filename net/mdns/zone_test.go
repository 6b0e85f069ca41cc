package mdns

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

var testZone = zone{name: "vs1.local.", addrs: []netip.Addr{netip.MustParseAddr("10.77.0.50"), netip.MustParseAddr("fd77::50")}, ttl: 120}

func pack(t testing.TB, m *dns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func query(name string, qtype, qclass uint16) *dns.Msg {
	m := new(dns.Msg)
	m.Id = 0x1234
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: qclass}}
	return m
}

var (
	fromResponder = netip.MustParseAddrPort("10.77.0.100:5353")
	fromDig       = netip.MustParseAddrPort("10.77.0.100:40000")
)

// Reference: RFC 6762 §6, §6.7, §10.2.
func TestRespond(t *testing.T) {
	// A multicast query from another responder: multicast answer, no ID,
	// cache-flush bit, full TTL.
	r, unicast, ok := testZone.respond(pack(t, query("VS1.local.", dns.TypeA, dns.ClassINET)), fromResponder)
	if !ok || unicast || r.Id != 0 || len(r.Question) != 0 || len(r.Answer) != 1 {
		t.Fatalf("multicast query: %v unicast=%v ok=%v", r, unicast, ok)
	}
	if h := r.Answer[0].Header(); h.Class != dns.ClassINET|cacheFlush || h.Ttl != 120 || r.Answer[0].(*dns.A).A.String() != "10.77.0.50" {
		t.Errorf("multicast answer %v", r.Answer[0])
	}
	// QU bit: unicast.
	if _, unicast, ok := testZone.respond(pack(t, query("vs1.local.", dns.TypeAAAA, dns.ClassINET|unicastQ)), fromResponder); !ok || !unicast {
		t.Errorf("QU query: unicast=%v ok=%v", unicast, ok)
	}
	// Legacy unicast (dig): ID and question echoed, TTL at most 10, no
	// cache-flush bit, unicast.
	r, unicast, ok = testZone.respond(pack(t, query("vs1.local.", dns.TypeAAAA, dns.ClassINET)), fromDig)
	if !ok || !unicast || r.Id != 0x1234 || len(r.Question) != 1 || len(r.Answer) != 1 {
		t.Fatalf("legacy query: %v unicast=%v ok=%v", r, unicast, ok)
	}
	if h := r.Answer[0].Header(); h.Class != dns.ClassINET || h.Ttl != legacyTTL || r.Answer[0].(*dns.AAAA).AAAA.String() != "fd77::50" {
		t.Errorf("legacy answer %v", r.Answer[0])
	}
	// ANY: both.
	if r, _, ok := testZone.respond(pack(t, query("vs1.local.", dns.TypeANY, dns.ClassINET)), fromResponder); !ok || len(r.Answer) != 2 {
		t.Errorf("ANY: %v", r)
	}
	// Not ours, or a response: nothing.
	if _, _, ok := testZone.respond(pack(t, query("vs2.local.", dns.TypeA, dns.ClassINET)), fromResponder); ok {
		t.Errorf("answered for another name")
	}
	if _, _, ok := testZone.respond(pack(t, testZone.announcement(120)), fromResponder); ok {
		t.Errorf("answered a response")
	}
	// §7.1: the querier already knows the answer with more than half its TTL.
	q := query("vs1.local.", dns.TypeA, dns.ClassINET)
	q.Answer = testZone.records(dns.TypeA, 100, false)
	if _, _, ok := testZone.respond(pack(t, q), fromResponder); ok {
		t.Errorf("known answer not suppressed")
	}
	q.Answer = testZone.records(dns.TypeA, 30, false)
	if _, _, ok := testZone.respond(pack(t, q), fromResponder); !ok {
		t.Errorf("known answer below half the TTL suppressed the answer")
	}
}

// Reference: RFC 6762 §8.1, §9.
func TestConflict(t *testing.T) {
	if _, ok := testZone.conflict(pack(t, testZone.announcement(120))); ok {
		t.Errorf("our own records are a conflict")
	}
	other := zone{name: "vs1.local.", addrs: []netip.Addr{netip.MustParseAddr("10.77.0.99")}, ttl: 120}
	rr, ok := testZone.conflict(pack(t, other.announcement(120)))
	if !ok || rr.(*dns.A).A.String() != "10.77.0.99" {
		t.Errorf("another host's record: %v %v", rr, ok)
	}
	if _, ok := testZone.conflict(pack(t, other.probe(true))); ok {
		t.Errorf("a probe (a query) counted as a conflict")
	}
}

func TestFQDN(t *testing.T) {
	for in, want := range map[string]string{"vs1": "vs1.local.", "VS1.local": "vs1.local.", "vs1.local.": "vs1.local."} {
		if got := FQDN(in); got != want {
			t.Errorf("FQDN(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRespond(f *testing.F) {
	f.Add(pack(f, query("vs1.local.", dns.TypeA, dns.ClassINET)))
	f.Add(pack(f, query("vs1.local.", dns.TypeANY, dns.ClassINET|unicastQ)))
	f.Add(pack(f, testZone.probe(true)))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, src := range []netip.AddrPort{fromResponder, fromDig} {
			r, _, ok := testZone.respond(b, src)
			if !ok {
				continue
			}
			if _, err := r.Pack(); err != nil {
				t.Fatalf("reply does not pack: %v", err)
			}
		}
	})
}

func FuzzConflict(f *testing.F) {
	f.Add(pack(f, testZone.announcement(120)))
	f.Add(pack(f, testZone.announcement(0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if rr, ok := testZone.conflict(b); ok && rr == nil {
			t.Fatalf("conflict without a record")
		}
	})
}
