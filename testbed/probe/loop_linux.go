package probe

import (
	"net"
	"sync"

	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// inNS runs f in the network namespace ns, or in the caller's when ns is
// "": where the probes open their sockets.
func inNS(ns string, f func() error) error {
	if ns == "" {
		return f()
	}
	return netns.Visit(ns, f)
}

// udpLoop is what a Prober and a NameProber share: a UDP socket, and a
// sender and a receiver goroutine that stop when it closes.
type udpLoop struct {
	conn *net.UDPConn
	stop chan struct{}
	wg   sync.WaitGroup
}

// Close stops the prober (again: no-op).
func (l *udpLoop) Close() error {
	select {
	case <-l.stop:
		return nil
	default:
	}
	close(l.stop)
	l.conn.Close()
	l.wg.Wait()
	return nil
}
