package quorumdisk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

// Default timings (DESIGN.md §6; docs/quorum-disk.md "Timings").
const (
	DefaultTick                = 100 * time.Millisecond
	DefaultQuorumCheckInterval = time.Second
	DefaultDefenceDelay        = 2500 * time.Millisecond
	DefaultCommandTimeout      = 2 * time.Second
)

// ReservationType is the type of the quorum reservation.
const ReservationType = scsi.WriteExclusiveRegistrantsOnly

// Errors Driver.Run returns.
var (
	// ErrLost: another node holds the quorum disk and defended it.
	ErrLost = errors.New("quorumdisk: lost the arbitration")
	// ErrLostQuorum: this node owned the quorum disk and lost it; it must
	// self-fence (take every resource offline and stop).
	ErrLostQuorum = errors.New("quorumdisk: lost quorum")
)

// DriverConfig configures a Driver. Zero fields take defaults.
type DriverConfig struct {
	ClusterTag uint32
	Node       uint32
	Members    []uint32
	// Tick is the arbiter's tick; the intervals below are rounded up to it.
	Tick                time.Duration
	QuorumCheckInterval time.Duration
	DefenceDelay        time.Duration
	// CommandTimeout bounds each disk command; keep it below DefenceDelay.
	CommandTimeout time.Duration
	Logger         *slog.Logger
	// OnEvent, if set, is called on Run's goroutine with every event.
	OnEvent func(Event)
	// Now and NewTicker replace the clock (tests); time.Now and
	// time.NewTicker by default.
	Now       func() time.Time
	NewTicker func(time.Duration) (<-chan time.Time, func())
}

// Driver runs an Arbiter on a scsi.Device with real timers.
type Driver struct {
	dev     scsi.Device
	cfg     DriverConfig
	arb     *Arbiter
	log     *slog.Logger
	recheck chan struct{}
	members chan []uint32
	noAbort bool // the target refused PREEMPT AND ABORT once
}

// NewDriver returns a driver for the quorum LUN dev.
func NewDriver(dev scsi.Device, cfg DriverConfig) *Driver {
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.QuorumCheckInterval <= 0 {
		cfg.QuorumCheckInterval = DefaultQuorumCheckInterval
	}
	if cfg.DefenceDelay <= 0 {
		cfg.DefenceDelay = DefaultDefenceDelay
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewTicker == nil {
		cfg.NewTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	ticks := func(d time.Duration) int { return int((d + cfg.Tick - 1) / cfg.Tick) }
	arb := NewArbiter(ArbiterConfig{ClusterTag: cfg.ClusterTag, Node: cfg.Node, Members: cfg.Members,
		CheckTicks: ticks(cfg.QuorumCheckInterval), DefenceTicks: ticks(cfg.DefenceDelay)})
	return &Driver{dev: dev, cfg: cfg, arb: arb, recheck: make(chan struct{}, 1), members: make(chan []uint32, 1),
		log: cfg.Logger.With("node", cfg.Node, "key", fmt.Sprintf("0x%016x", arb.Key()))}
}

// Key is this node's reservation key.
func (d *Driver) Key() uint64 { return d.arb.Key() }

// Recheck makes the owner check its reservation now (a write of its failed
// with RESERVATION CONFLICT). Safe from any goroutine.
func (d *Driver) Recheck() {
	select {
	case d.recheck <- struct{}{}:
	default:
	}
}

// SetMembership changes the membership. Safe from any goroutine.
func (d *Driver) SetMembership(ids []uint32) {
	for {
		select {
		case d.members <- append([]uint32(nil), ids...):
			return
		default:
		}
		select {
		case <-d.members:
		default:
		}
	}
}

// Run arbitrates for the quorum disk and, once it owns it, holds it: it
// re-checks the reservation every QuorumCheckInterval and removes the keys
// of nodes outside the membership. It returns ErrLost when another node
// owns the disk, an error wrapping ErrLostQuorum when this node lost it,
// and ctx's error when ctx ends (the reservation stays).
func (d *Driver) Run(ctx context.Context) error {
	tick, stop := d.cfg.NewTicker(d.cfg.Tick)
	defer stop()
	start := d.cfg.Now()
	d.arb.Start()
	for {
		if err := d.drain(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			// Ticks follow the clock, also across commands that took
			// longer than a tick.
			due := uint64(d.cfg.Now().Sub(start) / d.cfg.Tick)
			for d.arb.Now() < due {
				d.arb.Tick()
				if err := d.drain(ctx); err != nil {
					return err
				}
			}
		case <-d.recheck:
			d.arb.Recheck()
		case m := <-d.members:
			d.arb.SetMembership(m)
		}
	}
}

// drain issues the arbiter's commands one by one and reports its events
// until it has nothing more to do.
func (d *Driver) drain(ctx context.Context) error {
	for {
		rd := d.arb.Ready()
		for _, ev := range rd.Events {
			d.log.Info("quorum "+ev.Kind.String(), "tick", ev.Tick, "other", fmt.Sprintf("0x%016x", ev.Key), "reason", ev.Reason)
			if d.cfg.OnEvent != nil {
				d.cfg.OnEvent(ev)
			}
			switch ev.Kind {
			case EventLost:
				return fmt.Errorf("%w: %s", ErrLost, ev.Reason)
			case EventLostQuorum:
				return fmt.Errorf("%w: %s", ErrLostQuorum, ev.Reason)
			}
		}
		if rd.Command == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		res := d.exec(ctx, *rd.Command)
		if res.Outcome == Failed {
			d.log.Warn("quorum disk command failed", "op", res.Op.String(), "err", res.Err)
		}
		if err := d.arb.Step(res); err != nil {
			return err
		}
	}
}

// exec issues one command.
func (d *Driver) exec(ctx context.Context, c Command) Result {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CommandTimeout)
	defer cancel()
	r := Result{Op: c.Op}
	var err error
	switch c.Op {
	case OpRegister:
		err = scsi.RegisterAndIgnore(ctx, d.dev, c.Key)
	case OpReadReservation:
		var rs scsi.Reservation
		if rs, err = scsi.ReadReservation(ctx, d.dev); err == nil {
			r.Reserved, r.Holder = rs.Held, rs.Key
		}
	case OpReadKeys:
		var ks scsi.Keys
		if ks, err = scsi.ReadKeys(ctx, d.dev); err == nil {
			r.Keys = ks.Keys
		}
	case OpReserve:
		err = scsi.Reserve(ctx, d.dev, c.Key, ReservationType)
	case OpPreempt:
		err = d.preempt(ctx, c.Key, c.Victim)
	default:
		err = fmt.Errorf("unknown op %d", c.Op)
	}
	switch {
	case err == nil:
		r.Outcome = OK
	case errors.Is(err, scsi.ErrReservationConflict):
		r.Outcome = Conflict
	default:
		r.Outcome, r.Err = Failed, err.Error()
	}
	return r
}

// preempt issues PREEMPT AND ABORT, or PREEMPT on a target that refused it:
// tgt 1.0.85 answers INVALID FIELD IN CDB (24/00); a refused command was not
// executed, so PREEMPT is a safe second try (it fences the victim the same
// way; only its commands in flight are not aborted).
func (d *Driver) preempt(ctx context.Context, key, victim uint64) error {
	if !d.noAbort {
		err := scsi.PreemptAndAbort(ctx, d.dev, key, victim, ReservationType)
		if !invalidFieldInCDB(err) {
			return err
		}
		d.noAbort = true
		d.log.Warn("the target refused PREEMPT AND ABORT (INVALID FIELD IN CDB); using PREEMPT from now on")
	}
	return scsi.Preempt(ctx, d.dev, key, victim, ReservationType)
}

func invalidFieldInCDB(err error) bool {
	var se *scsi.SenseError
	return errors.As(err, &se) && se.Status == scsi.StatusCheckCondition &&
		se.Key == scsi.SenseIllegalRequest && se.ASC == 0x24 && se.ASCQ == 0x00
}
