package dnsupdate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Key is a TSIG key.
type Key struct {
	// Name is the key's name as the server knows it.
	Name string
	// Algorithm is a TSIG algorithm name (default hmac-sha256).
	Algorithm string
	// Secret is the base64 secret.
	Secret string
}

// Config describes one name in one zone.
type Config struct {
	// Server is the primary server's host:port.
	Server string
	// Zone is the zone to update, e.g. "example.com".
	Zone string
	// Name is the network name, relative to Zone ("vs1") or absolute.
	Name string
	// Owner names the virtual server in the ownership record.
	Owner string
	// TTL of the records (default 60 s: a client that cached the old
	// answer asks again within a minute; shorter TTLs mostly add load).
	TTL time.Duration
	Key Key
	// Net is "udp" (default) or "tcp".
	Net string
	// Timeout per exchange (default 5 s).
	Timeout time.Duration
	// Logger (nil: discard).
	Logger *slog.Logger
}

// DefaultTTL is the records' TTL unless Config.TTL says otherwise.
const DefaultTTL = 60 * time.Second

// ownerPrefix starts the ownership TXT record's text.
const ownerPrefix = "wolfpack-owner="

var (
	// ErrNotOwner: the name is registered by another owner (or by hand).
	ErrNotOwner = errors.New("dnsupdate: name owned by someone else")
	// ErrTSIG: the server did not accept our signature (wrong key name,
	// secret or algorithm, or clocks too far apart), or its answer did not
	// verify with our key.
	ErrTSIG = errors.New("dnsupdate: TSIG authentication failed")
	// ErrRefused: the server refused the update (REFUSED, NOTZONE, ...).
	ErrRefused = errors.New("dnsupdate: update refused")
)

// Error is a failed update: what was done, where, and what the server said.
type Error struct {
	Op     string // "register", "deregister"
	Name   string
	Server string
	// Rcode is the server's response code (-1: no response).
	Rcode int
	// TSIGError is the TSIG error the server reported (0: none).
	TSIGError uint16
	// Owner is the owner record found when the name is someone else's.
	Owner string
	// Kind is ErrNotOwner, ErrTSIG or ErrRefused; Err the cause if any.
	Kind error
	Err  error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("dnsupdate: %s %s at %s: ", e.Op, e.Name, e.Server)
	said := ""
	if e.Rcode >= 0 {
		said = dns.RcodeToString[e.Rcode]
		if said == "" {
			said = fmt.Sprintf("RCODE %d", e.Rcode)
		}
		if e.TSIGError != 0 {
			t := dns.RcodeToString[int(e.TSIGError)]
			if t == "" {
				t = fmt.Sprint(e.TSIGError)
			}
			said += ", TSIG error " + t
		}
	}
	switch {
	case errors.Is(e.Kind, ErrTSIG):
		s += "the server did not accept our TSIG signature"
		if said != "" {
			s += " (" + said + ")"
		}
		s += ": check the key name, secret and algorithm, and the clocks"
	case errors.Is(e.Kind, ErrNotOwner):
		if e.Owner != "" {
			s += fmt.Sprintf("the name belongs to %q, not to us", e.Owner)
		} else {
			s += "the name is in use without our ownership record"
		}
		s += " (prerequisite failed: " + said + "); nothing was changed"
	default:
		s += "the server refused the update"
		if said != "" {
			s += " (" + said + ")"
		}
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Is(target error) bool { return target == e.Kind }
func (e *Error) Unwrap() error        { return e.Err }

// Updater registers and deregisters one name.
type Updater struct {
	cfg   Config
	name  string // FQDN
	zone  string // FQDN
	owner string // TXT text
	log   *slog.Logger
}

// New checks cfg and fills in the defaults.
func New(cfg Config) (*Updater, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Net == "" {
		cfg.Net = "udp"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Key.Algorithm == "" {
		cfg.Key.Algorithm = dns.HmacSHA256
	}
	cfg.Key.Name = dns.CanonicalName(cfg.Key.Name)
	cfg.Key.Algorithm = dns.CanonicalName(cfg.Key.Algorithm)
	zone := dns.CanonicalName(cfg.Zone)
	name := dns.CanonicalName(cfg.Name)
	if !strings.HasSuffix(cfg.Name, ".") {
		name = dns.CanonicalName(cfg.Name + "." + zone)
	}
	switch {
	case cfg.Server == "" || cfg.Zone == "" || cfg.Name == "" || cfg.Owner == "":
		return nil, errors.New("dnsupdate: server, zone, name and owner are required")
	case cfg.Key.Name == "." || cfg.Key.Secret == "":
		return nil, errors.New("dnsupdate: a TSIG key name and secret are required")
	case !dns.IsSubDomain(zone, name):
		return nil, fmt.Errorf("dnsupdate: %s is not in zone %s", name, zone)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Updater{cfg: cfg, name: name, zone: zone, owner: ownerPrefix + cfg.Owner, log: log.With("name", name, "server", cfg.Server)}, nil
}

// Name is the FQDN updated.
func (u *Updater) Name() string { return u.name }

func (u *Updater) ownerTXT(ttl uint32) *dns.TXT {
	return &dns.TXT{Hdr: dns.RR_Header{Name: u.name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl}, Txt: []string{u.owner}}
}

func (u *Updater) addrRRs(addrs []netip.Addr) []dns.RR {
	ttl := uint32(u.cfg.TTL / time.Second)
	var rrs []dns.RR
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			rrs = append(rrs, &dns.A{Hdr: dns.RR_Header{Name: u.name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: a.AsSlice()})
		} else {
			rrs = append(rrs, &dns.AAAA{Hdr: dns.RR_Header{Name: u.name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: a.AsSlice()})
		}
	}
	return rrs
}

func rrset(name string, typ uint16) dns.RR {
	return &dns.ANY{Hdr: dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassANY}}
}

// Register makes addrs the name's A and AAAA records (see the package
// documentation for the prerequisites). It dials from the calling
// thread's network namespace.
func (u *Updater) Register(ctx context.Context, addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return fmt.Errorf("dnsupdate: register %s: no addresses", u.name)
	}
	start := time.Now()
	ttl := uint32(u.cfg.TTL / time.Second)
	// First registration: the name must not exist.
	m := new(dns.Msg)
	m.SetUpdate(u.zone)
	m.NameNotUsed([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: u.name}}})
	m.Insert(append([]dns.RR{u.ownerTXT(ttl)}, u.addrRRs(addrs)...))
	rcode, err := u.exchange(ctx, "register", m)
	if err != nil {
		return err
	}
	if rcode == dns.RcodeSuccess {
		u.log.Info("dns: registered", "addrs", fmt.Sprint(addrs), "how", "new name", "took", time.Since(start))
		return nil
	}
	if rcode != dns.RcodeYXDomain {
		return &Error{Op: "register", Name: u.name, Server: u.cfg.Server, Rcode: rcode, Kind: ErrRefused}
	}
	// The name exists: replace the addresses if it is ours.
	m = new(dns.Msg)
	m.SetUpdate(u.zone)
	m.Used([]dns.RR{u.ownerTXT(0)})
	m.RemoveRRset([]dns.RR{rrset(u.name, dns.TypeA), rrset(u.name, dns.TypeAAAA)})
	m.Insert(u.addrRRs(addrs))
	if rcode, err = u.exchange(ctx, "register", m); err != nil {
		return err
	}
	switch rcode {
	case dns.RcodeSuccess:
		u.log.Info("dns: registered", "addrs", fmt.Sprint(addrs), "how", "replaced ours", "took", time.Since(start))
		return nil
	case dns.RcodeNXRrset:
		return &Error{Op: "register", Name: u.name, Server: u.cfg.Server, Rcode: rcode, Kind: ErrNotOwner, Owner: u.currentOwner(ctx)}
	}
	return &Error{Op: "register", Name: u.name, Server: u.cfg.Server, Rcode: rcode, Kind: ErrRefused}
}

// Deregister removes the name's A, AAAA and ownership records if they are
// ours; a name already gone is not an error.
func (u *Updater) Deregister(ctx context.Context) error {
	m := new(dns.Msg)
	m.SetUpdate(u.zone)
	m.Used([]dns.RR{u.ownerTXT(0)})
	m.RemoveRRset([]dns.RR{rrset(u.name, dns.TypeA), rrset(u.name, dns.TypeAAAA), rrset(u.name, dns.TypeTXT)})
	rcode, err := u.exchange(ctx, "deregister", m)
	if err != nil {
		return err
	}
	switch rcode {
	case dns.RcodeSuccess:
		u.log.Info("dns: deregistered")
		return nil
	case dns.RcodeNXRrset:
		owner := u.currentOwner(ctx)
		if owner == "" {
			u.log.Info("dns: nothing to deregister: no ownership record")
			return nil
		}
		return &Error{Op: "deregister", Name: u.name, Server: u.cfg.Server, Rcode: rcode, Kind: ErrNotOwner, Owner: owner}
	}
	return &Error{Op: "deregister", Name: u.name, Server: u.cfg.Server, Rcode: rcode, Kind: ErrRefused}
}

// exchange signs m, sends it and returns the response's rcode; a TSIG
// failure or no response is an *Error.
func (u *Updater) exchange(ctx context.Context, op string, m *dns.Msg) (int, error) {
	m.SetTsig(u.cfg.Key.Name, u.cfg.Key.Algorithm, 300, time.Now().Unix())
	c := &dns.Client{Net: u.cfg.Net, Timeout: u.cfg.Timeout, TsigSecret: map[string]string{u.cfg.Key.Name: u.cfg.Key.Secret}}
	r, _, err := c.ExchangeContext(ctx, m, u.cfg.Server)
	return classify(op, u.name, u.cfg.Server, r, err)
}

// classify turns a response (and the client's verification error) into an
// rcode, or an *Error when the exchange itself failed.
func classify(op, name, server string, r *dns.Msg, err error) (int, error) {
	if r == nil || !r.Response {
		return -1, &Error{Op: op, Name: name, Server: server, Rcode: -1, Kind: ErrRefused, Err: fmt.Errorf("no response: %w", err)}
	}
	var tsigErr uint16
	if t := r.IsTsig(); t != nil {
		tsigErr = t.Error
	}
	if r.Rcode == dns.RcodeNotAuth || tsigErr != 0 || errors.Is(err, dns.ErrAuth) || errors.Is(err, dns.ErrSig) || errors.Is(err, dns.ErrTime) {
		e := &Error{Op: op, Name: name, Server: server, Rcode: r.Rcode, TSIGError: tsigErr, Kind: ErrTSIG}
		if r.Rcode != dns.RcodeNotAuth && tsigErr == 0 {
			e.Err = fmt.Errorf("the response did not verify: %w", err)
		}
		return r.Rcode, e
	}
	if err != nil {
		return r.Rcode, &Error{Op: op, Name: name, Server: server, Rcode: r.Rcode, Kind: ErrRefused, Err: err}
	}
	if r.IsTsig() == nil {
		// A server that takes signed updates signs its answers (RFC 8945
		// §5.3); an unsigned success could be forged.
		return r.Rcode, &Error{Op: op, Name: name, Server: server, Rcode: r.Rcode, Kind: ErrTSIG, Err: errors.New("the response is not signed")}
	}
	return r.Rcode, nil
}

// currentOwner reads the name's TXT records and returns the ownership
// text found ("" if none or on error), for error messages.
func (u *Updater) currentOwner(ctx context.Context) string {
	m := new(dns.Msg)
	m.SetQuestion(u.name, dns.TypeTXT)
	c := &dns.Client{Net: u.cfg.Net, Timeout: u.cfg.Timeout}
	r, _, err := c.ExchangeContext(ctx, m, u.cfg.Server)
	if err != nil || r == nil {
		return ""
	}
	return ownerOf(r)
}

// ownerOf returns the ownership text in a TXT answer, or any TXT text if
// there is no ownership record (a name registered by hand).
func ownerOf(r *dns.Msg) string {
	var any string
	for _, rr := range r.Answer {
		t, ok := rr.(*dns.TXT)
		if !ok {
			continue
		}
		s := strings.Join(t.Txt, "")
		if o, ok := strings.CutPrefix(s, ownerPrefix); ok {
			return o
		}
		any = s
	}
	if any != "" {
		return "TXT " + any
	}
	return ""
}
