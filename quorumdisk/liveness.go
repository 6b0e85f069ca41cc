package quorumdisk

import "context"

// DiskLiveness tells, from successive reads of the heartbeat slots, which
// nodes are still beating on the disk: the last path that tells
// "partitioned" from "dead" (docs/design.md, "The disk as the last heartbeat
// path"). It is a deterministic state
// machine: the caller reads the slots (Disk.ReadHeartbeats) and ticks it.
type DiskLiveness struct {
	timeout uint64
	now     uint64
	slots   [MaxNodes]struct {
		seen        bool
		counter     uint64
		incarnation uint64
		changed     bool
		at          uint64 // tick of the last change
	}
}

// NewDiskLiveness returns a tracker that considers a node alive while its
// slot changed within timeoutTicks ticks.
func NewDiskLiveness(timeoutTicks int) *DiskLiveness {
	return &DiskLiveness{timeout: uint64(max(1, timeoutTicks))}
}

// Tick advances logical time by one tick.
func (l *DiskLiveness) Tick() { l.now++ }

// Observe records a read of the slots (as ReadHeartbeats returns them).
func (l *DiskLiveness) Observe(hs []Heartbeat) {
	for _, h := range hs {
		if h.Node < 1 || h.Node > MaxNodes {
			continue
		}
		s := &l.slots[h.Node-1]
		if !s.seen {
			// The first read is a baseline: a slot must change to count.
			s.seen, s.counter, s.incarnation = true, h.Counter, h.Incarnation
			continue
		}
		if h.Counter != s.counter || h.Incarnation != s.incarnation {
			s.counter, s.incarnation, s.changed, s.at = h.Counter, h.Incarnation, true, l.now
		}
	}
}

// Alive reports whether node's slot changed within the timeout.
func (l *DiskLiveness) Alive(node uint32) bool {
	if node < 1 || node > MaxNodes {
		return false
	}
	s := l.slots[node-1]
	return s.changed && s.at+l.timeout > l.now
}

// Beat increments h's counter and writes it to h.Node's slot, stamped with
// now (Unix nanoseconds) and epoch.
func (d *Disk) Beat(ctx context.Context, h *Heartbeat, now int64, epoch uint64) error {
	h.Counter++
	h.Time, h.Epoch = now, epoch
	return d.WriteHeartbeat(ctx, *h)
}
