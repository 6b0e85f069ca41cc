package daemon

import (
	"context"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/core"
	"github.com/wolfpack-ha/wolfpack/internal/resmon"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// Resmon configures the resource monitor clusterd starts and supervises
// (docs/resources.md, "resmon").
type Resmon struct {
	// Path is the resmon binary; empty: no resources here (the failover
	// manager does not run).
	Path string
	// Watchdog is a watchdog device resmon pets while its lease is valid
	// (empty: none); StateDir where it records the processes it started.
	Watchdog string
	StateDir string
}

func (r Resmon) args() []string {
	var a []string
	if r.Watchdog != "" {
		a = append(a, "-watchdog", r.Watchdog)
	}
	if r.StateDir != "" {
		a = append(a, "-state-dir", r.StateDir)
	}
	return a
}

// Resmon restart backoff.
const (
	resmonBackoff    = 100 * time.Millisecond
	resmonBackoffMax = 5 * time.Second
	// drainTimeout bounds a planned stop's drain.
	drainTimeout = 60 * time.Second
)

// tickRing remembers when (CLOCK_MONOTONIC) each recent tick was taken,
// to turn the core's lease, counted from a tick, into a deadline for
// resmon. A lease is renewed by a disk write issued at a tick within a
// command timeout, far inside the ring.
const tickRing = 1024

type tickTime struct {
	tick int64
	mono int64
}

// tick advances the core by one tick and notes when the tick began: a
// command the core issues at tick N is issued after that.
func (d *Daemon) tick() {
	mono := resmon.Monotonic()
	d.node.Tick()
	now := d.node.Now()
	d.ticks[now%tickRing] = tickTime{tick: now, mono: mono}
}

// noteStart notes tick 0, before the first Tick.
func (d *Daemon) noteStart() {
	d.ticks[0] = tickTime{tick: 0, mono: resmon.Monotonic()}
	d.tick0 = d.cfg.Now()
}

// tickAt is when tick t is due by the clock.
func (d *Daemon) tickAt(t int64) time.Time {
	return d.tick0.Add(time.Duration(t) * d.cfg.Tick)
}

// maxCatchUp is how many ticks past the core's next tick a late loop
// still runs all at once; later than that, it was stopped or starved.
const maxCatchUp = 4

// advance runs the ticks due by the clock: every tick up to now, one
// after the other, as a ticker would have delivered them (the core said
// the ones before its NextTick only count). A loop that woke a few ticks
// late (a busy machine) runs them all, so that core time keeps to the
// clock and the heartbeats go out at their rate. One that woke more than
// maxCatchUp ticks after the core's next tick (the process was stopped or
// starved) runs the ticks up to that one only and moves tick 0 so that it
// is due now: the rest of the stall is dropped, as a ticker drops the
// ticks its reader missed, rather than run all at once before the inputs
// that queued meanwhile.
func (d *Daemon) advance() {
	now := d.cfg.Now()
	target := int64(now.Sub(d.tick0) / d.cfg.Tick)
	if target <= d.node.Now() {
		return
	}
	if next := d.node.NextTick(); target > next+maxCatchUp {
		target = next
		d.tick0 = now.Add(-time.Duration(next) * d.cfg.Tick)
	}
	d.node.SetClock(now.UnixMilli(), now.Local().Hour())
	for d.node.Now() < target {
		d.tick()
	}
}

// leaseDeadline is the CLOCK_MONOTONIC deadline of a lease counted from
// tick from: the time that tick was taken plus the lease. A tick no
// longer remembered gives no lease at all.
func (d *Daemon) leaseDeadline(l core.Lease) int64 {
	t := d.ticks[l.From%tickRing]
	if t.tick != l.From || t.mono == 0 {
		return 0
	}
	return t.mono + int64(l.Ticks)*int64(d.cfg.Tick)
}

// resmonReady carries out the failover manager's part of the core's
// Ready: commands and the lease to resmon, events to the log.
func (d *Daemon) resmonReady(rd core.Ready) {
	if rd.Lease != nil {
		d.lease = 0
		if !rd.Lease.Revoke {
			d.lease = d.leaseDeadline(*rd.Lease)
		}
		if d.rm != nil {
			if err := d.rm.SetLease(d.lease); err != nil {
				d.log.Warn("resmon: lease", "err", err)
			}
		}
	}
	for _, c := range rd.Resources {
		if d.rm == nil {
			continue // the manager hears ResmonDown / ResmonUp
		}
		if err := d.rm.Send(c); err != nil {
			d.log.Warn("resmon: command", "command", c.String(), "err", err)
		}
	}
	for _, e := range rd.Failover {
		d.failoverEvent(e)
	}
}

func (d *Daemon) failoverEvent(e resources.Event) {
	d.noteFailover(e)
	args := []any{}
	if e.Group != "" {
		args = append(args, "group", e.Group)
	}
	if e.Resource != "" {
		args = append(args, "resource", e.Resource)
	}
	if e.Node != 0 {
		args = append(args, "peer", int(e.Node))
	}
	if e.Count != 0 {
		args = append(args, "count", e.Count)
	}
	if e.Ticks != 0 {
		args = append(args, "ms", e.Ticks*d.cfg.Tick.Milliseconds())
	}
	if e.Reason != "" {
		args = append(args, "reason", e.Reason)
	}
	switch e.Kind {
	case resources.EventResourceFailed, resources.EventGroupFailed, resources.EventProposalFailed, resources.EventNodeObject:
		d.log.Warn(e.Kind.String(), args...)
	default:
		d.log.Info(e.Kind.String(), args...)
	}
}

// superviseResmon runs resmon until ctx ends, restarting it when it
// exits; the core hears ResmonUp and ResmonDown on the loop.
func (d *Daemon) superviseResmon(ctx context.Context) {
	defer d.wg.Done()
	backoff := resmonBackoff
	for ctx.Err() == nil {
		started := time.Now()
		p, err := resmon.Start(ctx, resmon.Config{Path: d.cfg.Resmon.Path, Args: d.cfg.Resmon.args(),
			Logger: d.log.With("process", "resmon")})
		if err != nil {
			d.log.Error("resmon: start", "err", err)
		} else {
			d.log.Info("resmon started", "pid", p.PID)
			d.post(ctx, func() {
				d.rm = p
				if err := p.SetLease(d.lease); err != nil {
					d.log.Warn("resmon: lease", "err", err)
				}
				d.node.ResmonUp()
			})
			d.forwardStatuses(ctx, p)
			reason := "stopped"
			if err := p.Err(); err != nil {
				reason = err.Error()
			}
			if ctx.Err() != nil {
				return
			}
			d.log.Error("resmon exited", "reason", reason)
			d.post(ctx, func() {
				if d.rm == p {
					d.rm = nil
				}
				d.node.ResmonDown(reason)
			})
		}
		if time.Since(started) > 10*resmonBackoffMax {
			backoff = resmonBackoff
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, resmonBackoffMax)
	}
}

// forwardStatuses hands resmon's reports to the core until resmon exits
// (or ctx ends: then it stops resmon, which terminates everything). The
// reports' channel closes when the connection ends, usually before the
// exit is seen: from then on it is not read (a closed channel would hand
// out zero reports forever and the exit would never be noticed).
func (d *Daemon) forwardStatuses(ctx context.Context, p *resmon.Process) {
	statuses := p.Statuses()
	for {
		select {
		case s, ok := <-statuses:
			if !ok {
				statuses = nil
				continue
			}
			d.post(ctx, func() { d.node.StepResource(s) })
		case <-p.Done():
			for {
				select {
				case s, ok := <-statuses:
					if !ok {
						return
					}
					d.post(ctx, func() { d.node.StepResource(s) })
				default:
					return
				}
			}
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := p.Stop(sctx); err != nil {
				d.log.Warn("resmon: stop", "err", err)
			}
			cancel()
			return
		}
	}
}

// post runs f on the loop (and flushes), unless ctx ends first.
func (d *Daemon) post(ctx context.Context, f func()) {
	select {
	case d.calls <- f:
	case <-ctx.Done():
	case <-d.stopped:
	}
}
