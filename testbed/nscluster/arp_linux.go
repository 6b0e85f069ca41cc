package nscluster

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/packet"

	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// ARPFrame is one ARP frame the client's interface saw.
type ARPFrame struct {
	At time.Time
	// Source is the Ethernet source address; Outgoing says the client
	// sent it.
	Source   net.HardwareAddr
	Outgoing bool
	Op       arp.Operation
	// SenderMAC/SenderIP and TargetMAC/TargetIP are the ARP payload's.
	SenderMAC net.HardwareAddr
	SenderIP  netip.Addr
	TargetMAC net.HardwareAddr
	TargetIP  netip.Addr
}

func (f ARPFrame) String() string {
	dir := "in"
	if f.Outgoing {
		dir = "out"
	}
	return fmt.Sprintf("%s %s op=%d %s is-at %s (target %s %s)", f.At.Format("15:04:05.000000"), dir, f.Op,
		f.SenderIP, f.SenderMAC, f.TargetIP, f.TargetMAC)
}

// ARPCapture records every ARP frame on the client namespace's eth0 (a
// packet socket, as tcpdump's).
type ARPCapture struct {
	conn   *packet.Conn
	mac    net.HardwareAddr
	wg     sync.WaitGroup
	once   sync.Once
	closed atomic.Bool

	mu      sync.Mutex
	frames  []ARPFrame
	errs    int
	lastErr error
}

// CaptureARP starts recording the ARP frames on the client's interface;
// Close (also the rig's Close) stops it.
func (c *Cluster) CaptureARP() (*ARPCapture, error) {
	a := &ARPCapture{}
	err := netns.Visit(c.ClientNS, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		a.mac = ifi.HardwareAddr
		a.conn, err = packet.Listen(ifi, packet.Raw, 0x0806, nil) // ETH_P_ARP
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nscluster: ARP capture in %s: %w", c.ClientNS, err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		a.conn.Close()
		return nil, errors.New("nscluster: rig closed")
	}
	c.closers = append(c.closers, a.Close)
	c.mu.Unlock()
	a.wg.Add(1)
	go a.read()
	return a, nil
}

func (a *ARPCapture) read() {
	defer a.wg.Done()
	buf := make([]byte, 1600)
	for {
		n, _, err := a.conn.ReadFrom(buf)
		now := time.Now()
		if err != nil {
			if a.closed.Load() || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			a.mu.Lock()
			a.errs++
			a.lastErr = err
			a.mu.Unlock()
			time.Sleep(time.Millisecond)
			continue
		}
		if n < 14 {
			continue
		}
		var p arp.Packet
		if err := p.UnmarshalBinary(buf[14:n]); err != nil {
			continue
		}
		src := net.HardwareAddr(append([]byte(nil), buf[6:12]...))
		f := ARPFrame{At: now, Source: src, Outgoing: src.String() == a.mac.String(), Op: p.Operation,
			SenderMAC: p.SenderHardwareAddr, SenderIP: p.SenderIP, TargetMAC: p.TargetHardwareAddr, TargetIP: p.TargetIP}
		a.mu.Lock()
		a.frames = append(a.frames, f)
		a.mu.Unlock()
	}
}

// Close stops the capture.
func (a *ARPCapture) Close() error {
	a.once.Do(func() {
		a.closed.Store(true)
		a.conn.Close()
		a.wg.Wait()
	})
	return nil
}

// Err returns the number of failed reads and the last error.
func (a *ARPCapture) Err() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.errs, a.lastErr
}

// Frames returns every frame so far.
func (a *ARPCapture) Frames() []ARPFrame {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]ARPFrame(nil), a.frames...)
}

// Claims returns the frames, not the client's own, in which a host says
// ip is at its MAC (a reply, or a request whose sender is ip: a
// gratuitous ARP), received at or after since.
func (a *ARPCapture) Claims(ip netip.Addr, since time.Time) []ARPFrame {
	var out []ARPFrame
	for _, f := range a.Frames() {
		if !f.Outgoing && f.SenderIP == ip && !f.At.Before(since) {
			out = append(out, f)
		}
	}
	return out
}
