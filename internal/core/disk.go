package core

import (
	"fmt"

	"github.com/wolfpack-ha/wolfpack/gup"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// Key returns node's reservation key in the cluster with tag: the tag in
// the high four bytes, the node id in the low four (docs/design.md,
// "Quorum arbitration").
func Key(tag uint32, node nodes.ID) uint64 { return uint64(tag)<<32 | uint64(node) }

// KeyNode splits a reservation key into cluster tag and node id.
func KeyNode(key uint64) (tag uint32, node nodes.ID) { return uint32(key >> 32), nodes.ID(uint32(key)) }

// DiskOp is a command on the quorum LUN that the node core asks its driver
// to execute. Reservation commands use Write Exclusive - Registrants Only.
type DiskOp uint8

// Disk commands.
const (
	// DiskReadKeys: PERSISTENT RESERVE IN, READ KEYS.
	DiskReadKeys DiskOp = iota + 1
	// DiskReadReservation: PERSISTENT RESERVE IN, READ RESERVATION.
	DiskReadReservation
	// DiskRegister: PERSISTENT RESERVE OUT, REGISTER AND IGNORE EXISTING
	// KEY with Key (0 removes this nexus's registration).
	DiskRegister
	// DiskReserve: PERSISTENT RESERVE OUT, RESERVE with Key.
	DiskReserve
	// DiskPreempt: PERSISTENT RESERVE OUT, PREEMPT AND ABORT of Victim
	// with Key (PREEMPT where the target refuses PREEMPT AND ABORT; scsi
	// does that fallback).
	DiskPreempt
	// DiskReplayLog: open the recovery log as its new writer, replay it and
	// append an owner record (a write only a registrant can make); GUP's
	// takeover.
	DiskReplayLog
	// DiskWriteSlot: WRITE(16) FUA of this node's heartbeat slot.
	DiskWriteSlot
	// DiskReadSlots: READ(16) of every configured node's heartbeat slot and
	// of this node's mailbox.
	DiskReadSlots
	// DiskWritePill: WRITE(16) FUA of Pill into Pill.Target's mailbox.
	DiskWritePill
	// DiskAppendLog: append Payload (a batch of GUP updates ending at
	// GUPSeq) to the recovery log as one record, WRITE(16) FUA.
	DiskAppendLog
	// DiskCheckpoint: write Payload (GUP's state at GUPSeq) as the log's
	// next checkpoint.
	DiskCheckpoint
)

func (o DiskOp) String() string {
	switch o {
	case DiskReadKeys:
		return "read keys"
	case DiskReadReservation:
		return "read reservation"
	case DiskRegister:
		return "register"
	case DiskReserve:
		return "reserve"
	case DiskPreempt:
		return "preempt"
	case DiskReplayLog:
		return "replay log"
	case DiskWriteSlot:
		return "write slot"
	case DiskReadSlots:
		return "read slots"
	case DiskWritePill:
		return "write poison pill"
	case DiskAppendLog:
		return "append log"
	case DiskCheckpoint:
		return "checkpoint"
	}
	return fmt.Sprintf("DiskOp(%d)", uint8(o))
}

// Slot is one node's disk heartbeat: it rewrites it with a growing
// counter; the others read it to tell "partitioned" from "dead".
type Slot struct {
	Node        nodes.ID
	Counter     uint64
	Incarnation uint64
	Epoch       uint64
}

// Pill is a poison pill: the quorum owner writes it into the mailbox of a
// node it regrouped out while that node still beat on the disk; the node
// halts when it reads a pill meant for its incarnation.
type Pill struct {
	Target      nodes.ID
	Sender      nodes.ID
	Incarnation uint64 // the target's incarnation (never 0)
	Epoch       uint64 // the sender's membership epoch
	Seq         uint64
	Reason      string
}

// DiskCommand is one command for the driver. ID ties the result to it.
type DiskCommand struct {
	ID     uint64
	Op     DiskOp
	Key    uint64 // Register, Reserve, Preempt: this node's key (Register: 0 unregisters)
	Victim uint64 // Preempt
	Slot   Slot   // WriteSlot
	Pill   Pill   // WritePill
	// AppendLog, Checkpoint.
	GUPSeq  uint64
	Payload []byte
}

func (c DiskCommand) String() string {
	switch c.Op {
	case DiskRegister, DiskReserve:
		return fmt.Sprintf("#%d %v %#x", c.ID, c.Op, c.Key)
	case DiskPreempt:
		return fmt.Sprintf("#%d %v %#x", c.ID, c.Op, c.Victim)
	case DiskWriteSlot:
		return fmt.Sprintf("#%d %v counter %d", c.ID, c.Op, c.Slot.Counter)
	case DiskWritePill:
		return fmt.Sprintf("#%d %v to %d", c.ID, c.Op, c.Pill.Target)
	case DiskAppendLog, DiskCheckpoint:
		return fmt.Sprintf("#%d %v #%d (%d bytes)", c.ID, c.Op, c.GUPSeq, len(c.Payload))
	}
	return fmt.Sprintf("#%d %v", c.ID, c.Op)
}

// Outcome is how a disk command ended.
type Outcome uint8

// Outcomes.
const (
	// OK: GOOD status.
	OK Outcome = iota
	// Conflict: RESERVATION CONFLICT.
	Conflict
	// Failed: anything else (transport, timeout, other sense); the command
	// may or may not have been executed.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Conflict:
		return "reservation conflict"
	}
	return "failed"
}

// DiskResult is the driver's answer to the DiskCommand with the same ID.
type DiskResult struct {
	ID      uint64
	Op      DiskOp
	Outcome Outcome
	Err     string // what failed, for logs and reasons
	// ReadKeys.
	Keys []uint64
	// ReadReservation.
	Reserved bool
	Holder   uint64
	// ReadSlots: the configured nodes' slots (empty ones left out) and, if
	// this node's mailbox holds a pill, that pill.
	Slots []Slot
	Pill  *Pill
	// ReplayLog: the newest checkpoint's payload, the records after it,
	// the LSN of the owner record appended and the disk's format id.
	Checkpoint []byte
	Records    []gup.LogRecord
	OwnerLSN   uint64
	FormatID   uint64
	// ReplayLog, AppendLog, Checkpoint: the log ring's free and total
	// blocks and its largest record payload; LogFull: the ring had no
	// room (nothing was written).
	LogFree, LogSize uint64
	MaxPayload       int
	LogFull          bool
}

func (r DiskResult) String() string {
	s := fmt.Sprintf("#%d %v %v", r.ID, r.Op, r.Outcome)
	if r.Err != "" {
		s += ": " + r.Err
	}
	switch {
	case r.Outcome != OK:
	case r.Op == DiskReadKeys:
		s += fmt.Sprintf(" keys %x", r.Keys)
	case r.Op == DiskReadReservation && r.Reserved:
		s += fmt.Sprintf(" holder %#x", r.Holder)
	case r.Op == DiskReadReservation:
		s += " not reserved"
	}
	return s
}

// NodeID is a node's id (nodes.ID), named here for drivers.
type NodeID = nodes.ID
