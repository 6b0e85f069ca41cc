package ipaddr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/wolfpack-ha/wolfpack/net/announce"
	"github.com/wolfpack-ha/wolfpack/net/linkwatch"
	"github.com/wolfpack-ha/wolfpack/net/vip"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// TypeName is the type's name in the database.
const TypeName = "ip_address"

// Type is the ip_address type. Its instances work in the network namespace
// of the thread that calls Open and Online (resmon's: the host's).
type Type struct{}

// Name is "ip_address".
func (Type) Name() string { return TypeName }

// Open checks the address, the prefix length and that a named interface
// exists.
func (Type) Open(name string, props resources.Props, log *slog.Logger) (resources.Instance, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bad := func(prop, format string, args ...any) error {
		return fmt.Errorf("%s %s: property %s: %s", TypeName, name, prop, fmt.Sprintf(format, args...))
	}
	s := props.Str("address", "")
	if s == "" {
		return nil, bad("address", "required")
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return nil, bad("address", "%v", err)
	}
	addr = addr.Unmap()
	if addr.IsUnspecified() || addr.IsMulticast() || addr.IsLoopback() || addr.Zone() != "" {
		return nil, bad("address", "%s is not a unicast address", addr)
	}
	bits := props.Int("prefix_len", 0)
	if bits < 0 || bits > int64(addr.BitLen()) {
		return nil, bad("prefix_len", "%d is out of 0..%d", bits, addr.BitLen())
	}
	ifname := props.Str("interface", "")
	if ifname != "" {
		if _, err := net.InterfaceByName(ifname); err != nil {
			return nil, bad("interface", "%v", err)
		}
	}
	return &instance{
		name: name, log: log, fails: make(chan error, 1),
		cfg: vip.Config{Addr: addr, Bits: int(bits), Interface: ifname, NoProbe: !props.Bool("probe", false), Logger: log},
	}, nil
}

type instance struct {
	name  string
	cfg   vip.Config
	log   *slog.Logger
	fails chan error

	mu      sync.Mutex
	epoch   uint64 // bumped by every Terminate and Offline
	onlined bool   // Online was called
	addr    *vip.Address
	ann     *announce.Announcer
	watch   *linkwatch.Watcher
}

// Online adds the address (probing first when probe is set), watches its
// link and starts the announcements. It runs in the calling thread's
// network namespace.
func (i *instance) Online(ctx context.Context) error {
	i.mu.Lock()
	if i.addr != nil {
		i.mu.Unlock()
		return i.LooksAlive()
	}
	ep := i.epoch
	i.onlined = true
	select {
	case <-i.fails: // a stale failure of an earlier run
	default:
	}
	i.mu.Unlock()
	a, err := vip.Online(ctx, i.cfg)
	if err != nil {
		return err
	}
	w, err := linkwatch.Watch(linkwatch.Config{Interface: a.Interface().Name, Addrs: []netip.Addr{i.cfg.Addr}, Logger: i.log})
	if err != nil {
		a.Offline()
		return err
	}
	ann, err := announce.Start(a.Interface(), i.cfg.Addr, announce.Config{Present: a.Present, Logger: i.log})
	if err != nil {
		w.Close()
		a.Offline()
		return err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.epoch != ep {
		ann.Stop()
		w.Close()
		a.Offline()
		return errors.New("terminated while coming online")
	}
	i.addr, i.ann, i.watch = a, ann, w
	go i.forward(w)
	return nil
}

// forward turns the link watch's reports into failures.
func (i *instance) forward(w *linkwatch.Watcher) {
	for e := range w.Events() {
		switch e.Kind {
		case linkwatch.CarrierLost, linkwatch.LinkDown, linkwatch.LinkGone, linkwatch.AddrGone, linkwatch.Failed:
			select {
			case i.fails <- errors.New(e.String()):
			default:
			}
		}
	}
}

// down stops the announcer ("goodbye": nothing more is announced), the
// watch, and removes the address.
func (i *instance) down() error {
	i.mu.Lock()
	i.epoch++
	a, ann, w := i.addr, i.ann, i.watch
	i.addr, i.ann, i.watch = nil, nil, nil
	i.mu.Unlock()
	if a == nil {
		return nil
	}
	ann.Stop()
	w.Close()
	return a.Offline()
}

// Offline stops announcing and removes the address.
func (i *instance) Offline(context.Context) error { return i.down() }

// Terminate is Offline: both are quick. An instance never brought online
// here removes the address if it is on its interface: a previous resmon
// left it (resmon terminates what its predecessor recorded).
func (i *instance) Terminate() {
	i.mu.Lock()
	fresh := i.addr == nil && !i.onlined
	i.mu.Unlock()
	if fresh {
		switch left, err := vip.Remove(i.cfg); {
		case err != nil:
			i.log.Error("terminate", "err", err)
		case left:
			i.log.Warn("terminate: removed the address a previous resmon left", "addr", i.cfg.Addr.String())
		}
		return
	}
	if err := i.down(); err != nil {
		i.log.Error("terminate", "err", err)
	}
}

// LooksAlive: the address is still on its interface.
func (i *instance) LooksAlive() error {
	i.mu.Lock()
	a := i.addr
	i.mu.Unlock()
	if a == nil {
		return errors.New("not online")
	}
	ok, err := a.Present()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("address %s is no longer on %s", a.Prefix(), a.Interface().Name)
	}
	return nil
}

// IsAlive is LooksAlive (the link watch reports the rest as it happens).
func (i *instance) IsAlive(context.Context) error { return i.LooksAlive() }

// Failures reports carrier loss, the link down or gone, the address removed.
func (i *instance) Failures() <-chan error { return i.fails }

// Close takes the address away if it is still there.
func (i *instance) Close() { i.Terminate() }
