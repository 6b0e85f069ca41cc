package regroup

import (
	"fmt"

	"github.com/wolfpack-ha/wolfpack/heartbeat"
)

// NodeID and NodeSet are the heartbeat package's: ids 1..64.
type (
	NodeID  = heartbeat.NodeID
	NodeSet = heartbeat.NodeSet
)

// Epoch numbers a membership. It is (generation << 8 | installer): the
// generation grows along a lineage of memberships, and the node that
// installed it is part of the number, so two different memberships never
// share an epoch even when two partitions each compute the same next
// generation (docs/membership.md).
type Epoch uint64

// MakeEpoch returns the epoch of generation gen installed by node by.
func MakeEpoch(gen uint64, by NodeID) Epoch { return Epoch(gen<<8 | uint64(by)&0xff) }

// Gen is the generation.
func (e Epoch) Gen() uint64 { return uint64(e) >> 8 }

// By is the node that installed the membership.
func (e Epoch) By() NodeID { return NodeID(e & 0xff) }

func (e Epoch) String() string { return fmt.Sprintf("%d.%d", e.Gen(), e.By()) }

// Stage is a regroup stage (docs/membership.md "Regroup"). Every regroup
// message carries
// the stage it belongs to; stages are barriers.
type Stage uint8

// Regroup stages, in order.
const (
	StageStabilized Stage = iota // not regrouping
	StageActivate                // exchange status (who I hear), collect
	StageClosing                 // send the final row to the leader; the leader decides survival
	StagePruning                 // the leader's fully connected set; arbitration
	StageCleanup1                // install membership and epoch; node-down callbacks
	StageCleanup2                // second callback: GUP locker takeover, group pull
)

func (s Stage) String() string {
	switch s {
	case StageStabilized:
		return "Stabilized"
	case StageActivate:
		return "Activate"
	case StageClosing:
		return "Closing"
	case StagePruning:
		return "Pruning"
	case StageCleanup1:
		return "Cleanup1"
	case StageCleanup2:
		return "Cleanup2"
	}
	return fmt.Sprintf("Stage(%d)", uint8(s))
}

// State is this node's own state.
type State uint8

// Node states. Joining, Up, Paused and Down are the states of
// docs/design.md, "Membership: join, regroup, leave"; Forming, Halted and Left are their terminal and transitional
// companions.
const (
	StateDown    State = iota // not started
	StateJoining              // looking for a sponsor, or being sponsored
	StateForming              // no cluster found: arbitrating for the quorum disk alone
	StateUp                   // member, membership stable
	StatePaused               // member, regrouping (before Cleanup1 installs the new membership)
	StateHalted               // pruned, lost arbitration or quorum: stopped; the service manager restarts it
	StateLeft                 // left with ClusterExit
)

func (s State) String() string {
	switch s {
	case StateDown:
		return "down"
	case StateJoining:
		return "joining"
	case StateForming:
		return "forming"
	case StateUp:
		return "up"
	case StatePaused:
		return "paused"
	case StateHalted:
		return "halted"
	case StateLeft:
		return "left"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Class is how a candidate partition stands under the survival rule; it
// tells the quorum arbiter how soon it may claim the disk.
type Class uint8

// Partition classes (docs/membership.md).
const (
	// ClassMajority: rule (a) or (b) settles it. Claim the disk at once.
	ClassMajority Class = iota + 1
	// ClassUncontested: no other partition could satisfy (a) or (b); the
	// disk decides. The holder claims at once, others after one defence
	// delay.
	ClassUncontested
	// ClassContested: another partition could satisfy (a) or (b); the disk
	// decides, but only after it had time to fence us. The holder claims
	// after one defence delay, others after two.
	ClassContested
	// ClassForm: a node that found no cluster forms one. It registers, and
	// claims at once on a disk nobody uses, otherwise after the form delay,
	// which exceeds the quorum check interval so a live owner defends.
	ClassForm
)

func (c Class) String() string {
	switch c {
	case ClassMajority:
		return "majority"
	case ClassUncontested:
		return "uncontested"
	case ClassContested:
		return "contested"
	case ClassForm:
		return "form"
	}
	return fmt.Sprintf("Class(%d)", uint8(c))
}

// Classify applies the survival rule to partition, a candidate from the
// original membership; tieBreaker breaks exact halves (rule b).
// Reference: docs/membership.md "Partition survival: the rule implemented".
func Classify(original, partition NodeSet, tieBreaker NodeID) Class {
	partition &= original
	n, k := original.Len(), partition.Len()
	switch {
	case 2*k > n: // (a)
		return ClassMajority
	case 2*k == n && k >= 2 && partition.Has(tieBreaker): // (b)
		return ClassMajority
	}
	rest := n - k
	if 2*rest > n || (2*rest == n && rest >= 2 && !partition.Has(tieBreaker) && original.Has(tieBreaker)) {
		return ClassContested
	}
	return ClassUncontested
}

// MsgType is the type of a Message.
type MsgType uint8

// Message types.
const (
	MsgJoinRequest   MsgType = iota + 1 // joiner -> any configured node: {Incarnation, Nonce}
	MsgJoinRedirect                     // member -> joiner: the sponsor is {Leader}
	MsgChallenge                        // sponsor -> joiner: {Nonce (joiner's), Nonce2 (sponsor's), Proof}
	MsgJoinAuth                         // joiner -> sponsor: {Proof}
	MsgJoinRefused                      // sponsor -> joiner: {Reason, Fatal, Evict: the joiner when it is evicted}
	MsgAnnounce                         // sponsor -> members: {Joiner}
	MsgJoinState                        // sponsor -> joiner: {Epoch, Members} (Snapshot stays empty: the database follows on the streams)
	MsgJoinStateAck                     // joiner -> sponsor
	MsgJoinCommit                       // sponsor -> members: {Joiner, Epoch, Members}
	MsgJoinCommitAck                    // member -> sponsor
	MsgWelcome                          // sponsor -> joiner: {Epoch, Members}
	MsgWelcomeAck                       // joiner -> sponsor
	MsgJoinAbort                        // either way: {Joiner, Reason}
	MsgExit                             // leaving member -> members: ClusterExit {Epoch}
	MsgRegroup                          // regroup barrier message: {Round, Stage, ...}
	MsgRegroupAck                       // regroup barrier acknowledgement: {Round, Stage}
	MsgAbandon                          // regroup leader -> partition: lost arbitration {Reason}
	MsgAnnounceAck                      // member -> sponsor: it hears {Joiner}
)

var msgNames = map[MsgType]string{
	MsgJoinRequest: "JoinRequest", MsgJoinRedirect: "JoinRedirect", MsgChallenge: "Challenge",
	MsgJoinAuth: "JoinAuth", MsgJoinRefused: "JoinRefused", MsgAnnounce: "Announce",
	MsgJoinState: "JoinState", MsgJoinStateAck: "JoinStateAck", MsgJoinCommit: "JoinCommit",
	MsgJoinCommitAck: "JoinCommitAck", MsgWelcome: "Welcome", MsgWelcomeAck: "WelcomeAck",
	MsgJoinAbort: "JoinAbort", MsgExit: "ClusterExit", MsgRegroup: "Regroup",
	MsgRegroupAck: "RegroupAck", MsgAbandon: "Abandon", MsgAnnounceAck: "AnnounceAck",
}

func (t MsgType) String() string {
	if s, ok := msgNames[t]; ok {
		return s
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// Message is one protocol message. Fields not used by a type are zero.
type Message struct {
	Type     MsgType
	From, To NodeID
	// Regroup.
	Round uint64
	Stage Stage
	Hears NodeSet // Activate/Closing: the sender's row of the connectivity matrix
	Evict NodeSet // Activate/Closing: nodes an administrator evicts
	Class Class   // Pruning: how the partition stands
	// Membership.
	Epoch   Epoch
	Members NodeSet // Activate: sender's membership; Pruning: the survivors; Cleanup1/commit/welcome: the new membership
	// Join.
	Joiner      NodeID
	Leader      NodeID
	Incarnation uint64
	Nonce       uint64
	Nonce2      uint64
	Proof       []byte
	Snapshot    []byte
	Reason      string
	Fatal       bool
}

func (m Message) String() string {
	switch m.Type {
	case MsgRegroup, MsgRegroupAck:
		s := fmt.Sprintf("%v %d->%d round %d %v", m.Type, m.From, m.To, m.Round, m.Stage)
		switch {
		case m.Type == MsgRegroupAck:
		case m.Stage == StageActivate || m.Stage == StageClosing:
			s += fmt.Sprintf(" hears %v epoch %v", m.Hears, m.Epoch)
		case m.Stage == StagePruning:
			s += fmt.Sprintf(" survivors %v %v", m.Members, m.Class)
		case m.Stage == StageCleanup1:
			s += fmt.Sprintf(" install %v epoch %v", m.Members, m.Epoch)
		}
		return s
	case MsgJoinRefused, MsgJoinAbort, MsgAbandon:
		return fmt.Sprintf("%v %d->%d: %s", m.Type, m.From, m.To, m.Reason)
	case MsgJoinCommit, MsgWelcome, MsgJoinState, MsgExit:
		return fmt.Sprintf("%v %d->%d %v epoch %v", m.Type, m.From, m.To, m.Members, m.Epoch)
	}
	return fmt.Sprintf("%v %d->%d", m.Type, m.From, m.To)
}

// Arbitration asks the quorum arbiter to make Members the only registrants
// of the quorum disk (docs/design.md, "Quorum arbitration"): remove the key
// of every other node,
// take the reservation if no member holds it, and answer with
// ArbitrationDone(Round, won, reason). The arbiter waits as Class says
// before it preempts. For ClassForm it registers this node's key first.
type Arbitration struct {
	Round   uint64
	Members NodeSet
	Class   Class
}

// EventKind names an Event.
type EventKind uint8

// Events.
const (
	EventRegroupStarted      EventKind = iota + 1 // {Round}
	EventMembershipInstalled                      // {Epoch, Members}: Cleanup1, join commit, exit, form
	EventNodeDown                                 // {Node}: a member was lost in a regroup (node-down callback)
	EventNodeUp                                   // {Node}: a node joined
	EventNodeLeft                                 // {Node}: a member left with ClusterExit
	EventCleanup2                                 // {Epoch}: second coordinated callback
	EventStabilized                               // {Epoch, Members}: regroup finished
	EventJoined                                   // {Epoch, Members}: this node is a member
	EventJoinFailed                               // {Reason, Fatal}: a join attempt failed
	EventFormed                                   // {Epoch}: this node formed the cluster
	EventLeft                                     // this node left
	EventHalt                                     // {Reason}: stop the cluster service now
)

var eventNames = map[EventKind]string{
	EventRegroupStarted: "RegroupStarted", EventMembershipInstalled: "MembershipInstalled",
	EventNodeDown: "NodeDown", EventNodeUp: "NodeUp", EventNodeLeft: "NodeLeft",
	EventCleanup2: "Cleanup2", EventStabilized: "Stabilized", EventJoined: "Joined",
	EventJoinFailed: "JoinFailed", EventFormed: "Formed", EventLeft: "Left", EventHalt: "Halt",
}

func (k EventKind) String() string {
	if s, ok := eventNames[k]; ok {
		return s
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is something the node's owner must know or act on.
type Event struct {
	Kind    EventKind
	Epoch   Epoch
	Members NodeSet
	Node    NodeID
	Round   uint64
	Reason  string
	Fatal   bool
	// Evicted (EventHalt, EventJoinFailed): an administrator evicted this
	// node; it must not try again until it is added back.
	Evicted bool
}

func (e Event) String() string {
	switch e.Kind {
	case EventMembershipInstalled, EventStabilized, EventJoined:
		return fmt.Sprintf("%v epoch %v members %v", e.Kind, e.Epoch, e.Members)
	case EventNodeDown, EventNodeUp, EventNodeLeft:
		return fmt.Sprintf("%v %d", e.Kind, e.Node)
	case EventRegroupStarted:
		return fmt.Sprintf("%v round %d", e.Kind, e.Round)
	case EventHalt, EventJoinFailed:
		return fmt.Sprintf("%v: %s", e.Kind, e.Reason)
	case EventFormed, EventCleanup2:
		return fmt.Sprintf("%v epoch %v", e.Kind, e.Epoch)
	}
	return e.Kind.String()
}

// Ready is what the node wants done since the last Ready.
type Ready struct {
	Messages []Message
	// Arbitrate, if set, is an arbitration to run now.
	Arbitrate *Arbitration
	// Register asks the arbiter to register this node's key while it joins
	// (before the join commits) and to verify that a member of
	// RegisterFor, the membership it joins, holds the reservation;
	// Unregister to remove the key (after ClusterExit).
	Register, Unregister bool
	RegisterFor          NodeSet
	Events               []Event
}
