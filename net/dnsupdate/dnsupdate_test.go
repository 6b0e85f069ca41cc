package dnsupdate

import (
	"errors"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func response(rcode int, tsigErr uint16, signed bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetUpdate("example.test.")
	m.Response = true
	m.Rcode = rcode
	if signed {
		m.SetTsig("k.", dns.HmacSHA256, 300, 0)
		m.Extra[0].(*dns.TSIG).Error = tsigErr
	}
	return m
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		r      *dns.Msg
		err    error
		want   error // nil: rcode returned
		inText string
	}{
		{"success", response(dns.RcodeSuccess, 0, true), nil, nil, ""},
		{"prerequisite", response(dns.RcodeYXDomain, 0, true), nil, nil, ""},
		{"bad signature", response(dns.RcodeNotAuth, dns.RcodeBadSig, true), dns.ErrAuth, ErrTSIG, "NOTAUTH, TSIG error BADSIG"},
		{"unknown key", response(dns.RcodeNotAuth, dns.RcodeBadKey, true), dns.ErrAuth, ErrTSIG, "BADKEY"},
		{"response does not verify", response(dns.RcodeSuccess, 0, true), dns.ErrSig, ErrTSIG, "did not verify"},
		{"unsigned success", response(dns.RcodeSuccess, 0, false), nil, ErrTSIG, "not signed"},
		{"refused", response(dns.RcodeRefused, 0, true), nil, nil, ""},
		{"no response", nil, errors.New("i/o timeout"), ErrRefused, "no response"},
	} {
		_, err := classify("register", "vs1.example.test.", "10.77.0.53:53", tc.r, tc.err)
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.inText) || !strings.Contains(err.Error(), "10.77.0.53:53") {
			t.Errorf("%s: %v, want %v saying %q", tc.name, err, tc.want, tc.inText)
		}
	}
}

func TestOwnerOf(t *testing.T) {
	m := new(dns.Msg)
	m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: "vs1.example.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{"wolfpack-owner=", "c1/g1"}}}
	if got := ownerOf(m); got != "c1/g1" {
		t.Errorf("ownerOf: %q", got)
	}
}

func FuzzClassify(f *testing.F) {
	for _, r := range []*dns.Msg{response(dns.RcodeSuccess, 0, true), response(dns.RcodeNotAuth, dns.RcodeBadSig, true), response(dns.RcodeNXRrset, 0, false)} {
		b, err := r.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			return
		}
		for _, verr := range []error{nil, dns.ErrAuth, dns.ErrSig} {
			if _, err := classify("register", "vs1.example.test.", "s:53", m, verr); err != nil && err.Error() == "" {
				t.Fatal("empty error")
			}
		}
		ownerOf(m)
	})
}

func TestNew(t *testing.T) {
	good := Config{Server: "10.77.0.53:53", Zone: "example.test", Name: "vs1", Owner: "c1/vs1", Key: Key{Name: "k", Secret: "c2VjcmV0"}}
	u, err := New(good)
	if err != nil || u.Name() != "vs1.example.test." {
		t.Fatalf("New: %v %v", u, err)
	}
	abs := good
	abs.Name = "VS1.Example.Test."
	if u, err := New(abs); err != nil || u.Name() != "vs1.example.test." {
		t.Errorf("absolute name: %v %v", u, err)
	}
	for name, mod := range map[string]func(*Config){
		"no server":        func(c *Config) { c.Server = "" },
		"no owner":         func(c *Config) { c.Owner = "" },
		"no key":           func(c *Config) { c.Key = Key{} },
		"name not in zone": func(c *Config) { c.Name = "vs1.other.test." },
	} {
		c := good
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
