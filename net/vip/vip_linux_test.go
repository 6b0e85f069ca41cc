package vip_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/wolfpack-ha/wolfpack/internal/nstest"
	"github.com/wolfpack-ha/wolfpack/net/announce"
	"github.com/wolfpack-ha/wolfpack/net/vip"
)

const echoPort = 7777

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// segment is two nodes and a client on one bridge, each node running a UDP
// echo server that answers with its name and the request.
type segment struct {
	rig           *nstest.Rig
	a, b, client  *nstest.NS
	clientConn    *net.UDPConn
	clientNetlink *netlink.Handle
	vip4, vip6    netip.Addr
	seq           int // of the client's echo requests
}

func newSegment(t *testing.T) *segment {
	rig := nstest.New(t)
	s := &segment{
		rig:    rig,
		a:      rig.Node("a", "10.77.0.1/24", "fd77::1/64"),
		b:      rig.Node("b", "10.77.0.2/24", "fd77::2/64"),
		client: rig.Node("cl", "10.77.0.100/24", "fd77::100/64"),
		vip4:   netip.MustParseAddr("10.77.0.50"),
		vip6:   netip.MustParseAddr("fd77::50"),
	}
	for _, n := range []*nstest.NS{s.a, s.b} {
		name := strings.TrimPrefix(n.Name, rig.Prefix+"-")
		var c *net.UDPConn
		if err := n.Do(func() (err error) { c, err = net.ListenUDP("udp", &net.UDPAddr{Port: echoPort}); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			buf := make([]byte, 64)
			for {
				n, from, err := c.ReadFromUDP(buf)
				if err != nil {
					return
				}
				c.WriteToUDP([]byte(name+"|"+string(buf[:n])), from)
			}
		}()
	}
	if err := s.client.Do(func() (err error) { s.clientConn, err = net.ListenUDP("udp", nil); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.clientConn.Close() })
	s.clientNetlink = s.client.Handle()
	return s
}

// echo sends one datagram from the client to addr and returns who
// answered it (late answers to earlier datagrams are skipped).
func (s *segment) echo(addr netip.Addr, timeout time.Duration) (string, error) {
	s.seq++
	req := "ping " + strconv.Itoa(s.seq)
	if _, err := s.clientConn.WriteToUDPAddrPort([]byte(req), netip.AddrPortFrom(addr, echoPort)); err != nil {
		return "", err
	}
	s.clientConn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	for {
		n, _, err := s.clientConn.ReadFromUDP(buf)
		if err != nil {
			return "", err
		}
		if who, got, ok := strings.Cut(string(buf[:n]), "|"); ok && got == req {
			return who, nil
		}
	}
}

// waitEcho polls until a request to addr is answered by want.
func (s *segment) waitEcho(t *testing.T, addr netip.Addr, want string) {
	t.Helper()
	var last string
	err := nstest.WaitFor(t.Context(), 5*time.Second, func() (bool, error) {
		got, err := s.echo(addr, 50*time.Millisecond)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = got
		return got == want, nil
	})
	if err != nil {
		t.Fatalf("client: request to %s not answered by %s (last: %s): %v", addr, want, last, err)
	}
}

// clientNeigh is the client's neighbour entry's hardware address for addr.
func (s *segment) clientNeigh(addr netip.Addr) net.HardwareAddr {
	fam := netlink.FAMILY_V4
	if addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, _ := s.clientNetlink.NeighList(0, fam)
	for _, n := range ns {
		if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr {
			return n.HardwareAddr
		}
	}
	return nil
}

// online brings addr online on node n (findif: no interface named) and
// starts its announcer; the time from the announcer's first packet is
// returned with it.
type owner struct {
	addr *vip.Address
	ann  *announce.Announcer
	// took: Online (probe included unless noProbe); first: the first
	// announcement.
	took  time.Duration
	first time.Time
}

func bringOnline(ctx context.Context, n *nstest.NS, addr netip.Addr, noProbe bool, log *slog.Logger) (*owner, error) {
	o := &owner{}
	err := n.Do(func() error {
		start := time.Now()
		a, err := vip.Online(ctx, vip.Config{Addr: addr, NoProbe: noProbe, Logger: log})
		if err != nil {
			return err
		}
		o.took = time.Since(start)
		o.addr = a
		ann, err := announce.Start(a.Interface(), addr, announce.Config{Present: a.Present, SecondDelay: -1, Logger: log})
		if err != nil {
			a.Offline()
			return err
		}
		o.ann = ann
		_, o.first = ann.Sent()
		return nil
	})
	return o, err
}

func (o *owner) offline() error {
	if o.ann != nil {
		o.ann.Stop()
	}
	return o.addr.Offline()
}

// moved is what a move measured.
type moved struct {
	// follow: from the new owner's first announcement to the client's
	// neighbour entry naming it; total: from the old owner's offline to
	// that moment.
	follow, total time.Duration
}

// move takes addr from one node to the other and measures it.
func (s *segment) move(t *testing.T, from *owner, to *nstest.NS, addr netip.Addr, noProbe bool) (*owner, moved) {
	t.Helper()
	ctx := t.Context()
	want := to.MAC()
	ch := make(chan netlink.NeighUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := s.client.Do(func() error { return netlink.NeighSubscribe(ch, done) }); err != nil {
		t.Fatalf("subscribe to the client's neighbour table: %v", err)
	}
	// Stamp each update as it is read from the socket.
	type stamped struct {
		u  netlink.NeighUpdate
		at time.Time
	}
	updates := make(chan stamped, 64)
	go func() {
		for u := range ch {
			select {
			case updates <- stamped{u, time.Now()}:
			default:
			}
		}
	}()
	start := time.Now()
	if err := from.offline(); err != nil {
		t.Fatal(err)
	}
	o, err := bringOnline(ctx, to, addr, noProbe, testLogger(t))
	if err != nil {
		t.Fatalf("online on %s: %v", to.Name, err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case su := <-updates:
			ip, _ := netip.AddrFromSlice(su.u.IP)
			if ip.Unmap() == addr && su.u.HardwareAddr.String() == want.String() {
				return o, moved{follow: su.at.Sub(o.first), total: su.at.Sub(start)}
			}
		case <-timeout:
			t.Fatalf("client's neighbour entry for %s still %v after 5 s, want %s", addr, s.clientNeigh(addr), want)
		}
	}
}

// Moving the address from node A to node B: the client's neighbour entry
// follows B's announcement and its requests reach B.
func TestIntegrationAddressMove(t *testing.T) {
	s := newSegment(t)
	for _, addr := range []netip.Addr{s.vip4, s.vip6} {
		t.Run(map[bool]string{true: "IPv4", false: "IPv6"}[addr.Is4()], func(t *testing.T) {
			ctx := t.Context()
			a, err := bringOnline(ctx, s.a, addr, false, testLogger(t))
			if err != nil {
				t.Fatalf("online on a: %v", err)
			}
			t.Cleanup(func() { a.offline() })
			wantBits := 24
			if addr.Is6() {
				wantBits = 64
			}
			if got := a.addr.Prefix(); got.Bits() != wantBits || a.addr.Interface().Name != "eth0" {
				t.Errorf("findif: %s on %s, want /%d on eth0", got, a.addr.Interface().Name, wantBits)
			}
			if addr.Is4() {
				out, err := s.a.Run(ctx, "ip", "-4", "addr", "show", "dev", "eth0")
				if err != nil || !strings.Contains(string(out), "secondary eth0:wp") {
					t.Errorf("want %s as a secondary address labelled eth0:wp:\n%s (%v)", addr, out, err)
				}
			}
			s.waitEcho(t, addr, "a")
			if got, want := s.clientNeigh(addr), s.a.MAC(); got.String() != want.String() {
				t.Fatalf("client's neighbour entry for %s: %v, want a's %s", addr, got, want)
			}
			b, m := s.move(t, a, s.b, addr, false)
			t.Cleanup(func() { b.offline() })
			t.Logf("%s: first announcement → client's neighbour entry names b: %v; online on b took %v (probe included); offline on a → client follows: %v", addr, m.follow, b.took, m.total)
			got, err := s.echo(addr, time.Second)
			if err != nil || got != "b" {
				t.Fatalf("client's request to %s after the move: answered by %q (%v), want b", addr, got, err)
			}
			// Offline stops the announcer first; it has ended, and the
			// address reads as gone.
			if err := b.offline(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-b.ann.Done():
			default:
				t.Errorf("announcer still running after offline")
			}
			if ok, err := b.addr.Present(); ok || err != nil {
				t.Errorf("present after offline: %v %v", ok, err)
			}
		})
	}
}

// An address the client already uses is refused with the client's MAC,
// and nothing is added; an address on another interface of the host too.
func TestIntegrationDuplicateAddress(t *testing.T) {
	s := newSegment(t)
	ctx := t.Context()
	if err := nstest.IPBatch(s.client.Name, "addr add 10.77.0.50/24 dev eth0", "addr add fd77::50/64 dev eth0 nodad"); err != nil {
		t.Fatal(err)
	}
	clientMAC := s.client.MAC().String()
	for _, addr := range []netip.Addr{s.vip4, s.vip6} {
		start := time.Now()
		_, err := bringOnline(ctx, s.a, addr, false, testLogger(t))
		t.Logf("%s: refused after %v: %v", addr, time.Since(start), err)
		var ce *announce.ConflictError
		if !errors.As(err, &ce) || !errors.Is(err, announce.ErrInUse) || !strings.Contains(err.Error(), clientMAC) || ce.Interface != "eth0" {
			t.Errorf("%s: err %v, want a conflict naming the client's MAC %s on eth0", addr, err, clientMAC)
		}
		out, _ := s.a.Run(ctx, "ip", "addr", "show", "dev", "eth0")
		if strings.Contains(string(out), addr.String()+"/") {
			t.Errorf("%s added despite the conflict:\n%s", addr, out)
		}
	}

	// On another interface of node A: refused before any packet.
	if err := nstest.IPBatch(s.a.Name, "link add name side0 type veth peer name side1", "addr add 10.77.9.9/32 dev side0"); err != nil {
		t.Fatal(err)
	}
	err := s.a.Do(func() error {
		_, err := vip.Online(ctx, vip.Config{Addr: netip.MustParseAddr("10.77.9.9"), Interface: "eth0"})
		return err
	})
	if !errors.Is(err, vip.ErrPresent) || !strings.Contains(err.Error(), "side0") {
		t.Errorf("address on side0, online on eth0: %v, want ErrPresent naming side0", err)
	}
}

// TestIntegrationBenchAddress measures, for BENCHMARKS.md, the time to
// bring an address online with and without the probe and from the first
// announcement to the client's neighbour entry, over WOLFPACK_BENCH_NET
// moves (e.g. WOLFPACK_BENCH_NET=20) per family.
func TestIntegrationBenchAddress(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WOLFPACK_BENCH_NET"))
	if n <= 0 {
		t.Skip("set WOLFPACK_BENCH_NET=N (moves per family) to run")
	}
	s := newSegment(t)
	for _, addr := range []netip.Addr{s.vip4, s.vip6} {
		for _, noProbe := range []bool{false, true} {
			var online, follow, total []time.Duration
			cur, err := bringOnline(t.Context(), s.a, addr, noProbe, nil)
			if err != nil {
				t.Fatal(err)
			}
			nodes := []*nstest.NS{s.b, s.a}
			for i := 0; i < n; i++ {
				s.waitEcho(t, addr, strings.TrimPrefix(nodes[(i+1)%2].Name, s.rig.Prefix+"-"))
				next, m := s.move(t, cur, nodes[i%2], addr, noProbe)
				online = append(online, next.took)
				follow = append(follow, m.follow)
				total = append(total, m.total)
				cur = next
			}
			cur.offline()
			t.Logf("BENCH %s probe=%v n=%d: online median %v (min %v max %v); announcement → client neighbour median %v (min %v max %v); offline on the old owner → client follows median %v (max %v)",
				addr, !noProbe, n, median(online), slices.Min(online), slices.Max(online), median(follow), slices.Min(follow), slices.Max(follow), median(total), slices.Max(total))
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
