package mdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Config describes one name on one interface. Zero fields take the defaults.
type Config struct {
	// Name is the host name: "vs1" or "vs1.local" both mean vs1.local.
	Name string
	// Interface is the interface to answer on.
	Interface string
	// Addrs are the name's addresses (A and AAAA records).
	Addrs []netip.Addr
	// TTL of the records (default 120 s, RFC 6762 §10's TTL for records
	// that name a host).
	TTL time.Duration
	// ProbeCount probes are sent ProbeInterval apart, then ProbeInterval
	// more is waited (default 3 and 250 ms, §8.1).
	ProbeCount    int
	ProbeInterval time.Duration
	// AnnounceCount announcements (at least 2, §8.3) are sent, the
	// second AnnounceInterval after the first, each next gap doubled
	// (default 2 and 1 s).
	AnnounceCount    int
	AnnounceInterval time.Duration
	// GoodbyeCount goodbyes (TTL 0) are sent on Close, 50 ms apart
	// (default 2: one lost goodbye would leave clients on the old answer
	// for its TTL).
	GoodbyeCount int
	// NoIPv6 serves over IPv4 only. By default the responder also uses
	// ff02::fb, unless the interface has no IPv6 (logged, not an error).
	NoIPv6 bool
	// Logger (nil: discard).
	Logger *slog.Logger
}

// Defaults (see Config).
const (
	DefaultTTL              = 120 * time.Second
	DefaultProbeCount       = 3
	DefaultProbeInterval    = 250 * time.Millisecond
	DefaultAnnounceCount    = 2
	DefaultAnnounceInterval = time.Second
	DefaultGoodbyeCount     = 2
	goodbyeInterval         = 50 * time.Millisecond
)

// ErrConflict is matched (errors.Is) by a *ConflictError.
var ErrConflict = errors.New("mdns: name in use by another host")

// ConflictError says another host answered our probe with other records.
type ConflictError struct {
	Name, Interface string
	From            netip.Addr
	Record          string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("mdns: %s on %s is in use: %s answered the probe with %s", e.Name, e.Interface, e.From, e.Record)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Responder answers for one name until Close.
type Responder struct {
	zone zone
	cfg  Config
	ifi  *net.Interface
	log  *slog.Logger
	// transports: IPv4 first, then IPv6 if opened.
	transports []*transport
	in         chan received
	quit       chan struct{} // closed when the sockets are closed

	mu        sync.Mutex // serialises sends
	leaving   bool       // goodbyes under way: nothing else is sent
	closing   bool
	announced time.Time

	cancel    context.CancelFunc
	wg        sync.WaitGroup // serve, announce
	readers   sync.WaitGroup
	closeOnce sync.Once
}

// transport is one family's socket and group.
type transport struct {
	conn  net.PacketConn
	group netip.AddrPort
	// failing: the last multicast on it failed (logged once); under mu.
	failing bool
}

// received is a packet read from a transport.
type received struct {
	b    []byte
	from netip.AddrPort
	t    *transport
}

func (c Config) withDefaults() Config {
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.ProbeCount <= 0 {
		c.ProbeCount = DefaultProbeCount
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.AnnounceCount < 2 {
		c.AnnounceCount = DefaultAnnounceCount
	}
	if c.AnnounceInterval <= 0 {
		c.AnnounceInterval = DefaultAnnounceInterval
	}
	if c.GoodbyeCount <= 0 {
		c.GoodbyeCount = DefaultGoodbyeCount
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Start opens the mDNS sockets on the interface (in the calling thread's
// network namespace), probes for the name, sends the first announcement and
// returns; later announcements and answers follow in the background. A
// host answering the probe with other records makes a *ConflictError.
func Start(ctx context.Context, cfg Config) (*Responder, error) {
	cfg = cfg.withDefaults()
	z := zone{name: FQDN(cfg.Name), ttl: uint32(cfg.TTL / time.Second)}
	if _, ok := dns.IsDomainName(z.name); !ok || len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("mdns: start %q on %s: want a host name and at least one address", cfg.Name, cfg.Interface)
	}
	for _, a := range cfg.Addrs {
		z.addrs = append(z.addrs, a.Unmap())
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("mdns: start %s: %w", z.name, err)
	}
	r := &Responder{
		zone: z, cfg: cfg, ifi: ifi, log: cfg.Logger.With("name", z.name, "interface", ifi.Name),
		in: make(chan received, 64), quit: make(chan struct{}),
	}
	t4, err := r.open4()
	if err != nil {
		return nil, fmt.Errorf("mdns: start %s on %s: %w", z.name, ifi.Name, err)
	}
	r.transports = append(r.transports, t4)
	if !cfg.NoIPv6 {
		if t6, err := r.open6(); err != nil {
			r.log.Warn("mdns: IPv4 only", "err", err)
		} else {
			r.transports = append(r.transports, t6)
		}
	}
	for _, t := range r.transports {
		r.readers.Add(1)
		go r.read(t)
	}
	start := time.Now()
	if err := r.probe(ctx); err != nil {
		r.closeSockets()
		return nil, err
	}
	r.log.Info("mdns: name probed", "took", time.Since(start), "families", len(r.transports))
	announced := time.Now()
	if err := r.multicast(z.announcement(z.ttl), false); err != nil {
		r.closeSockets()
		return nil, fmt.Errorf("mdns: announce %s on %s: %w", z.name, ifi.Name, err)
	}
	r.mu.Lock()
	r.announced = announced
	r.mu.Unlock()
	bg, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(2)
	go r.serve()
	go r.announce(bg)
	return r, nil
}

// control makes a socket bound to port 5353 shareable (SO_REUSEADDR,
// SO_REUSEPORT) and bound to the interface.
func (r *Responder) control(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, 1)
			}
		}
		if serr == nil {
			serr = unix.BindToDevice(int(fd), r.ifi.Name)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

type step struct {
	what string
	do   func() error
}

func run(conn net.PacketConn, steps []step) error {
	for _, s := range steps {
		if err := s.do(); err != nil {
			conn.Close()
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

// open4 binds 0.0.0.0:5353 on the interface, joins 224.0.0.251 there,
// multicast TTL 255 (§11), no loopback of our own packets.
func (r *Responder) open4() (*transport, error) {
	lc := net.ListenConfig{Control: r.control}
	conn, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", Port))
	if err != nil {
		return nil, fmt.Errorf("listen on udp4 port %d: %w", Port, err)
	}
	pc := ipv4.NewPacketConn(conn)
	if err := run(conn, []step{
		{"join " + Group4.String(), func() error { return pc.JoinGroup(r.ifi, &net.UDPAddr{IP: Group4.AsSlice()}) }},
		{"set the multicast interface", func() error { return pc.SetMulticastInterface(r.ifi) }},
		{"set multicast TTL 255", func() error { return pc.SetMulticastTTL(255) }},
		{"set TTL 255", func() error { return pc.SetTTL(255) }},
		{"turn multicast loopback off", func() error { return pc.SetMulticastLoopback(false) }},
	}); err != nil {
		return nil, err
	}
	return &transport{conn: conn, group: netip.AddrPortFrom(Group4, Port)}, nil
}

// open6 binds [::]:5353 (IPv6 only) on the interface and joins ff02::fb,
// hop limit 255, no loopback.
func (r *Responder) open6() (*transport, error) {
	lc := net.ListenConfig{Control: r.control}
	conn, err := lc.ListenPacket(context.Background(), "udp6", fmt.Sprintf("[::]:%d", Port))
	if err != nil {
		return nil, fmt.Errorf("listen on udp6 port %d: %w", Port, err)
	}
	pc := ipv6.NewPacketConn(conn)
	if err := run(conn, []step{
		{"join " + Group6.String(), func() error { return pc.JoinGroup(r.ifi, &net.UDPAddr{IP: Group6.AsSlice()}) }},
		{"set the multicast interface", func() error { return pc.SetMulticastInterface(r.ifi) }},
		{"set multicast hop limit 255", func() error { return pc.SetMulticastHopLimit(255) }},
		{"set hop limit 255", func() error { return pc.SetHopLimit(255) }},
		{"turn multicast loopback off", func() error { return pc.SetMulticastLoopback(false) }},
	}); err != nil {
		return nil, err
	}
	return &transport{conn: conn, group: netip.AddrPortFrom(Group6.WithZone(r.ifi.Name), Port)}, nil
}

// read hands every packet of t to r.in until the socket closes.
func (r *Responder) read(t *transport) {
	defer r.readers.Done()
	buf := make([]byte, 9000)
	for {
		n, from, err := t.conn.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Warn("mdns: read", "err", err)
			}
			return
		}
		src := from.(*net.UDPAddr).AddrPort()
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		select {
		case r.in <- received{b: append([]byte(nil), buf[:n]...), from: src, t: t}:
		case <-r.quit:
			return
		}
	}
}

// send writes m to dst on t; once Close began only goodbyes go out, so
// that no answer follows them.
func (r *Responder) send(t *transport, m *dns.Msg, dst netip.AddrPort, goodbye bool) error {
	b, err := m.Pack()
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing || (r.leaving && !goodbye) {
		return net.ErrClosed
	}
	_, err = t.conn.WriteTo(b, net.UDPAddrFromAddrPort(dst))
	return err
}

// multicast sends m to the group of every transport. It fails only if
// IPv4 fails: IPv6 can be unusable for a while (an interface whose only
// IPv6 address is its link-local one, still tentative during the kernel's
// DAD, has no source address), which is logged.
func (r *Responder) multicast(m *dns.Msg, goodbye bool) error {
	for i, t := range r.transports {
		err := r.send(t, m, t.group, goodbye)
		if err != nil && (i == 0 || errors.Is(err, net.ErrClosed)) {
			return fmt.Errorf("to %s: %w", t.group, err)
		}
		r.mu.Lock()
		was := t.failing
		t.failing = err != nil
		r.mu.Unlock()
		switch {
		case err != nil && !was:
			r.log.Warn("mdns: not sent over IPv6 (logged once until it works again)", "to", t.group, "err", err)
		case err == nil && was:
			r.log.Info("mdns: sending over IPv6 again", "to", t.group)
		}
	}
	return nil
}

// probe sends the probes and listens for a conflicting answer until one
// interval after the last.
func (r *Responder) probe(ctx context.Context) error {
	for i := 0; i < r.cfg.ProbeCount; i++ {
		if err := r.multicast(r.zone.probe(i == 0), false); err != nil {
			return fmt.Errorf("mdns: probe %s on %s: %w", r.zone.name, r.ifi.Name, err)
		}
		t := time.NewTimer(r.cfg.ProbeInterval)
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("mdns: probe %s on %s: %w", r.zone.name, r.ifi.Name, ctx.Err())
			case <-t.C:
				break wait
			case p := <-r.in:
				if rr, ok := r.zone.conflict(p.b); ok {
					t.Stop()
					r.log.Warn("mdns: name in use", "from", p.from.Addr(), "record", rr.String())
					return &ConflictError{Name: r.zone.name, Interface: r.ifi.Name, From: p.from.Addr().WithZone(""), Record: rr.String()}
				}
				// A query for our name during probing is not answered yet.
			}
		}
	}
	return nil
}

// announce sends the announcements after the first (§8.3).
func (r *Responder) announce(ctx context.Context) {
	defer r.wg.Done()
	gap := r.cfg.AnnounceInterval
	for i := 1; i < r.cfg.AnnounceCount; i++ {
		t := time.NewTimer(gap)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := r.multicast(r.zone.announcement(r.zone.ttl), false); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Warn("mdns: announcement not sent", "n", i+1, "err", err)
			}
			return
		}
		r.log.Debug("mdns: announced", "n", i+1)
		gap *= 2
	}
}

// serve answers queries until the sockets close.
func (r *Responder) serve() {
	defer r.wg.Done()
	for {
		var p received
		select {
		case <-r.quit:
			return
		case p = <-r.in:
		}
		if rr, ok := r.zone.conflict(p.b); ok {
			// §9: another host claims our name; the cluster gives a
			// name one owner, so this is someone else's mistake: log it
			// and keep our answer (the cache-flush bit corrects caches).
			r.log.Warn("mdns: another host claims the name", "from", p.from.Addr(), "record", rr.String())
			continue
		}
		reply, unicast, ok := r.zone.respond(p.b, p.from)
		if !ok {
			continue
		}
		dst := p.t.group
		if unicast {
			dst = p.from
		}
		r.log.Debug("mdns: answer", "from", p.from, "to", dst, "records", len(reply.Answer))
		if err := r.send(p.t, reply, dst, false); err != nil && !errors.Is(err, net.ErrClosed) {
			r.log.Warn("mdns: answer not sent", "to", dst, "err", err)
		}
	}
}

// Announced is when the first announcement was handed to the kernel.
func (r *Responder) Announced() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.announced
}

// closeSockets closes every socket and waits for the readers.
func (r *Responder) closeSockets() {
	r.mu.Lock()
	r.closing = true
	for _, t := range r.transports {
		t.conn.Close()
	}
	r.mu.Unlock()
	close(r.quit)
	r.readers.Wait()
}

// Close sends the goodbyes (every record with TTL 0, on every family),
// stops answering and closes the sockets.
func (r *Responder) Close() error {
	var err error
	r.closeOnce.Do(func() {
		r.cancel()
		r.mu.Lock()
		r.leaving = true
		r.mu.Unlock()
		bye := r.zone.announcement(0)
		for i := 0; i < r.cfg.GoodbyeCount; i++ {
			if i > 0 {
				time.Sleep(goodbyeInterval)
			}
			if e := r.multicast(bye, true); e != nil {
				err = fmt.Errorf("mdns: goodbye for %s on %s: %w", r.zone.name, r.ifi.Name, e)
				break
			}
		}
		r.closeSockets()
		r.wg.Wait()
		r.log.Info("mdns: goodbye sent, responder closed", "goodbyes", r.cfg.GoodbyeCount)
	})
	return err
}

// Abort stops answering and closes the sockets without goodbyes: for a
// node that must let go of the name at once (its lease ran out) while
// another node may already answer for it with the same records, which a
// late goodbye would make clients drop.
func (r *Responder) Abort() {
	r.closeOnce.Do(func() {
		r.cancel()
		r.mu.Lock()
		r.leaving = true
		r.mu.Unlock()
		r.closeSockets()
		r.wg.Wait()
		r.log.Info("mdns: responder aborted, no goodbye")
	})
}
