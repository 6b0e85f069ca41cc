package nscluster

import (
	"errors"
	"net/netip"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/probe"
)

// The client's prober is package testbed/probe's, shared with the QEMU
// matrix (testbed/matrix).
type (
	// Reply is one answer of testbed/probe/echo to the Prober.
	Reply = probe.Reply
	// Prober sends a datagram with a sequence number every Interval.
	Prober = probe.Prober
	// Outage is the longest silence the client saw around an event.
	Outage = probe.Outage
)

// StartProber starts a Prober of target from the client namespace; Close
// (also at t's cleanup, through the rig's Close) stops it.
func (c *Cluster) StartProber(target netip.AddrPort, interval time.Duration) (*Prober, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, errors.New("nscluster: rig closed")
	}
	p, err := probe.Start(c.ClientNS, target, interval)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		p.Close()
		return nil, errors.New("nscluster: rig closed")
	}
	c.closers = append(c.closers, p.Close)
	c.mu.Unlock()
	return p, nil
}
