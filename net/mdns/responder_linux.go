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
	pc   *ipv4.PacketConn
	conn net.PacketConn

	mu        sync.Mutex // serialises sends
	leaving   bool       // goodbyes under way: nothing else is sent
	closing   bool
	announced time.Time

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
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

// Start opens the mDNS socket on the interface (in the calling thread's
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
	r := &Responder{zone: z, cfg: cfg, ifi: ifi, log: cfg.Logger.With("name", z.name, "interface", ifi.Name)}
	if err := r.open(); err != nil {
		return nil, fmt.Errorf("mdns: start %s on %s: %w", z.name, ifi.Name, err)
	}
	start := time.Now()
	if err := r.probe(ctx); err != nil {
		r.conn.Close()
		return nil, err
	}
	r.log.Info("mdns: name probed", "took", time.Since(start))
	announced := time.Now()
	if err := r.sendTo(z.announcement(z.ttl), netip.AddrPortFrom(Group4, Port)); err != nil {
		r.conn.Close()
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

// open binds 0.0.0.0:5353 (shared: SO_REUSEADDR, SO_REUSEPORT) to the
// interface, joins 224.0.0.251 on it, multicast TTL 255 (§11) and no
// loopback of our own packets.
func (r *Responder) open() error {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
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
	}}
	conn, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", Port))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w", Port, err)
	}
	pc := ipv4.NewPacketConn(conn)
	for _, step := range []struct {
		what string
		do   func() error
	}{
		{"join " + Group4.String(), func() error { return pc.JoinGroup(r.ifi, &net.UDPAddr{IP: Group4.AsSlice()}) }},
		{"set the multicast interface", func() error { return pc.SetMulticastInterface(r.ifi) }},
		{"set multicast TTL 255", func() error { return pc.SetMulticastTTL(255) }},
		{"set TTL 255", func() error { return pc.SetTTL(255) }},
		{"turn multicast loopback off", func() error { return pc.SetMulticastLoopback(false) }},
	} {
		if err := step.do(); err != nil {
			conn.Close()
			return fmt.Errorf("%s: %w", step.what, err)
		}
	}
	r.conn, r.pc = conn, pc
	return nil
}

func (r *Responder) sendTo(m *dns.Msg, dst netip.AddrPort) error {
	return r.send(m, dst, false)
}

// send writes m to dst; once Close began only goodbyes go out, so that no
// answer follows them.
func (r *Responder) send(m *dns.Msg, dst netip.AddrPort, goodbye bool) error {
	b, err := m.Pack()
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing || (r.leaving && !goodbye) {
		return net.ErrClosed
	}
	_, err = r.conn.WriteTo(b, net.UDPAddrFromAddrPort(dst))
	return err
}

// probe sends the probes and listens for a conflicting answer until one
// interval after the last.
func (r *Responder) probe(ctx context.Context) error {
	buf := make([]byte, 9000)
	for i := 0; i < r.cfg.ProbeCount; i++ {
		if err := r.sendTo(r.zone.probe(i == 0), netip.AddrPortFrom(Group4, Port)); err != nil {
			return fmt.Errorf("mdns: probe %s on %s: %w", r.zone.name, r.ifi.Name, err)
		}
		until := time.Now().Add(r.cfg.ProbeInterval)
		for time.Now().Before(until) {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("mdns: probe %s on %s: %w", r.zone.name, r.ifi.Name, err)
			}
			r.conn.SetReadDeadline(until)
			n, from, err := r.conn.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return fmt.Errorf("mdns: probe %s on %s: read: %w", r.zone.name, r.ifi.Name, err)
			}
			if rr, ok := r.zone.conflict(buf[:n]); ok {
				src := from.(*net.UDPAddr).AddrPort().Addr().Unmap()
				r.log.Warn("mdns: name in use", "from", src, "record", rr.String())
				return &ConflictError{Name: r.zone.name, Interface: r.ifi.Name, From: src, Record: rr.String()}
			}
			// A query for our name during probing is not answered yet.
		}
	}
	r.conn.SetReadDeadline(time.Time{})
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
		if err := r.sendTo(r.zone.announcement(r.zone.ttl), netip.AddrPortFrom(Group4, Port)); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Warn("mdns: announcement not sent", "n", i+1, "err", err)
			}
			return
		}
		r.log.Debug("mdns: announced", "n", i+1)
		gap *= 2
	}
}

// serve answers queries until the socket closes.
func (r *Responder) serve() {
	defer r.wg.Done()
	buf := make([]byte, 9000)
	for {
		n, from, err := r.conn.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Warn("mdns: read", "err", err)
			}
			return
		}
		src := from.(*net.UDPAddr).AddrPort()
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if rr, ok := r.zone.conflict(buf[:n]); ok {
			// §9: another host claims our name; the cluster gives a
			// name one owner, so this is someone else's mistake: log it
			// and keep our answer (the cache-flush bit corrects caches).
			r.log.Warn("mdns: another host claims the name", "from", src.Addr(), "record", rr.String())
			continue
		}
		reply, unicast, ok := r.zone.respond(buf[:n], src)
		if !ok {
			continue
		}
		dst := netip.AddrPortFrom(Group4, Port)
		if unicast {
			dst = src
		}
		r.log.Debug("mdns: answer", "from", src, "to", dst, "records", len(reply.Answer))
		if err := r.sendTo(reply, dst); err != nil {
			if errors.Is(err, net.ErrClosed) {
				continue // leaving: read on until the socket closes
			}
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

// Close sends the goodbyes (every record with TTL 0), stops answering and
// closes the socket.
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
			if e := r.send(bye, netip.AddrPortFrom(Group4, Port), true); e != nil {
				err = fmt.Errorf("mdns: goodbye for %s on %s: %w", r.zone.name, r.ifi.Name, e)
				break
			}
		}
		r.mu.Lock()
		r.closing = true
		r.conn.Close()
		r.mu.Unlock()
		r.wg.Wait()
		r.log.Info("mdns: goodbye sent, responder closed", "goodbyes", r.cfg.GoodbyeCount)
	})
	return err
}
