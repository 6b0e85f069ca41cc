// Package quorumio executes the node core's disk commands on the quorum
// LUN: persistent reservations through scsi, slots, mailboxes and the
// recovery log through quorumdisk. clusterd runs it on a disk worker,
// `cluster quorum hold` inline, and the simulator on memtarget: the same
// code everywhere. It decides nothing: every result goes back to the core.
package quorumio

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup"
	"github.com/wolfpack-ha/wolfpack/internal/core"
	"github.com/wolfpack-ha/wolfpack/quorumdisk"
	"github.com/wolfpack-ha/wolfpack/scsi"
)

// ReservationType is the quorum reservation's type: Write Exclusive -
// Registrants Only, so every registered member may write its slot and an
// unregistered node may write nothing.
const ReservationType = scsi.WriteExclusiveRegistrantsOnly

// Executor runs disk commands for one node on its own I_T nexus.
type Executor struct {
	Dev  scsi.Device
	Disk *quorumdisk.Disk // opened on Dev
	Self uint32
	// Nodes is the highest configured node id: slots are read up to it
	// (default all).
	Nodes uint32
	// Timeout bounds each command (default 2 s).
	Timeout time.Duration
	// Incarnation and Now fill the owner record appended after a replay.
	Incarnation uint64
	Now         func() time.Time
	Logger      *slog.Logger

	fellBack bool
	// lg is the recovery log as the last replay opened it (nil: none; a
	// failed write stops it until the next replay).
	lg *quorumdisk.Log
}

// Open checks that dev holds a formatted quorum disk of cluster tag and
// returns an executor for node self.
func Open(ctx context.Context, dev scsi.Device, tag, self uint32) (*Executor, error) {
	blocks, err := quorumdisk.NewSCSIBlocks(ctx, dev)
	if err != nil {
		return nil, fmt.Errorf("open quorum disk: %w", err)
	}
	disk, err := quorumdisk.Open(ctx, blocks)
	if err != nil {
		return nil, fmt.Errorf("open quorum disk: %w (format it with 'cluster quorum format')", err)
	}
	if got := disk.Superblock().ClusterTag; got != tag {
		return nil, fmt.Errorf("open quorum disk: its cluster tag is %08x, the configuration's %08x", got, tag)
	}
	return &Executor{Dev: dev, Disk: disk, Self: self}, nil
}

func (e *Executor) log() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// Exec runs c and returns its result; it never fails to answer.
func (e *Executor) Exec(ctx context.Context, c core.DiskCommand) core.DiskResult {
	timeout := e.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if c.Op == core.DiskReplayLog {
		timeout *= 4
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := core.DiskResult{ID: c.ID, Op: c.Op}
	var err error
	switch c.Op {
	case core.DiskReadKeys:
		var k scsi.Keys
		k, err = scsi.ReadKeys(ctx, e.Dev)
		r.Keys = k.Keys
	case core.DiskReadReservation:
		var res scsi.Reservation
		res, err = scsi.ReadReservation(ctx, e.Dev)
		r.Reserved, r.Holder = res.Held, res.Key
	case core.DiskRegister:
		err = scsi.RegisterAndIgnore(ctx, e.Dev, c.Key)
	case core.DiskReserve:
		err = scsi.Reserve(ctx, e.Dev, c.Key, ReservationType)
	case core.DiskPreempt:
		var fellBack bool
		fellBack, err = scsi.PreemptAbortOrPreempt(ctx, e.Dev, c.Key, c.Victim, ReservationType)
		if fellBack && !e.fellBack {
			e.fellBack = true
			e.log().Warn("the target refused PREEMPT AND ABORT (INVALID FIELD IN CDB); used PREEMPT")
		}
	case core.DiskReplayLog:
		err = e.replay(ctx, &r)
	case core.DiskAppendLog:
		err = e.appendLog(ctx, c, &r)
	case core.DiskCheckpoint:
		err = e.checkpoint(ctx, c, &r)
	case core.DiskWriteSlot:
		s := c.Slot
		err = e.Disk.WriteHeartbeat(ctx, quorumdisk.Heartbeat{
			Node: uint32(s.Node), Counter: s.Counter, Incarnation: s.Incarnation, Epoch: s.Epoch, Time: e.now().UnixNano(),
		})
	case core.DiskReadSlots:
		var hs []quorumdisk.Heartbeat
		var pill quorumdisk.PoisonPill
		var ok bool
		hs, pill, ok, err = e.Disk.ReadSlots(ctx, e.Self, cmp.Or(e.Nodes, quorumdisk.MaxNodes))
		for _, h := range hs {
			if h.Node != 0 {
				r.Slots = append(r.Slots, core.Slot{Node: nodeID(h.Node), Counter: h.Counter, Incarnation: h.Incarnation, Epoch: h.Epoch})
			}
		}
		if ok {
			r.Pill = &core.Pill{Target: nodeID(pill.Target), Sender: nodeID(pill.Sender), Incarnation: pill.Incarnation,
				Epoch: pill.Epoch, Seq: pill.Seq, Reason: pill.Reason}
		}
	case core.DiskWritePill:
		p := c.Pill
		err = e.Disk.WritePoison(ctx, quorumdisk.PoisonPill{
			Target: uint32(p.Target), Sender: uint32(p.Sender), Incarnation: p.Incarnation, Epoch: p.Epoch,
			Seq: p.Seq, Reason: truncate(p.Reason, quorumdisk.MaxReason), Time: e.now().UnixNano(),
		})
	default:
		err = fmt.Errorf("unknown disk command %v", c.Op)
	}
	switch {
	case err == nil:
	case errors.Is(err, scsi.ErrReservationConflict):
		r.Outcome, r.Err = core.Conflict, err.Error()
	default:
		r.Outcome, r.Err = core.Failed, err.Error()
	}
	return r
}

func (e *Executor) now() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

// replay opens the recovery log as its new writer: replay up to the last
// valid record, then append an owner record, which also proves this node
// may write; its LSN is the new locker's term.
func (e *Executor) replay(ctx context.Context, r *core.DiskResult) error {
	e.lg = nil
	lg, rp, err := e.Disk.OpenLog(ctx)
	if err != nil {
		return fmt.Errorf("replay log: %w", err)
	}
	e.log().Info("log replayed", "checkpoint_lsn", rp.Checkpoint.LSN, "records", len(rp.Records), "last_lsn", rp.LastLSN(), "end", rp.End)
	payload, _ := json.Marshal(map[string]any{"node": e.Self, "incarnation": e.Incarnation, "time": e.now().UTC()})
	lsn, err := lg.Append(ctx, quorumdisk.Record{Type: quorumdisk.RecordOwner, Payload: payload})
	if err != nil {
		return fmt.Errorf("replay log: append owner record: %w", err)
	}
	e.log().Info("owner record appended", "lsn", lsn)
	r.Checkpoint, r.OwnerLSN, r.FormatID = rp.Snapshot, lsn, e.Disk.Superblock().FormatID
	for _, rec := range rp.Records {
		r.Records = append(r.Records, gup.LogRecord{LSN: rec.LSN, GUPSeq: rec.GUPSeq,
			Update: rec.Type == quorumdisk.RecordUpdate, Payload: rec.Payload})
	}
	e.lg = lg
	e.space(r)
	return nil
}

func (e *Executor) space(r *core.DiskResult) {
	r.LogFree, r.LogSize, r.MaxPayload = e.lg.Free(), e.Disk.Superblock().Layout.LogBlocks, e.lg.MaxRecordPayload()
}

// appendLog appends a batch of GUP updates as one record.
func (e *Executor) appendLog(ctx context.Context, c core.DiskCommand, r *core.DiskResult) error {
	if e.lg == nil {
		return errors.New("append to the recovery log: not open (no replay since the last failure)")
	}
	_, err := e.lg.Append(ctx, quorumdisk.Record{Type: quorumdisk.RecordUpdate, GUPSeq: c.GUPSeq, Payload: c.Payload})
	if errors.Is(err, quorumdisk.ErrLogFull) {
		r.LogFull = true
	}
	if err != nil {
		return fmt.Errorf("append update #%d to the recovery log: %w", c.GUPSeq, err)
	}
	e.space(r)
	return nil
}

// checkpoint writes GUP's state as the log's next checkpoint.
func (e *Executor) checkpoint(ctx context.Context, c core.DiskCommand, r *core.DiskResult) error {
	if e.lg == nil {
		return errors.New("checkpoint the recovery log: not open (no replay since the last failure)")
	}
	err := e.lg.Checkpoint(ctx, c.Payload)
	if errors.Is(err, quorumdisk.ErrTooLarge) {
		r.LogFull = true
	}
	if err != nil {
		return fmt.Errorf("checkpoint the recovery log at #%d: %w", c.GUPSeq, err)
	}
	e.space(r)
	return nil
}

func nodeID(n uint32) core.NodeID { return core.NodeID(n) }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
