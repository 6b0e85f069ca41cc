// Package gup is the Global Update Protocol: every member of the cluster
// applies the same updates to the cluster database in the same order,
// exactly once, and no update that was acknowledged is lost whatever
// fails, including the "partition in time" (docs/gup.md).
//
// One node, the locker, sequences every update: the holder of the quorum
// reservation, the only node that writes the recovery log on the quorum
// LUN. A sender hands its update to the locker; the locker gives it the
// next sequence number, appends it to the log with FUA (several pending
// updates in one write: group commit), applies it, and delivers it to the
// other members in node-id order after itself. A node that becomes locker
// replays the log first, so it holds every update any node ever applied.
//
// Like the rest of the node core, a Node here starts no goroutines, reads
// no clock and does no I/O: it takes messages, ticks and log results, and
// returns messages, log commands and completions in Ready.
package gup

import (
	"fmt"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// StateMachine is what the updates change: the cluster database. Apply
// must be deterministic: the same updates in the same order give the same
// state and the same outcomes on every node.
type StateMachine interface {
	// Apply applies data, committed at sequence seq. Its error is the
	// update's outcome (a failed precondition, say), the same on every
	// node; it is reported to the sender's client. A failed update must
	// change nothing.
	Apply(seq uint64, data []byte) error
	// Snapshot encodes the whole state.
	Snapshot() []byte
	// Restore replaces the state with a snapshot; nil restores the empty
	// initial state. A snapshot it cannot decode returns an error and
	// changes nothing.
	Restore(snapshot []byte) error
}

// Update is one sequenced update.
type Update struct {
	Seq    uint64
	Origin nodes.ID // the node whose client asked for it
	Inc    uint64   // the origin's incarnation
	Req    uint64   // the origin's request number within the incarnation: 1, 2, ...
	// Refused, when set, means the locker sequenced the request without
	// its data (it could not log it); it applies as no change and its
	// completion carries this reason.
	Refused string
	Data    []byte
}

func (u Update) String() string {
	return fmt.Sprintf("#%d(%d/%d/%d, %d bytes)", u.Seq, u.Origin, u.Inc, u.Req, len(u.Data))
}

// MsgType names a Message.
type MsgType uint8

// Messages between nodes; they travel on the intra-cluster streams.
const (
	// MsgRequest: sender -> locker: an update to sequence {Inc, Req, Data}.
	MsgRequest MsgType = iota + 1
	// MsgUpdates: locker -> member: committed updates, in sequence order;
	// Seq is what the locker had applied (a member at or past it acks at
	// its next tick, one ack for the tick's batches; one behind acks at once).
	MsgUpdates
	// MsgAck: member -> locker: every update up to Seq is applied here; Req
	// is the highest update it holds beyond a hole (0: none).
	MsgAck
	// MsgLocker: locker -> member: "I am the locker of term Term, at Seq".
	// Sent when a node becomes locker and after every membership change;
	// the member answers with MsgAck.
	MsgLocker
	// MsgSnapshot: locker -> member: the whole state at Seq (Data), for a
	// member too far behind for the updates kept in memory.
	MsgSnapshot
	// MsgRead: node -> locker: the committed sequence number, please, for
	// a linearizable read {ReadID}.
	MsgRead
	// MsgReadIndex: locker -> node: {ReadID, Seq}: once Seq is applied
	// here the read may be served from the local state.
	MsgReadIndex
)

var msgNames = [...]string{"", "Request", "Updates", "Ack", "Locker", "Snapshot", "Read", "ReadIndex"}

func (t MsgType) String() string {
	if int(t) < len(msgNames) && t != 0 {
		return msgNames[t]
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// Message is one GUP message.
type Message struct {
	Type     MsgType
	From, To nodes.ID
	// Term is the locker's term: the LSN of the owner record it appended
	// when it took over the log, so a later locker's term is larger.
	Term uint64
	// Hist names the history of updates the sender holds: set when a
	// history starts from an empty log, kept across checkpoints and
	// takeovers. A node with another history (its quorum disk was
	// formatted again) takes the locker's state whole.
	Hist    uint64
	Seq     uint64
	Inc     uint64 // MsgRequest
	Req     uint64 // MsgRequest
	ReadID  uint64 // MsgRead, MsgReadIndex
	Data    []byte // MsgRequest: the update; MsgSnapshot: the state
	Updates []Update
}

func (m Message) String() string {
	switch m.Type {
	case MsgRequest:
		return fmt.Sprintf("%v %d->%d req %d/%d (%d bytes)", m.Type, m.From, m.To, m.Inc, m.Req, len(m.Data))
	case MsgUpdates:
		if n := len(m.Updates); n > 0 {
			return fmt.Sprintf("%v %d->%d term %d #%d..#%d", m.Type, m.From, m.To, m.Term, m.Updates[0].Seq, m.Updates[n-1].Seq)
		}
	case MsgRead, MsgReadIndex:
		return fmt.Sprintf("%v %d->%d read %d seq %d", m.Type, m.From, m.To, m.ReadID, m.Seq)
	}
	return fmt.Sprintf("%v %d->%d term %d seq %d", m.Type, m.From, m.To, m.Term, m.Seq)
}

// LogOp is a command on the recovery log the node core executes for GUP.
type LogOp uint8

// Log commands.
const (
	// LogReplay: open the recovery log as its new writer: read the newest
	// checkpoint and the records after it, then append an owner record
	// whose LSN is the new locker's term.
	LogReplay LogOp = iota + 1
	// LogAppend: append Payload (a batch of updates) as one record with FUA.
	LogAppend
	// LogCheckpoint: write Payload (the state at the last appended update)
	// as the next checkpoint; the ring before it is free again.
	LogCheckpoint
	// LogBarrier: read the reservation keys: is this node's key still
	// registered? A read is linearizable once the answer is yes.
	LogBarrier
)

func (o LogOp) String() string {
	switch o {
	case LogReplay:
		return "replay"
	case LogAppend:
		return "append"
	case LogCheckpoint:
		return "checkpoint"
	case LogBarrier:
		return "barrier"
	}
	return fmt.Sprintf("LogOp(%d)", uint8(o))
}

// LogCommand asks for a log operation (Config.Issue runs it).
type LogCommand struct {
	ID      uint64
	Op      LogOp
	GUPSeq  uint64 // LogAppend: the last sequence number in the batch
	Payload []byte
}

// LogResult answers a LogCommand.
type LogResult struct {
	ID uint64
	Op LogOp
	OK bool
	// Conflict: the target refused with RESERVATION CONFLICT (this node's
	// key is gone). Full: the ring has no room until a checkpoint.
	Conflict, Full bool
	Err            string

	// LogReplay: the checkpoint's state, the records after it in LSN
	// order, and the LSN of the owner record appended (the term).
	Snapshot []byte
	Records  []LogRecord
	Term     uint64
	// FormatID identifies the quorum disk's format: it names a history
	// that starts on this log.
	FormatID uint64
	// LogReplay, LogAppend, LogCheckpoint: the ring's free blocks, its
	// size in blocks, and the largest payload a record takes.
	Free, Size uint64
	MaxPayload int
	// LogBarrier: this node's key is registered.
	KeyPresent bool
}

// LogRecord is a record of the recovery log, as replay read it.
type LogRecord struct {
	LSN    uint64
	GUPSeq uint64
	// Update marks a record of updates (other records, such as owner
	// records, are skipped).
	Update  bool
	Payload []byte
}

// Completion reports that a request of this node was applied here, at Seq,
// with the state machine's outcome (Err, "" for success). The sender's
// client may read its write on this node from now on.
type Completion struct {
	Req uint64
	Seq uint64
	Err string
	// AtOrBefore: the request was found applied in a snapshot this node
	// restored (from the locker or the log), which records each sender's
	// last applied request but not where: it was applied at Seq or
	// before.
	AtOrBefore bool
}

// ReadDone reports that read ReadID may be served from the local state:
// every update committed before the read was asked is applied here.
type ReadDone struct {
	ReadID uint64
	Seq    uint64
}

// EventKind names an Event.
type EventKind uint8

// Events.
const (
	// EventLocker: this node became the locker {Term, Seq} after replaying
	// the log ({Records} update records found after the checkpoint).
	EventLocker EventKind = iota + 1
	// EventLockerLost: this node stopped being the locker {Reason}.
	EventLockerLost
	// EventLockerKnown: another node announced itself locker {Node, Term}.
	EventLockerKnown
	// EventReset: the state was replaced by a snapshot {Seq, Reason}.
	EventReset
	// EventCheckpoint: a checkpoint was written at {Seq}.
	EventCheckpoint
	// EventLogTrouble: a log command failed {Reason}; the locker replays
	// the log again before it goes on.
	EventLogTrouble
)

var eventNames = [...]string{"", "locker", "locker lost", "locker known", "state reset", "checkpoint", "log trouble"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) && k != 0 {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is something GUP did or concluded.
type Event struct {
	Kind    EventKind
	Node    nodes.ID
	Term    uint64
	Seq     uint64
	Records int
	Reason  string
}

func (e Event) String() string {
	switch e.Kind {
	case EventLocker:
		return fmt.Sprintf("%v: term %d at #%d (%d update records replayed)", e.Kind, e.Term, e.Seq, e.Records)
	case EventLockerKnown:
		return fmt.Sprintf("%v: node %d term %d", e.Kind, e.Node, e.Term)
	case EventCheckpoint:
		return fmt.Sprintf("%v at #%d", e.Kind, e.Seq)
	case EventReset:
		return fmt.Sprintf("%v to #%d: %s", e.Kind, e.Seq, e.Reason)
	}
	if e.Reason != "" {
		return fmt.Sprintf("%v: %s", e.Kind, e.Reason)
	}
	return e.Kind.String()
}

// Ready is what GUP wants done since the last Ready.
type Ready struct {
	Messages    []Message
	Completions []Completion
	Reads       []ReadDone
	Events      []Event
}

func (r *Ready) empty() bool {
	return len(r.Messages)+len(r.Completions)+len(r.Reads)+len(r.Events) == 0
}
