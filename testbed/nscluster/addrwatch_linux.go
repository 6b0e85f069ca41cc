package nscluster

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// AddrChange is a change of an address's presence in one node's namespace
// seen by an AddrWatch: it happened after Prev (the last sample with the
// old state) and at or before At (the first with the new one).
type AddrChange struct {
	Node    int
	Present bool
	Prev    time.Time
	At      time.Time
}

func (c AddrChange) String() string {
	what := "gone"
	if c.Present {
		what = "present"
	}
	return fmt.Sprintf("node%d %s in (%s, %s]", c.Node, what, c.Prev.Format("15:04:05.000000"), c.At.Format("15:04:05.000000"))
}

// AddrWatch samples, every Interval, whether an address is on any
// interface of each of a set of nodes (a netlink address dump in each
// node's namespace), and records each change.
type AddrWatch struct {
	Addr     netip.Addr
	Interval time.Duration

	nodes   []int
	handles []*netlink.Handle
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once

	mu      sync.Mutex
	state   map[int]bool
	last    map[int]time.Time
	changes []AddrChange
	err     error
}

// WatchAddr starts watching addr on nodes; the first sample of each node
// is a change from "gone" (Prev zero) when the address is there. Close
// (also the rig's Close) stops it.
func (c *Cluster) WatchAddr(addr netip.Addr, interval time.Duration, nodes ...int) (*AddrWatch, error) {
	w := &AddrWatch{Addr: addr, Interval: interval, nodes: nodes, stop: make(chan struct{}), done: make(chan struct{}),
		state: map[int]bool{}, last: map[int]time.Time{}}
	for _, i := range nodes {
		ns, err := vnetns.GetFromPath(netns.Dir + "/" + c.Node(i).Netns)
		if err != nil {
			w.closeHandles()
			return nil, fmt.Errorf("nscluster: watch %s on node %d: %w", addr, i, err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			w.closeHandles()
			return nil, fmt.Errorf("nscluster: watch %s on node %d: %w", addr, i, err)
		}
		w.handles = append(w.handles, h)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		w.closeHandles()
		return nil, errors.New("nscluster: rig closed")
	}
	c.closers = append(c.closers, w.Close)
	c.mu.Unlock()
	w.sample()
	go w.run()
	return w, nil
}

func (w *AddrWatch) closeHandles() {
	for _, h := range w.handles {
		h.Close()
	}
}

func (w *AddrWatch) run() {
	defer close(w.done)
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.sample()
		}
	}
}

func (w *AddrWatch) sample() {
	fam := netlink.FAMILY_V4
	if w.Addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	for k, h := range w.handles {
		as, err := h.AddrList(nil, fam)
		now := time.Now()
		node := w.nodes[k]
		w.mu.Lock()
		if err != nil {
			if w.err == nil && !errors.Is(err, unix.EINTR) {
				w.err = fmt.Errorf("node %d: %w", node, err)
			}
			w.mu.Unlock()
			continue
		}
		present := false
		for _, a := range as {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == w.Addr {
				present = true
			}
		}
		if present != w.state[node] {
			w.changes = append(w.changes, AddrChange{Node: node, Present: present, Prev: w.last[node], At: now})
			w.state[node] = present
		}
		w.last[node] = now
		w.mu.Unlock()
	}
}

// Close stops the watch.
func (w *AddrWatch) Close() error {
	w.once.Do(func() {
		close(w.stop)
		<-w.done
		w.closeHandles()
	})
	return nil
}

// Changes returns every change so far, in the order seen, and the first
// error of a sample, if any.
func (w *AddrWatch) Changes() ([]AddrChange, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]AddrChange(nil), w.changes...), w.err
}

// Present reports whether the last sample of node saw the address.
func (w *AddrWatch) Present(node int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state[node]
}

// Overlaps returns the pairs of changes showing the address on two nodes
// at once for certain: one node's address appeared (its first sample with
// it) while another node's was still seen later (a sample with it after
// that one).
func Overlaps(changes []AddrChange) [][2]AddrChange {
	// Each node's presence intervals: [appear.At, gone.Prev] is surely
	// present.
	type span struct {
		from, to time.Time
		a, b     AddrChange
	}
	spans := map[int][]span{}
	open := map[int]AddrChange{}
	for _, c := range changes {
		if c.Present {
			open[c.Node] = c
			continue
		}
		if a, ok := open[c.Node]; ok {
			spans[c.Node] = append(spans[c.Node], span{from: a.At, to: c.Prev, a: a, b: c})
			delete(open, c.Node)
		}
	}
	for n, a := range open {
		spans[n] = append(spans[n], span{from: a.At, to: time.Now(), a: a})
	}
	var out [][2]AddrChange
	for n1, l1 := range spans {
		for n2, l2 := range spans {
			if n1 >= n2 {
				continue
			}
			for _, s1 := range l1 {
				for _, s2 := range l2 {
					if !s1.from.After(s2.to) && !s2.from.After(s1.to) {
						out = append(out, [2]AddrChange{s1.a, s2.a})
					}
				}
			}
		}
	}
	return out
}
