package daemon

import (
	"context"

	"github.com/wolfpack-ha/wolfpack/internal/core"
	"github.com/wolfpack-ha/wolfpack/internal/quorumio"
)

// The disk worker executes the core's disk commands one at a time, in the
// order the core issued them, with internal/quorumio, and hands every
// result back to the loop. It decides nothing.

// openDisk reads the superblock before anything else: the LUN must be a
// formatted quorum disk of this cluster's tag.
func (d *Daemon) openDisk(ctx context.Context) error {
	c, cancel := context.WithTimeout(ctx, 2*d.cfg.CommandTimeout)
	defer cancel()
	e, err := quorumio.Open(c, d.cfg.Device, d.cfg.ClusterTag, uint32(d.cfg.Self))
	if err != nil {
		return err
	}
	e.Timeout, e.Incarnation, e.Now = d.cfg.CommandTimeout, d.inc, d.cfg.Now
	e.Logger = d.log
	for _, n := range d.cfg.Nodes {
		e.Nodes = max(e.Nodes, uint32(n.ID))
	}
	d.exec = e
	return nil
}

func (d *Daemon) submit(c core.DiskCommand) {
	select {
	case d.jobs <- c:
	default:
		// The queue is full: the disk is stuck. The command fails at once
		// (the core treats it like a timeout); never block the loop.
		d.log.Warn("disk queue full: failing command", "command", c.String())
		r := core.DiskResult{ID: c.ID, Op: c.Op, Outcome: core.Failed, Err: "disk queue full"}
		select {
		case d.results <- r:
		default:
			go func() {
				select {
				case d.results <- r:
				case <-d.stopped:
				}
			}()
		}
	}
}

func (d *Daemon) worker(ctx context.Context) {
	defer d.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-d.jobs:
			r := d.exec.Exec(ctx, c)
			if r.Outcome != core.OK {
				d.log.Debug("disk command", "command", c.String(), "result", r.String())
			}
			select {
			case d.results <- r:
			case <-ctx.Done():
				return
			}
		}
	}
}
