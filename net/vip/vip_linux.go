package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/wolfpack-ha/wolfpack/net/announce"
	"golang.org/x/sys/unix"
)

// Config describes one virtual address.
type Config struct {
	// Addr is the address.
	Addr netip.Addr
	// Bits is the prefix length; 0 takes the length of the subnet that
	// holds Addr (the route found, or an address already on the
	// interface), else /32 or /128.
	Bits int
	// Interface names the interface; "" finds the one whose subnet (a
	// link-scope route in the main table) holds Addr, the longest prefix
	// winning.
	Interface string
	// Label is the IPv4 address label (default "<interface>:wp", cut to
	// the kernel's 15 bytes); it must start with the interface's name.
	Label string
	// Probe sets the duplicate check; NoProbe skips it.
	Probe   announce.ProbeConfig
	NoProbe bool
	// Logger (nil: discard).
	Logger *slog.Logger
}

// ErrPresent is matched (errors.Is) by a *PresentError.
var ErrPresent = errors.New("vip: address already present on another interface")

// PresentError says the address is already on another interface of the host.
type PresentError struct {
	Addr      netip.Addr
	Interface string // where it is
	Wanted    string // where it was to go
}

func (e *PresentError) Error() string {
	return fmt.Sprintf("address %s is already on %s of this host (wanted on %s)", e.Addr, e.Interface, e.Wanted)
}

func (e *PresentError) Is(target error) bool { return target == ErrPresent }

// Address is a virtual address this package put online.
type Address struct {
	ifi    *net.Interface
	prefix netip.Prefix
	log    *slog.Logger

	mu      sync.Mutex
	h       *netlink.Handle
	link    netlink.Link
	nladdr  *netlink.Addr
	offline bool
}

// Online finds the interface, refuses an address already elsewhere on the
// host, probes the segment (announce.Probe) and adds the address. It runs in
// the network namespace of the calling thread. Announcing is the caller's
// next step (announce.Start with Present as its check).
func Online(ctx context.Context, cfg Config) (*Address, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addr := cfg.Addr.Unmap()
	if !addr.IsValid() || addr.IsUnspecified() || addr.IsMulticast() || addr.IsLoopback() {
		return nil, fmt.Errorf("vip: bring %v online: not a unicast address", cfg.Addr)
	}
	start := time.Now()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("vip: bring %s online: open netlink: %w", addr, err)
	}
	a, err := online(ctx, h, addr, cfg, log, cfg.Logger)
	if err != nil {
		h.Close()
		return nil, err
	}
	a.log.Info("address online", "took", time.Since(start), "probed", !cfg.NoProbe)
	return a, nil
}

// Remove takes cfg's address off cfg's interface (found as Online finds
// it) if it is there, without an Address from Online: what a process that
// died left behind. It reports whether the address was there.
func Remove(cfg Config) (bool, error) {
	addr := cfg.Addr.Unmap()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return false, fmt.Errorf("vip: remove %s: open netlink: %w", addr, err)
	}
	defer h.Close()
	link, _, err := findLink(h, addr, cfg.Interface)
	if err != nil {
		return false, fmt.Errorf("vip: remove %s: %w", addr, err)
	}
	present, err := h.AddrList(link, family(addr))
	if err != nil {
		return false, fmt.Errorf("vip: remove %s: list addresses of %s: %w", addr, link.Attrs().Name, err)
	}
	for _, pa := range present {
		if ip, ok := netip.AddrFromSlice(pa.IP); !ok || ip.Unmap() != addr {
			continue
		}
		if err := h.AddrDel(link, &pa); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return false, fmt.Errorf("vip: remove %s from %s: the kernel said: %w", addr, link.Attrs().Name, err)
		}
		return true, nil
	}
	return false, nil
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// online does Online's work; probeLog is the caller's logger, for Probe to
// add the interface and address to itself.
func online(ctx context.Context, h *netlink.Handle, addr netip.Addr, cfg Config, log, probeLog *slog.Logger) (*Address, error) {
	link, bits, err := findLink(h, addr, cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("vip: bring %s online: %w", addr, err)
	}
	attrs := link.Attrs()
	if cfg.Bits > 0 {
		bits = cfg.Bits
	}
	if bits <= 0 || bits > addr.BitLen() {
		bits = addr.BitLen()
	}
	prefix := netip.PrefixFrom(addr, bits)
	log = log.With("interface", attrs.Name, "addr", prefix.String())

	// Already on the host? On our interface it is ours to adopt; anywhere
	// else it is refused.
	present, err := h.AddrList(nil, family(addr))
	if err != nil {
		return nil, fmt.Errorf("vip: bring %s online: list addresses: %w", prefix, err)
	}
	for _, pa := range present {
		if ip, ok := netip.AddrFromSlice(pa.IP); !ok || ip.Unmap() != addr {
			continue
		}
		if pa.LinkIndex != attrs.Index {
			where := fmt.Sprintf("ifindex %d", pa.LinkIndex)
			if l, err := h.LinkByIndex(pa.LinkIndex); err == nil {
				where = l.Attrs().Name
			}
			return nil, fmt.Errorf("vip: bring %s online: %w", prefix, &PresentError{Addr: addr, Interface: where, Wanted: attrs.Name})
		}
		log.Info("address already on the interface: adopted")
		return newAddress(h, link, pa, prefix, log), nil
	}
	if attrs.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("vip: bring %s online: interface %s is down", prefix, attrs.Name)
	}
	ifi := iface(link)
	if !cfg.NoProbe {
		if err := announce.Probe(ctx, ifi, addr, cfg.Probe, probeLog); err != nil {
			return nil, fmt.Errorf("vip: bring %s online: %w", prefix, err)
		}
	}
	na := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(bits, addr.BitLen())}}
	if addr.Is4() {
		na.Label = cfg.Label
		if na.Label == "" {
			na.Label = attrs.Name + ":wp"
		}
		if len(na.Label) > 15 {
			na.Label = na.Label[:15]
		}
	} else {
		// Our own DAD just passed: no second one by the kernel, whose
		// tentative state would keep the address unusable for a second.
		na.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(link, na); err != nil {
		return nil, fmt.Errorf("vip: add %s to %s: the kernel said: %w", prefix, attrs.Name, err)
	}
	a := newAddress(h, link, *na, prefix, log)
	if err := waitLocal(ctx, h, addr); err != nil {
		a.Offline()
		return nil, fmt.Errorf("vip: add %s to %s: %w", prefix, attrs.Name, err)
	}
	return a, nil
}

// waitLocal waits until the kernel delivers packets to addr locally. For
// IPv6 the local route is inserted by the address's DAD work, which runs
// on a kernel workqueue after RTM_NEWADDR returns even with IFA_F_NODAD:
// announcing before it would send clients to a host that drops their
// packets. For IPv4 the route is there when the add returns.
func waitLocal(ctx context.Context, h *netlink.Handle, addr netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, localTimeout)
	defer cancel()
	for {
		rs, err := h.RouteGet(addr.AsSlice())
		if err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("the kernel made no local route for it within %v (route lookup: %w)", localTimeout, err)
			}
			return fmt.Errorf("the kernel made no local route for it within %v", localTimeout)
		case <-time.After(time.Millisecond):
		}
	}
}

// localTimeout bounds waitLocal: the workqueue runs in microseconds.
const localTimeout = 2 * time.Second

func newAddress(h *netlink.Handle, link netlink.Link, na netlink.Addr, prefix netip.Prefix, log *slog.Logger) *Address {
	return &Address{ifi: iface(link), prefix: prefix, log: log, h: h, link: link, nladdr: &na}
}

func iface(link netlink.Link) *net.Interface {
	a := link.Attrs()
	return &net.Interface{Index: a.Index, MTU: a.MTU, Name: a.Name, HardwareAddr: a.HardwareAddr, Flags: a.Flags}
}

// findLink returns the interface named, or the one whose subnet holds addr,
// and the length of that subnet (0 if unknown).
func findLink(h *netlink.Handle, addr netip.Addr, name string) (netlink.Link, int, error) {
	if name != "" {
		link, err := h.LinkByName(name)
		if err != nil {
			return nil, 0, fmt.Errorf("interface %s: %w", name, err)
		}
		bits := 0
		if as, err := h.AddrList(link, family(addr)); err == nil {
			for _, a := range as {
				if p, ok := prefixOf(a.IPNet); ok && p.Contains(addr) && p.Bits() > bits {
					bits = p.Bits()
				}
			}
		}
		return link, bits, nil
	}
	routes, err := h.RouteListFiltered(family(addr), &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, 0, fmt.Errorf("list routes: %w", err)
	}
	best, bits := -1, -1
	for _, r := range routes {
		p, ok := prefixOf(r.Dst)
		if !ok || r.LinkIndex <= 0 || r.Gw != nil || p.Bits() == 0 || !p.Contains(addr) || p.Bits() <= bits {
			continue
		}
		best, bits = r.LinkIndex, p.Bits()
	}
	if best < 0 {
		return nil, 0, fmt.Errorf("no interface has a subnet holding %s: name the interface", addr)
	}
	link, err := h.LinkByIndex(best)
	if err != nil {
		return nil, 0, fmt.Errorf("interface %d (route to %s): %w", best, addr, err)
	}
	return link, bits, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones).Masked(), true
}

// Interface is the interface the address is on.
func (a *Address) Interface() *net.Interface { return a.ifi }

// Prefix is the address with its prefix length.
func (a *Address) Prefix() netip.Prefix { return a.prefix }

// Present says whether the address is still on its interface; false once
// Offline was called. Safe from any goroutine (announce.Config.Present).
func (a *Address) Present() (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.offline {
		return false, nil
	}
	return a.present()
}

func (a *Address) present() (bool, error) {
	as, err := a.h.AddrList(a.link, family(a.prefix.Addr()))
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", a.ifi.Name, err)
	}
	for _, x := range as {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a.prefix.Addr() {
			return true, nil
		}
	}
	return false, nil
}

// Offline removes the address (already gone is not an error) and releases
// the netlink handle. Stop its announcer first.
func (a *Address) Offline() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.offline {
		return nil
	}
	a.offline = true
	defer a.h.Close()
	err := a.h.AddrDel(a.link, a.nladdr)
	if err != nil && (errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, os.ErrNotExist)) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("vip: remove %s from %s: the kernel said: %w", a.prefix, a.ifi.Name, err)
	}
	a.log.Info("address offline")
	return nil
}
