package mdns_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/vishvananda/netlink"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/wolfpack-ha/wolfpack/internal/nstest"
	"github.com/wolfpack-ha/wolfpack/net/mdns"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var (
	vip4 = netip.MustParseAddr("10.77.0.50")
	vip6 = netip.MustParseAddr("fd77::50")
)

// testCtx is the running test's context, for start.
var testCtx context.Context

type packet struct {
	msg *dns.Msg
	at  time.Time
}

type mdnsSegment struct {
	rig      *nstest.Rig
	a, b, cl *nstest.NS
	cl6      *nstest.NS  // an IPv6-only client, made by startAvahi
	heard    chan packet // every mDNS packet the client's listener hears
}

func newMDNSSegment(t *testing.T) *mdnsSegment {
	nstest.RequireCommand(t, "dig", "bind9-dnsutils")
	rig := nstest.New(t)
	s := &mdnsSegment{
		rig:   rig,
		a:     rig.Node("a", "10.77.0.1/24", "fd77::1/64"),
		b:     rig.Node("b", "10.77.0.2/24", "fd77::2/64"),
		cl:    rig.Node("cl", "10.77.0.100/24"),
		heard: make(chan packet, 256),
	}
	// A resolver sends to 224.0.0.251 by the routing table.
	if err := nstest.IPBatch(s.cl.Name, "route add 224.0.0.0/4 dev eth0"); err != nil {
		t.Fatal(err)
	}
	var c *net.UDPConn
	if err := s.cl.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err = net.ListenMulticastUDP("udp4", ifi, &net.UDPAddr{IP: mdns.Group4.AsSlice(), Port: mdns.Port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 9000)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			m := new(dns.Msg)
			if m.Unpack(buf[:n]) == nil {
				select {
				case s.heard <- packet{m, time.Now()}:
				default:
				}
			}
		}
	}()
	return s
}

// next waits for a heard packet satisfying pred.
func (s *mdnsSegment) next(t *testing.T, what string, timeout time.Duration, pred func(*dns.Msg) bool) packet {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case p := <-s.heard:
			if pred(p.msg) {
				return p
			}
		case <-deadline:
			t.Fatalf("client: no %s heard in %v", what, timeout)
		}
	}
}

// announcement says whether m is a response giving name's records with
// the cache-flush bit and TTL ttl (0: a goodbye).
func announcement(m *dns.Msg, name string, ttl uint32) bool {
	if !m.Response || len(m.Answer) == 0 {
		return false
	}
	for _, rr := range m.Answer {
		h := rr.Header()
		if h.Name != name || h.Class != dns.ClassINET|1<<15 || h.Ttl != ttl {
			return false
		}
	}
	return true
}

// avahiConf keeps avahi-daemon to resolving on eth0 over one family,
// nothing published (the namespace shares the host's name).
func avahiConf(ipv6 bool) string {
	return fmt.Sprintf(`[server]
use-ipv4=%s
use-ipv6=%s
allow-interfaces=eth0
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
disable-publishing=yes
disable-user-service-publishing=yes
[reflector]
enable-reflector=no
`, map[bool]string{true: "no", false: "yes"}[ipv6], map[bool]string{true: "yes", false: "no"}[ipv6])
}

// startAvahi runs a D-Bus system bus and avahi-daemon in the client
// namespace, inside a private mount namespace whose /run is a fresh tmpfs
// (their sockets and pid files never touch the host's /run); the rig kills
// them. It returns the pid to enter for avahi-resolve.
func (s *mdnsSegment) startAvahi(t *testing.T, ns *nstest.NS, ipv6 bool) int {
	nstest.RequireCommand(t, "avahi-daemon", "avahi-daemon")
	nstest.RequireCommand(t, "avahi-resolve", "avahi-utils")
	nstest.RequireCommand(t, "dbus-daemon", "dbus")
	conf := filepath.Join(t.TempDir(), "avahi-daemon.conf")
	if err := os.WriteFile(conf, []byte(avahiConf(ipv6)), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "avahi.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	script := `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus
dbus-daemon --system
exec avahi-daemon --no-chroot --no-rlimits -f "$1"`
	cmd, err := ns.Start(logf, logf, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("avahi-daemon's log:\n%s", b)
		}
	})
	return cmd.Process.Pid
}

// avahiResolve runs avahi-resolve for name in avahi's namespaces.
func (s *mdnsSegment) avahiResolve(t *testing.T, pid int, family, name string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(pid), "-m", "-n",
		"avahi-resolve", family, "-n", name).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// addrsOf lists the addresses of n's eth0.
func addrsOf(t *testing.T, n *nstest.NS) []netip.Addr {
	h := n.Handle()
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	as, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

func (s *mdnsSegment) dig(t *testing.T, server, name, qtype string, timeoutSec int) (string, error) {
	out, err := s.cl.Run(t.Context(), "dig", "-p", "5353", server, name, qtype,
		"+short", "+tries=1", "+time="+strconv.Itoa(timeoutSec))
	return strings.TrimSpace(string(out)), err
}

func start(n *nstest.NS, cfg mdns.Config) (*mdns.Responder, error) {
	var r *mdns.Responder
	err := n.Do(func() (err error) {
		r, err = mdns.Start(testCtx, cfg)
		return err
	})
	return r, err
}

// The name resolves from the client through dig; a second host probing
// for it is refused; after Close the goodbyes are heard and the name no
// longer answers.
func TestIntegrationMDNS(t *testing.T) {
	s := newMDNSSegment(t)
	testCtx = t.Context()
	avahi := s.startAvahi(t, s.cl, false)
	// The IPv6 transport: a client with IPv6 only, and avahi on IPv6 only.
	s.cl6 = s.rig.Node("cl6", "fd77::101/64")
	avahi6 := s.startAvahi(t, s.cl6, true)
	name := "vs1.local."
	r, err := start(s.a, mdns.Config{Name: "vs1", Interface: "eth0", Addrs: []netip.Addr{vip4, vip6}, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("start on a: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	first := s.next(t, "first announcement", 2*time.Second, func(m *dns.Msg) bool { return announcement(m, name, 120) })
	t.Logf("first announcement heard %v after it was sent", first.at.Sub(r.Announced()))

	// avahi resolves the name (A and AAAA) in each client namespace, over
	// IPv4 in cl and over IPv6 in cl6.
	for _, c := range []struct {
		ns   string
		pid  int
		want []struct{ family, addr string }
	}{
		{"cl (IPv4)", avahi, []struct{ family, addr string }{{"-4", vip4.String()}, {"-6", vip6.String()}}},
		{"cl6 (IPv6)", avahi6, []struct{ family, addr string }{{"-4", vip4.String()}, {"-6", vip6.String()}}},
	} {
		for _, want := range c.want {
			var got string
			err := nstest.WaitFor(t.Context(), 10*time.Second, func() (bool, error) {
				out, err := s.avahiResolve(t, c.pid, want.family, "vs1.local", 2*time.Second)
				got = out
				// "Daemon not running" until avahi-daemon is on the bus.
				return err == nil && strings.HasSuffix(out, want.addr), nil
			})
			if err != nil {
				t.Fatalf("%s: avahi-resolve %s -n vs1.local: last said %q: %v", c.ns, want.family, got, err)
			}
			t.Logf("%s: avahi-resolve %s -n vs1.local: %s", c.ns, want.family, got)
		}
	}
	// dig, straight to the responder's port 5353 (RFC 6762 §5.5; dig 9.18
	// takes no answer to a query sent to 224.0.0.251 from a unicast source).
	if got, err := s.dig(t, "@10.77.0.1", "vs1.local", "A", 2); err != nil || got != vip4.String() {
		t.Fatalf("dig A vs1.local: %q %v, want %s", got, err, vip4)
	}
	second := s.next(t, "second announcement", 3*time.Second, func(m *dns.Msg) bool { return announcement(m, name, 120) })
	t.Logf("second announcement %v after the first (RFC 6762 §8.3: one second)", second.at.Sub(first.at))

	// Another host wanting the name with another address: its probe is
	// answered by a, and it is refused naming a's address.
	_, err = start(s.b, mdns.Config{Name: "vs1", Interface: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("10.77.0.60")}, Logger: testLogger(t)})
	var ce *mdns.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, mdns.ErrConflict) || !slices.Contains(addrsOf(t, s.a), ce.From) {
		t.Fatalf("start on b: %v, want a conflict from one of a's addresses %v", err, addrsOf(t, s.a))
	}
	t.Logf("b refused: %v", err)

	closed := time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	bye := s.next(t, "goodbye", 2*time.Second, func(m *dns.Msg) bool { return announcement(m, name, 0) })
	t.Logf("goodbye heard %v after Close began", bye.at.Sub(closed))
	// avahi had the records cached for 120 s; the goodbye drops them
	// (after the one second RFC 6762 §10.1 allows) and nobody answers.
	for _, c := range []struct {
		ns  string
		pid int
	}{{"cl (IPv4)", avahi}, {"cl6 (IPv6)", avahi6}} {
		var last string
		err = nstest.WaitFor(t.Context(), 8*time.Second, func() (bool, error) {
			out, err := s.avahiResolve(t, c.pid, "-4", "vs1.local", 1500*time.Millisecond)
			last = out
			return err != nil && !strings.Contains(out, vip4.String()), nil
		})
		if err != nil {
			t.Fatalf("%s: avahi-resolve after offline still answers %q: %v", c.ns, last, err)
		}
		t.Logf("%s: avahi-resolve after offline: no answer (%v after Close began)", c.ns, time.Since(closed))
	}
	if out, err := s.dig(t, "@10.77.0.1", "vs1.local", "A", 1); err == nil || strings.Contains(out, vip4.String()) {
		t.Fatalf("dig after offline: %q %v, want no answer", out, err)
	}
}

// TestIntegrationBenchMDNS measures, for BENCHMARKS.md, over
// WOLFPACK_BENCH_NET runs: Start (probe and first announcement), the first
// announcement's trip to the client, and Start's return to a first answer
// to a client's query.
func TestIntegrationBenchMDNS(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WOLFPACK_BENCH_NET"))
	if n <= 0 {
		t.Skip("set WOLFPACK_BENCH_NET=N to run")
	}
	s := newMDNSSegment(t)
	testCtx = t.Context()
	var c *net.UDPConn
	if err := s.cl.Do(func() (err error) { c, err = net.ListenUDP("udp4", nil); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := new(dns.Msg)
	q.SetQuestion("vs1.local.", dns.TypeA)
	qb, _ := q.Pack()
	var startT, heard, answer []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		r, err := start(s.a, mdns.Config{Name: "vs1", Interface: "eth0", Addrs: []netip.Addr{vip4}})
		if err != nil {
			t.Fatal(err)
		}
		returned := time.Now()
		if _, err := c.WriteToUDPAddrPort(qb, netip.AddrPortFrom(mdns.Group4, mdns.Port)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			t.Fatalf("run %d: no answer: %v", i, err)
		}
		answer = append(answer, time.Since(returned))
		p := s.next(t, "announcement", 2*time.Second, func(m *dns.Msg) bool { return announcement(m, "vs1.local.", 120) })
		startT = append(startT, returned.Sub(t0))
		heard = append(heard, p.at.Sub(r.Announced()))
		r.Close()
		s.next(t, "goodbye", 2*time.Second, func(m *dns.Msg) bool { return announcement(m, "vs1.local.", 0) })
		for len(s.heard) > 0 {
			<-s.heard
		}
	}
	t.Logf("BENCH mdns n=%d: Start (3 probes + first announcement) median %v; announcement sent → heard by the client median %v (max %v); Start returned → answer to a query median %v (max %v)",
		n, median(startT), median(heard), slices.Max(heard), median(answer), slices.Max(answer))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
