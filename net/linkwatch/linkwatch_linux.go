package linkwatch

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Kind is what happened.
type Kind int

const (
	// CarrierLost: the link is up but has no carrier (IFF_LOWER_UP clear).
	CarrierLost Kind = iota + 1
	// CarrierRestored: carrier is back after CarrierLost.
	CarrierRestored
	// LinkDown: the link was set administratively down (IFF_UP clear).
	LinkDown
	// LinkGone: the link was deleted.
	LinkGone
	// AddrGone: a watched address was removed from the link.
	AddrGone
	// Failed: the subscription failed; nothing more will be reported.
	Failed
)

func (k Kind) String() string {
	switch k {
	case CarrierLost:
		return "carrier lost"
	case CarrierRestored:
		return "carrier restored"
	case LinkDown:
		return "link down"
	case LinkGone:
		return "link gone"
	case AddrGone:
		return "address gone"
	case Failed:
		return "watch failed"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Event is one report.
type Event struct {
	Kind      Kind
	Interface string
	Addr      netip.Addr // AddrGone
	// At is when the netlink message was read (or the initial check ran).
	At time.Time
	// Err is the subscription's error (Failed).
	Err error
}

func (e Event) String() string {
	s := fmt.Sprintf("%s: %s", e.Interface, e.Kind)
	if e.Addr.IsValid() {
		s += " " + e.Addr.String()
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Config names what to watch.
type Config struct {
	Interface string
	// Addrs are reported when removed from Interface.
	Addrs []netip.Addr
	// Logger (nil: discard).
	Logger *slog.Logger
}

// Watcher delivers Events until Close.
type Watcher struct {
	cfg    Config
	log    *slog.Logger
	index  int
	events chan Event
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once

	// state, owned by the loop
	up, carrier bool
}

// Watch subscribes to link and address changes in the calling thread's
// network namespace, then checks the current state: a link already down or
// an address already missing is reported at once.
func Watch(cfg Config) (*Watcher, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{cfg: cfg, log: log.With("interface", cfg.Interface), events: make(chan Event, 64), done: make(chan struct{})}
	w.cfg.Addrs = nil // a copy: the caller's slice is left alone
	for _, a := range cfg.Addrs {
		w.cfg.Addrs = append(w.cfg.Addrs, a.Unmap())
	}
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	errc := make(chan error, 2)
	cb := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	if err := netlink.LinkSubscribeWithOptions(links, w.done, netlink.LinkSubscribeOptions{ErrorCallback: cb}); err != nil {
		return nil, fmt.Errorf("linkwatch %s: subscribe to links: %w", cfg.Interface, err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, w.done, netlink.AddrSubscribeOptions{ErrorCallback: cb}); err != nil {
		close(w.done)
		return nil, fmt.Errorf("linkwatch %s: subscribe to addresses: %w", cfg.Interface, err)
	}
	// Subscribed first, then read the state: nothing falls in between.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		close(w.done)
		return nil, fmt.Errorf("linkwatch %s: open netlink: %w", cfg.Interface, err)
	}
	defer h.Close()
	link, err := h.LinkByName(cfg.Interface)
	if err != nil {
		close(w.done)
		return nil, fmt.Errorf("linkwatch %s: find the link: %w", cfg.Interface, err)
	}
	a := link.Attrs()
	w.index = a.Index
	w.up, w.carrier = a.RawFlags&unix.IFF_UP != 0, a.RawFlags&unix.IFF_LOWER_UP != 0
	var initial []Event
	now := time.Now()
	if !w.up {
		initial = append(initial, Event{Kind: LinkDown, Interface: cfg.Interface, At: now})
	} else if !w.carrier {
		initial = append(initial, Event{Kind: CarrierLost, Interface: cfg.Interface, At: now})
	}
	var have []netip.Addr
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		as, err := h.AddrList(link, fam)
		if err != nil {
			close(w.done)
			return nil, fmt.Errorf("linkwatch %s: list addresses: %w", cfg.Interface, err)
		}
		for _, x := range as {
			if ip, ok := netip.AddrFromSlice(x.IP); ok {
				have = append(have, ip.Unmap())
			}
		}
	}
	for _, want := range w.cfg.Addrs {
		if !slices.Contains(have, want) {
			initial = append(initial, Event{Kind: AddrGone, Interface: cfg.Interface, Addr: want, At: now})
		}
	}
	for _, e := range initial {
		w.events <- e
	}
	w.wg.Add(1)
	go w.loop(links, addrs, errc)
	return w, nil
}

func (w *Watcher) emit(e Event) {
	attrs := []any{"event", e.Kind.String()}
	if e.Addr.IsValid() {
		attrs = append(attrs, "addr", e.Addr)
	}
	if e.Err != nil {
		attrs = append(attrs, "err", e.Err)
	}
	w.log.Info("link event", attrs...)
	select {
	case w.events <- e:
	case <-w.done:
	}
}

func (w *Watcher) loop(links <-chan netlink.LinkUpdate, addrs <-chan netlink.AddrUpdate, errc <-chan error) {
	defer w.wg.Done()
	defer close(w.events)
	for {
		select {
		case <-w.done:
			return
		case err := <-errc:
			w.emit(Event{Kind: Failed, Interface: w.cfg.Interface, At: time.Now(), Err: fmt.Errorf("netlink subscription: %w", err)})
			return
		case u, ok := <-links:
			if !ok {
				w.emit(Event{Kind: Failed, Interface: w.cfg.Interface, At: time.Now(), Err: errors.New("netlink link subscription closed")})
				return
			}
			if e, ok := w.link(u); ok {
				w.emit(e)
			}
		case u, ok := <-addrs:
			if !ok {
				w.emit(Event{Kind: Failed, Interface: w.cfg.Interface, At: time.Now(), Err: errors.New("netlink address subscription closed")})
				return
			}
			if e, ok := w.addr(u); ok {
				w.emit(e)
			}
		}
	}
}

// link turns a link message into an event, tracking the flags.
func (w *Watcher) link(u netlink.LinkUpdate) (Event, bool) {
	if int(u.Index) != w.index {
		return Event{}, false
	}
	e := Event{Interface: w.cfg.Interface, At: time.Now()}
	if u.Header.Type == unix.RTM_DELLINK {
		e.Kind = LinkGone
		return e, true
	}
	up, carrier := u.Flags&unix.IFF_UP != 0, u.Flags&unix.IFF_LOWER_UP != 0
	wasUp, hadCarrier := w.up, w.carrier
	w.up, w.carrier = up, carrier
	switch {
	case wasUp && !up:
		e.Kind = LinkDown
	case up && hadCarrier && !carrier:
		e.Kind = CarrierLost
	case up && carrier && (!hadCarrier || !wasUp):
		e.Kind = CarrierRestored
	default:
		return Event{}, false
	}
	return e, true
}

// addr turns an address message into AddrGone for a watched address.
func (w *Watcher) addr(u netlink.AddrUpdate) (Event, bool) {
	if u.NewAddr || u.LinkIndex != w.index {
		return Event{}, false
	}
	ip, ok := netip.AddrFromSlice(u.LinkAddress.IP)
	if !ok || !slices.Contains(w.cfg.Addrs, ip.Unmap()) {
		return Event{}, false
	}
	return Event{Kind: AddrGone, Interface: w.cfg.Interface, Addr: ip.Unmap(), At: time.Now()}, true
}

// Events delivers the reports; closed after Close or Failed.
func (w *Watcher) Events() <-chan Event { return w.events }

// Close ends the subscription.
func (w *Watcher) Close() {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
}
