package announce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/packet"
)

// Config sets the announcements. Zero fields take the defaults.
//
// The defaults: a burst of 5 announcements 200 ms apart at once (IPaddr2's
// arp_count=5, arp_interval=200ms), a second burst of 5 after 5 s
// (keepalived's garp_master_delay=5s with garp_master_repeat=5, for a
// switch or client that missed the first), no periodic refresh (neither
// sends one by default). Each IPv4 announcement is two frames, the request
// and the reply form, since some devices honour only one.
type Config struct {
	// Count is the number of announcements in the first burst (default 5).
	Count int
	// Interval separates announcements within a burst (default 200 ms).
	Interval time.Duration
	// SecondDelay is the time from the start of the first burst to the
	// second (default 5 s); negative: no second burst.
	SecondDelay time.Duration
	// SecondCount is the second burst's size (default 5).
	SecondCount int
	// Refresh, if positive, repeats one announcement at that period until
	// Stop.
	Refresh time.Duration
	// Forms are the IPv4 forms sent (default both); IPv6 sends unsolicited
	// Neighbor Advertisements with the override flag to ff02::1.
	Forms []ARPForm
	// Present, if set, is asked before every announcement; an announcement
	// is sent only while it says true, and the announcer ends when it says
	// false: nothing is announced for an address no longer on the host.
	Present func() (bool, error)
	// Logger (nil: discard).
	Logger *slog.Logger
}

// Defaults (see Config).
const (
	DefaultCount       = 5
	DefaultInterval    = 200 * time.Millisecond
	DefaultSecondDelay = 5 * time.Second
	DefaultSecondCount = 5
)

func (c Config) withDefaults() Config {
	if c.Count <= 0 {
		c.Count = DefaultCount
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.SecondDelay == 0 {
		c.SecondDelay = DefaultSecondDelay
	}
	if c.SecondCount <= 0 {
		c.SecondCount = DefaultSecondCount
	}
	if len(c.Forms) == 0 {
		c.Forms = []ARPForm{ARPRequest, ARPReply}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// ErrGone ends an announcer whose Present said the address is gone.
var ErrGone = errors.New("announce: address no longer present")

// Announcer sends the announcements for one address until its schedule
// ends or Stop.
type Announcer struct {
	ifi    *net.Interface
	addr   netip.Addr
	cfg    Config
	frames [][]byte
	log    *slog.Logger

	mu      sync.Mutex // held across every send
	conn    *packet.Conn
	stopped bool
	sent    int
	first   time.Time

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Start opens a packet socket on ifi (in the calling thread's network
// namespace) and announces addr from ifi's hardware address in the
// background: the first announcement goes out before Start returns.
func Start(ifi *net.Interface, addr netip.Addr, cfg Config) (*Announcer, error) {
	cfg = cfg.withDefaults()
	addr = addr.Unmap()
	mac := ifi.HardwareAddr
	if len(mac) != 6 {
		return nil, fmt.Errorf("announce %s on %s: interface has no Ethernet address", addr, ifi.Name)
	}
	var frames [][]byte
	if addr.Is4() {
		for _, f := range cfg.Forms {
			b, err := garpFrame(f, mac, addr)
			if err != nil {
				return nil, fmt.Errorf("announce %s on %s: %w", addr, ifi.Name, err)
			}
			frames = append(frames, b)
		}
	} else {
		b, err := naFrame(mac, addr)
		if err != nil {
			return nil, fmt.Errorf("announce %s on %s: %w", addr, ifi.Name, err)
		}
		frames = append(frames, b)
	}
	c, err := listen(ifi, 0)
	if err != nil {
		return nil, fmt.Errorf("announce %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Announcer{
		ifi: ifi, addr: addr, cfg: cfg, frames: frames, conn: c,
		log:    cfg.Logger.With("interface", ifi.Name, "addr", addr),
		cancel: cancel, done: make(chan struct{}),
	}
	start := time.Now()
	if err := a.announce(); err != nil {
		a.finish(err)
		cancel()
		return nil, err
	}
	go a.run(ctx, start)
	return a, nil
}

// announce sends one announcement (every form), unless stopped or the
// address is gone.
func (a *Announcer) announce() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return context.Canceled
	}
	if a.cfg.Present != nil {
		ok, err := a.cfg.Present()
		if err != nil {
			return fmt.Errorf("announce %s on %s: check the address is present: %w", a.addr, a.ifi.Name, err)
		}
		if !ok {
			return fmt.Errorf("announce %s on %s: %w", a.addr, a.ifi.Name, ErrGone)
		}
	}
	at := time.Now()
	for _, f := range a.frames {
		if err := send(a.conn, f); err != nil {
			return fmt.Errorf("announce %s on %s: send: %w", a.addr, a.ifi.Name, err)
		}
	}
	if a.sent == 0 {
		a.first = at
	}
	a.sent++
	return nil
}

func (a *Announcer) run(ctx context.Context, start time.Time) {
	err := a.schedule(ctx, start)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	a.finish(err)
}

func (a *Announcer) schedule(ctx context.Context, start time.Time) error {
	wait := func(until time.Time) error {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	burst := func(from time.Time, n, skip int) error {
		for i := skip; i < n; i++ {
			if err := wait(from.Add(time.Duration(i) * a.cfg.Interval)); err != nil {
				return err
			}
			if err := a.announce(); err != nil {
				return err
			}
		}
		return nil
	}
	if err := burst(start, a.cfg.Count, 1); err != nil {
		return err
	}
	a.log.Debug("announced", "burst", 1, "count", a.cfg.Count)
	if a.cfg.SecondDelay > 0 {
		if err := burst(start.Add(a.cfg.SecondDelay), a.cfg.SecondCount, 0); err != nil {
			return err
		}
		a.log.Debug("announced", "burst", 2, "count", a.cfg.SecondCount)
	}
	if a.cfg.Refresh <= 0 {
		return nil
	}
	for next := time.Now().Add(a.cfg.Refresh); ; next = next.Add(a.cfg.Refresh) {
		if err := wait(next); err != nil {
			return err
		}
		if err := a.announce(); err != nil {
			return err
		}
	}
}

func (a *Announcer) finish(err error) {
	a.mu.Lock()
	a.stopped = true // nothing is sent from here on
	a.err = err
	a.mu.Unlock()
	if err != nil {
		a.log.Warn("announcer ended", "err", err)
	}
	close(a.done)
	// After Done: closing a packet socket waits for an RCU grace period
	// (synchronize_net, about 10 ms), which Stop need not.
	a.conn.Close()
}

// Stop ends the announcements and waits for the sender: once Stop returns,
// nothing more is sent. Call it before the address is removed.
func (a *Announcer) Stop() {
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()
	a.cancel()
	<-a.done
}

// Done is closed when the announcer has ended (schedule over, Stop, or an
// error: see Err).
func (a *Announcer) Done() <-chan struct{} { return a.done }

// Err is why the announcer ended (nil: schedule over or Stop); valid after Done.
func (a *Announcer) Err() error {
	<-a.done
	return a.err
}

// Sent reports the number of announcements sent and when the first began
// (just before its first frame was handed to the kernel).
func (a *Announcer) Sent() (n int, first time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sent, a.first
}
