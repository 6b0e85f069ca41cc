package netname

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/wolfpack-ha/wolfpack/net/dnsupdate"
	"github.com/wolfpack-ha/wolfpack/net/mdns"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// TypeName is the type's name in the database.
const TypeName = "network_name"

// DefaultTTL is ttl_s's default.
const DefaultTTL = 120 * time.Second

// Type is the network_name type. mDNS sockets are opened in the network
// namespace of the thread that calls Online; DNS updates dial per call.
type Type struct{}

// Name is "network_name".
func (Type) Name() string { return TypeName }

var label = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// Open checks the name, the addresses and the mode's properties; dns mode
// reads the TSIG key file.
func (Type) Open(name string, props resources.Props, log *slog.Logger) (resources.Instance, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bad := func(prop, format string, args ...any) error {
		return fmt.Errorf("%s %s: property %s: %s", TypeName, name, prop, fmt.Sprintf(format, args...))
	}
	i := &instance{name: name, log: log}
	i.host = strings.TrimSuffix(props.Str("name", ""), ".")
	if i.host == "" {
		return nil, bad("name", "required")
	}
	for _, l := range strings.Split(i.host, ".") {
		if !label.MatchString(l) {
			return nil, bad("name", "%q is not a host name (labels of letters, digits and '-')", i.host)
		}
	}
	for _, s := range props.List("addresses") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, bad("addresses", "%v", err)
		}
		i.addrs = append(i.addrs, a.Unmap())
	}
	if len(i.addrs) == 0 {
		return nil, bad("addresses", "none: name them, or make the resource depend on an ip_address")
	}
	ttl := props.Int("ttl_s", int64(DefaultTTL/time.Second))
	if ttl < 1 || ttl > 86400 {
		return nil, bad("ttl_s", "%d is out of 1..86400", ttl)
	}
	i.ttl = time.Duration(ttl) * time.Second
	i.mode = props.Str("mode", "mdns")
	switch i.mode {
	case "mdns":
		i.ifname = props.Str("interface", "")
		if i.ifname == "" {
			return nil, bad("interface", "required in mdns mode")
		}
		if _, err := net.InterfaceByName(i.ifname); err != nil {
			return nil, bad("interface", "%v", err)
		}
	case "dns":
		for _, p := range []string{"dns_server", "dns_zone", "tsig_key_file"} {
			if props.Str(p, "") == "" {
				return nil, bad(p, "required in dns mode")
			}
		}
		server := props.Str("dns_server", "")
		if _, _, err := net.SplitHostPort(server); err != nil {
			server = net.JoinHostPort(server, "53")
		}
		key, err := ReadKeyFile(props.Str("tsig_key_file", ""))
		if err != nil {
			return nil, bad("tsig_key_file", "%v", err)
		}
		owner := props.Str("group", name)
		u, err := dnsupdate.New(dnsupdate.Config{Server: server, Zone: props.Str("dns_zone", ""), Name: i.host, Owner: owner, TTL: i.ttl, Key: key, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", TypeName, name, err)
		}
		i.updater = u
	default:
		return nil, bad("mode", "%q: want mdns or dns", i.mode)
	}
	return i, nil
}

var (
	keyName   = regexp.MustCompile(`key\s+"?([^"\s{]+)"?\s*\{`)
	keyAlg    = regexp.MustCompile(`algorithm\s+"?([A-Za-z0-9.-]+)"?\s*;`)
	keySecret = regexp.MustCompile(`secret\s+"([^"]+)"\s*;`)
)

// ReadKeyFile reads a TSIG key in BIND's key file form, as tsig-keygen and
// keymgr write it:
//
//	key "name" { algorithm hmac-sha256; secret "base64"; };
func ReadKeyFile(path string) (dnsupdate.Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return dnsupdate.Key{}, err
	}
	s := string(b)
	n, sec := keyName.FindStringSubmatch(s), keySecret.FindStringSubmatch(s)
	if n == nil || sec == nil {
		return dnsupdate.Key{}, fmt.Errorf("%s: want key \"name\" { algorithm ...; secret \"...\"; };", path)
	}
	k := dnsupdate.Key{Name: n[1], Secret: sec[1]}
	if a := keyAlg.FindStringSubmatch(s); a != nil {
		k.Algorithm = a[1]
	}
	return k, nil
}

type instance struct {
	name, host, mode, ifname string
	addrs                    []netip.Addr
	ttl                      time.Duration
	updater                  *dnsupdate.Updater
	log                      *slog.Logger

	mu         sync.Mutex
	epoch      uint64
	resp       *mdns.Responder
	registered bool
}

// Online starts the responder (probe and first announcement) or registers
// the name.
func (i *instance) Online(ctx context.Context) error {
	i.mu.Lock()
	if i.resp != nil || i.registered {
		i.mu.Unlock()
		return nil
	}
	ep := i.epoch
	i.mu.Unlock()
	if i.mode == "dns" {
		if err := i.updater.Register(ctx, i.addrs); err != nil {
			return err
		}
		i.mu.Lock()
		i.registered = true
		i.mu.Unlock()
		return nil
	}
	r, err := mdns.Start(ctx, mdns.Config{Name: i.host, Interface: i.ifname, Addrs: i.addrs, TTL: i.ttl, Logger: i.log})
	if err != nil {
		return err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.epoch != ep {
		r.Abort()
		return errors.New("terminated while coming online")
	}
	i.resp = r
	return nil
}

// Offline sends the mDNS goodbyes (RFC 6762 §10.1) or removes the name
// from the zone.
func (i *instance) Offline(ctx context.Context) error {
	i.mu.Lock()
	i.epoch++
	r, reg := i.resp, i.registered
	i.resp, i.registered = nil, false
	i.mu.Unlock()
	if r != nil {
		return r.Close()
	}
	if reg {
		return i.updater.Deregister(ctx)
	}
	return nil
}

// Terminate stops answering at once, without goodbyes (another node may
// already answer with the same records). A DNS registration stays: the
// next owner replaces it, and no network exchange may hold a terminate up.
func (i *instance) Terminate() {
	i.mu.Lock()
	i.epoch++
	r := i.resp
	i.resp, i.registered = nil, false
	i.mu.Unlock()
	if r != nil {
		r.Abort()
	}
}

// LooksAlive: the responder runs, or the name was registered.
func (i *instance) LooksAlive() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.resp == nil && !i.registered {
		return errors.New("not online")
	}
	return nil
}

// IsAlive is LooksAlive.
func (i *instance) IsAlive(context.Context) error { return i.LooksAlive() }

// Close stops a responder still running.
func (i *instance) Close() { i.Terminate() }
