package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wolfpack-ha/wolfpack/quorumdisk"
	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/scsi"
)

// The quorum arbiter behind regroup's interface (Arbitration,
// ArbitrationDone, Register, Unregister, QuorumLost), with real PERSISTENT
// RESERVE commands: the logic of sim/arbiter.go (docs/membership.md
// "Partition survival"), run by one worker goroutine so that disk I/O never
// delays a tick. Every job returns a closure that the loop runs.

type job struct {
	name string
	ctx  context.Context // nil: the worker's
	run  func(ctx context.Context) func()
}

func (d *Daemon) submit(j job) {
	select {
	case d.jobs <- j:
	default:
		// 64 queued disk jobs means the disk is stuck; the quorum check
		// will notice. Never block the loop.
		d.log.Warn("disk queue full: dropping job", "job", j.name)
	}
}

func (d *Daemon) worker(ctx context.Context) {
	defer d.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-d.jobs:
			jctx := ctx
			if j.ctx != nil {
				jctx = j.ctx
			}
			var f func()
			if jctx.Err() == nil {
				f = j.run(jctx)
			}
			if f == nil {
				continue
			}
			select {
			case d.results <- f:
			case <-ctx.Done():
				return
			}
		}
	}
}

// cmd bounds one disk command by the command timeout.
func (d *Daemon) cmd(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d.cfg.CommandTimeout)
}

func (d *Daemon) readKeys(ctx context.Context) ([]uint64, error) {
	c, cancel := d.cmd(ctx)
	defer cancel()
	k, err := scsi.ReadKeys(c, d.cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	return k.Keys, nil
}

func (d *Daemon) readReservation(ctx context.Context) (scsi.Reservation, error) {
	c, cancel := d.cmd(ctx)
	defer cancel()
	r, err := scsi.ReadReservation(c, d.cfg.Device)
	if err != nil {
		return r, fmt.Errorf("read reservation: %w", err)
	}
	return r, nil
}

func (d *Daemon) registerKey(ctx context.Context, key uint64) error {
	c, cancel := d.cmd(ctx)
	defer cancel()
	if err := scsi.RegisterAndIgnore(c, d.cfg.Device, key); err != nil {
		return fmt.Errorf("register key %#x: %w", key, err)
	}
	return nil
}

func (d *Daemon) reserve(ctx context.Context) error {
	c, cancel := d.cmd(ctx)
	defer cancel()
	if err := scsi.Reserve(c, d.cfg.Device, d.key, quorumdisk.ReservationType); err != nil {
		return fmt.Errorf("reserve: %w", err)
	}
	return nil
}

// preempt removes victim's registrations (and takes the reservation if
// victim holds it) with PREEMPT AND ABORT, or PREEMPT on a target that
// refuses it with INVALID FIELD IN CDB (tgt 1.0.85): a refused command was
// not executed, so the second try is safe.
func (d *Daemon) preempt(ctx context.Context, victim uint64) error {
	c, cancel := d.cmd(ctx)
	defer cancel()
	if !d.diskNoAbort {
		err := scsi.PreemptAndAbort(c, d.cfg.Device, d.key, victim, quorumdisk.ReservationType)
		if !invalidFieldInCDB(err) {
			if err != nil {
				return fmt.Errorf("preempt and abort %#x: %w", victim, err)
			}
			return nil
		}
		d.diskNoAbort = true
		d.log.Warn("the target refused PREEMPT AND ABORT (INVALID FIELD IN CDB); using PREEMPT from now on")
	}
	if err := scsi.Preempt(c, d.cfg.Device, d.key, victim, quorumdisk.ReservationType); err != nil {
		return fmt.Errorf("preempt %#x: %w", victim, err)
	}
	return nil
}

func invalidFieldInCDB(err error) bool {
	var se *scsi.SenseError
	return errors.As(err, &se) && se.Status == scsi.StatusCheckCondition &&
		se.Key == scsi.SenseIllegalRequest && se.ASC == 0x24 && se.ASCQ == 0x00
}

func (d *Daemon) memberKey(k uint64, members regroup.NodeSet) bool {
	tag, node := quorumdisk.KeyNode(k)
	return tag == d.cfg.ClusterTag && members.Has(regroup.NodeID(node))
}

// sleep waits d or until ctx ends.
func (d *Daemon) sleep(ctx context.Context, dur time.Duration) error {
	if dur <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-d.cfg.After(dur):
		return nil
	}
}

// checkDisk reads the superblock before anything else: the LUN must be a
// formatted quorum disk of this cluster's tag.
func (d *Daemon) checkDisk(ctx context.Context) error {
	c, cancel := context.WithTimeout(ctx, 2*d.cfg.CommandTimeout)
	defer cancel()
	blocks, err := quorumdisk.NewSCSIBlocks(c, d.cfg.Device)
	if err != nil {
		return fmt.Errorf("open quorum disk: %w", err)
	}
	disk, err := quorumdisk.Open(c, blocks)
	if err != nil {
		return fmt.Errorf("open quorum disk: %w (format it with 'cluster quorum format')", err)
	}
	if tag := disk.Superblock().ClusterTag; tag != d.cfg.ClusterTag {
		return fmt.Errorf("open quorum disk: its cluster tag is %08x, the configuration's %08x", tag, d.cfg.ClusterTag)
	}
	return nil
}

// startClaim runs an Arbitration on the worker. A newer claim, or a round
// regroup no longer wants (checked after every flush), cancels it.
func (d *Daemon) startClaim(req regroup.Arbitration) {
	if d.claimCancel != nil {
		d.claimCancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.claimRound, d.claimCancel = req.Round, cancel
	d.log.Info("arbitration started", "round", req.Round, "members", ids(req.Members), "class", req.Class.String())
	start := d.cfg.Now()
	d.submit(job{name: "arbitrate", ctx: ctx, run: func(ctx context.Context) func() {
		won, owner, reason := d.claim(ctx, req)
		if ctx.Err() != nil {
			return nil // cancelled: regroup moved on
		}
		return func() {
			if d.claimRound == req.Round {
				d.claimCancel, d.claimRound = nil, 0
			}
			cancel()
			if won {
				d.owner = owner
			}
			d.log.Info("arbitration done", "round", req.Round, "won", won, "reason", reason,
				"ms", d.cfg.Now().Sub(start).Milliseconds())
			d.rg.ArbitrationDone(req.Round, won, reason)
		}
	}})
}

// claim makes req.Members the only registrants (DESIGN §5.3): it waits as
// the class says, preempts every key outside the members and takes the
// reservation if no member holds it. A forming node registers first and,
// once it won, replays the recovery log (DESIGN §5.2 Form).
func (d *Daemon) claim(ctx context.Context, req regroup.Arbitration) (won, owner bool, reason string) {
	if req.Class == regroup.ClassForm {
		if err := d.registerKey(ctx, d.key); err != nil {
			return false, false, err.Error()
		}
	}
	keys, err := d.readKeys(ctx)
	if err != nil {
		return false, false, err.Error()
	}
	if !slices.Contains(keys, d.key) {
		return false, false, "this node's key is not registered: fenced"
	}
	res, err := d.readReservation(ctx)
	if err != nil {
		return false, false, err.Error()
	}
	holder := res.Held && res.Key == d.key
	var wait time.Duration
	switch req.Class {
	case regroup.ClassMajority:
	case regroup.ClassUncontested:
		if !holder {
			wait = d.cfg.DefenceDelay
		}
	case regroup.ClassContested:
		wait = 2 * d.cfg.DefenceDelay
		if holder {
			wait = d.cfg.DefenceDelay
		}
	case regroup.ClassForm:
		if res.Held || len(keys) > 1 {
			wait = d.cfg.FormDelay
		}
	}
	if wait > 0 {
		d.log.Info("arbitration waits", "round", req.Round, "class", req.Class.String(), "ms", wait.Milliseconds(), "holder", holder)
	}
	if err := d.sleep(ctx, wait); err != nil {
		return false, false, err.Error()
	}
	won, owner, reason = d.fence(ctx, req.Members)
	if won && req.Class == regroup.ClassForm {
		if err := d.replayLog(ctx); err != nil {
			return false, false, err.Error()
		}
	}
	return won, owner, reason
}

// fence preempts every key outside members, re-reading the keys after each
// PREEMPT, then makes sure a member holds the reservation.
func (d *Daemon) fence(ctx context.Context, members regroup.NodeSet) (won, owner bool, reason string) {
	for range 4 * 64 {
		keys, err := d.readKeys(ctx)
		if err != nil {
			return false, false, err.Error()
		}
		if !slices.Contains(keys, d.key) {
			return false, false, "this node's key was removed while it waited: another partition won"
		}
		i := slices.IndexFunc(keys, func(k uint64) bool { return !d.memberKey(k, members) })
		if i >= 0 {
			err := d.preempt(ctx, keys[i])
			if err != nil && !errors.Is(err, scsi.ErrReservationConflict) {
				return false, false, err.Error()
			}
			if err != nil {
				d.log.Info("preempt conflict", "victim", fmt.Sprintf("%#x", keys[i]))
			} else {
				d.log.Info("key removed", "victim", fmt.Sprintf("%#x", keys[i]))
			}
			continue // re-read: a conflict means the victim or we are gone
		}
		res, err := d.readReservation(ctx)
		if err != nil {
			return false, false, err.Error()
		}
		if res.Held {
			if !d.memberKey(res.Key, members) {
				return false, false, fmt.Sprintf("reservation held by %#x outside the membership", res.Key)
			}
			return true, res.Key == d.key, ""
		}
		if err := d.reserve(ctx); err != nil {
			return false, false, err.Error()
		}
		return true, true, ""
	}
	return false, false, "keys keep changing: gave up"
}

// replayLog opens the recovery log (DESIGN §5.4) as the new owner: replay
// up to the last valid record, then append an owner record, which also
// proves this node may write.
func (d *Daemon) replayLog(ctx context.Context) error {
	c, cancel := context.WithTimeout(ctx, 4*d.cfg.CommandTimeout)
	defer cancel()
	blocks, err := quorumdisk.NewSCSIBlocks(c, d.cfg.Device)
	if err != nil {
		return fmt.Errorf("replay log: %w", err)
	}
	disk, err := quorumdisk.Open(c, blocks)
	if err != nil {
		return fmt.Errorf("replay log: %w", err)
	}
	lg, rp, err := disk.OpenLog(c)
	if err != nil {
		return fmt.Errorf("replay log: %w", err)
	}
	d.log.Info("log replayed", "checkpoint_lsn", rp.Checkpoint.LSN, "records", len(rp.Records), "last_lsn", rp.LastLSN(), "end", rp.End)
	payload, _ := json.Marshal(map[string]any{"node": int(d.cfg.Self), "incarnation": d.inc, "time": d.cfg.Now().UTC()})
	lsn, err := lg.Append(c, quorumdisk.Record{Type: quorumdisk.RecordOwner, Payload: payload})
	if err != nil {
		return fmt.Errorf("replay log: append owner record: %w", err)
	}
	d.log.Info("owner record appended", "lsn", lsn)
	return nil
}

// register puts a joined node's key on the disk, then checks that the
// reservation is held by a member of the membership it joined; if not, its
// sponsor's partition was fenced while the join ran and the key comes off
// again (registration itself is not protected by the target).
func (d *Daemon) register(ctx context.Context) func() {
	err := d.registerKey(ctx, d.key)
	if err == nil {
		var res scsi.Reservation
		res, err = d.readReservation(ctx)
		members := regroup.NodeSet(d.members.Load())
		if err == nil && res.Held && !d.memberKey(res.Key, members) {
			_ = d.registerKey(ctx, 0)
			err = fmt.Errorf("reservation holder %#x is outside membership %v: the sponsor's partition was fenced", res.Key, members)
		}
		if err == nil {
			d.log.Info("key registered", "key", fmt.Sprintf("%#x", d.key))
		}
	}
	return func() {
		if err != nil {
			d.log.Warn("register", "err", err.Error())
		}
		d.rg.DiskRegistered(err)
	}
}

func (d *Daemon) unregister(ctx context.Context) error { return d.registerKey(ctx, 0) }

// quorumCheck is the periodic check (QuorumCheckInterval): a member whose
// key is gone, or that cannot read the keys, self-fences; the reservation
// holder defends by removing the keys of non-members; a leader that finds
// no reservation takes it.
func (d *Daemon) quorumCheck() {
	if d.checking || d.claimCancel != nil || !d.rg.Member() || !d.rg.Registered() {
		return
	}
	d.checking = true
	d.submit(job{name: "quorum check", run: func(ctx context.Context) func() {
		lost, owner, err := d.check(ctx)
		return func() {
			d.checking = false
			d.owner = owner
			if lost != "" {
				d.lostQuorum(lost)
			} else if err != nil {
				d.log.Warn("quorum check", "err", err.Error())
			}
		}
	}})
}

func (d *Daemon) check(ctx context.Context) (lost string, owner bool, err error) {
	keys, err := d.readKeys(ctx)
	if err != nil {
		// A member that cannot confirm its registration cannot tell a dead
		// path from being fenced: it stops, like a fenced one.
		return fmt.Sprintf("quorum disk unreachable: %v", err), false, nil
	}
	if !slices.Contains(keys, d.key) {
		return "this node's key is no longer registered on the quorum disk", false, nil
	}
	res, err := d.readReservation(ctx)
	if err != nil {
		return "", false, err
	}
	// The membership is read after the keys: a joiner registers only after
	// this node installed the membership that holds it, so a key seen
	// above belongs to a member of what is read here.
	members := regroup.NodeSet(d.members.Load())
	switch {
	case res.Held && res.Key == d.key:
		slices.Sort(keys)
		for _, k := range slices.Compact(keys) {
			if !d.memberKey(k, members) {
				err := d.preempt(ctx, k)
				d.log.Info("defend: key removed", "victim", fmt.Sprintf("%#x", k), "err", fmt.Sprint(err))
			}
		}
		return "", true, nil
	case !res.Held && members.Min() == d.cfg.Self:
		if err := d.reserve(ctx); err != nil {
			return "", false, err
		}
		return "", true, nil
	}
	return "", false, nil
}
