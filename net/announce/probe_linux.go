package announce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/ndp"
)

// ProbeConfig sets the duplicate check. Zero fields take the defaults.
type ProbeConfig struct {
	// Count is the number of probes sent (default 3, RFC 5227's PROBE_NUM;
	// RFC 4862's DupAddrDetectTransmits is 1).
	Count int
	// Interval separates the probes (default 100 ms; RFC 5227 waits 1 to
	// 2 s between probes, made for hosts that boot, not for a failover
	// that clients are waiting on).
	Interval time.Duration
	// Wait is how long replies are awaited after the last probe (default
	// 200 ms; RFC 5227's ANNOUNCE_WAIT is 2 s, RFC 4862's RetransTimer 1 s).
	// On one Ethernet segment a host answers within a millisecond.
	Wait time.Duration
}

// Default probe timing: 3 probes 100 ms apart and 200 ms more: 400 ms.
const (
	DefaultProbeCount    = 3
	DefaultProbeInterval = 100 * time.Millisecond
	DefaultProbeWait     = 200 * time.Millisecond
)

func (c ProbeConfig) withDefaults() ProbeConfig {
	if c.Count <= 0 {
		c.Count = DefaultProbeCount
	}
	if c.Interval <= 0 {
		c.Interval = DefaultProbeInterval
	}
	if c.Wait <= 0 {
		c.Wait = DefaultProbeWait
	}
	return c
}

// ErrInUse is matched (errors.Is) by a *ConflictError.
var ErrInUse = errors.New("announce: address in use by another host")

// ConflictError says another host uses or claims the address.
type ConflictError struct {
	Interface string
	Addr      netip.Addr
	// MAC is the other host's hardware address, as its packet gave it.
	MAC net.HardwareAddr
}

func (e *ConflictError) Error() string {
	how := "answered an ARP probe"
	if e.Addr.Is6() {
		how = "answered duplicate address detection"
	}
	return fmt.Sprintf("address %s on %s is in use by the host with MAC %s (it %s)", e.Addr, e.Interface, e.MAC, how)
}

func (e *ConflictError) Is(target error) bool { return target == ErrInUse }

// Probe checks that no host on ifi's segment uses addr: ARP probes for IPv4
// (RFC 5227 §2.1.1), DAD Neighbor Solicitations from the unspecified address
// for IPv6 (RFC 4862 §5.4.2), listening for an answer until Wait after the
// last one. It returns a *ConflictError naming the other host's MAC if one
// answers. Call it in the network namespace of ifi; addr must not be on the
// host yet (the kernel would answer the probe itself on another interface).
func Probe(ctx context.Context, ifi *net.Interface, addr netip.Addr, cfg ProbeConfig, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	addr = addr.Unmap()
	mac := ifi.HardwareAddr
	if len(mac) != 6 {
		return fmt.Errorf("probe %s on %s: interface has no Ethernet address", addr, ifi.Name)
	}
	var (
		etherType = etherTypeARP
		frame     []byte
		conflict  = arpConflict
		err       error
	)
	if addr.Is4() {
		frame, err = probeFrame(mac, addr)
	} else {
		etherType, conflict = etherTypeIPv6, ndConflict
		frame, err = dadFrame(mac, addr)
	}
	if err != nil {
		return fmt.Errorf("probe %s on %s: build frame: %w", addr, ifi.Name, err)
	}
	c, err := listen(ifi, etherType)
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	// Closing a packet socket waits for an RCU grace period (about 10 ms):
	// not on the way to bringing the address online.
	defer func() { go c.Close() }()
	if addr.Is6() {
		// Hear another host's DAD for the same address.
		group, _ := ndp.SolicitedNodeMulticast(addr)
		if err := joinMAC(c, ifi, group); err != nil {
			return fmt.Errorf("probe %s: %w", addr, err)
		}
	}
	start := time.Now()
	buf := make([]byte, 1600)
	for i := 0; i < cfg.Count; i++ {
		if err := send(c, frame); err != nil {
			return fmt.Errorf("probe %s on %s: send probe %d: %w", addr, ifi.Name, i+1, err)
		}
		until := time.Now().Add(cfg.Interval)
		if i == cfg.Count-1 {
			until = time.Now().Add(cfg.Wait)
		}
		for {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("probe %s on %s: %w", addr, ifi.Name, err)
			}
			dl := until
			if d, ok := ctx.Deadline(); ok && d.Before(dl) {
				dl = d
			}
			if err := c.SetReadDeadline(dl); err != nil {
				return fmt.Errorf("probe %s on %s: %w", addr, ifi.Name, err)
			}
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					if time.Now().Before(until) {
						continue // the context's deadline: checked above
					}
					break
				}
				return fmt.Errorf("probe %s on %s: read: %w", addr, ifi.Name, err)
			}
			if other, ok := conflict(buf[:n], mac, addr); ok {
				log.Warn("address in use", "interface", ifi.Name, "addr", addr, "mac", other.String(), "took", time.Since(start))
				return &ConflictError{Interface: ifi.Name, Addr: addr, MAC: other}
			}
		}
	}
	log.Debug("probe: address free", "interface", ifi.Name, "addr", addr, "probes", cfg.Count, "took", time.Since(start))
	return nil
}
