package quorumdisk

import (
	"fmt"
	"slices"
)

// Key returns the reservation key of node in the cluster with tag: the tag
// in the high four bytes, the node id in the low four (DESIGN.md §5.3).
func Key(tag, node uint32) uint64 { return uint64(tag)<<32 | uint64(node) }

// KeyNode splits a reservation key into cluster tag and node id.
func KeyNode(key uint64) (tag, node uint32) { return uint32(key >> 32), uint32(key) }

// Op is a disk command the Arbiter asks its driver to issue. The
// reservation type is always Write Exclusive - Registrants Only.
type Op uint8

// Disk commands.
const (
	// OpRegister: PERSISTENT RESERVE OUT, REGISTER AND IGNORE EXISTING KEY
	// with Command.Key.
	OpRegister Op = iota + 1
	// OpReadReservation: PERSISTENT RESERVE IN, READ RESERVATION.
	OpReadReservation
	// OpReadKeys: PERSISTENT RESERVE IN, READ KEYS.
	OpReadKeys
	// OpReserve: PERSISTENT RESERVE OUT, RESERVE with Command.Key.
	OpReserve
	// OpPreempt: PERSISTENT RESERVE OUT, PREEMPT AND ABORT of
	// Command.Victim with Command.Key (PREEMPT where the target refuses
	// PREEMPT AND ABORT). It takes the reservation over if Victim holds it,
	// and otherwise only removes Victim's registrations.
	OpPreempt
)

func (o Op) String() string {
	switch o {
	case OpRegister:
		return "register"
	case OpReadReservation:
		return "read reservation"
	case OpReadKeys:
		return "read keys"
	case OpReserve:
		return "reserve"
	case OpPreempt:
		return "preempt"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Command is one disk command for the driver.
type Command struct {
	Op     Op
	Key    uint64
	Victim uint64
}

// Outcome is how a command ended.
type Outcome uint8

// Outcomes.
const (
	// OK: GOOD status.
	OK Outcome = iota
	// Conflict: RESERVATION CONFLICT.
	Conflict
	// Failed: any other error (transport, timeout, other sense); the command
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

// Result is the outcome of the outstanding Command, fed back with Step.
type Result struct {
	Op      Op
	Outcome Outcome
	// Err describes a Failed command, for events.
	Err string
	// Reserved and Holder: READ RESERVATION.
	Reserved bool
	Holder   uint64
	// Keys: READ KEYS.
	Keys []uint64
}

// State is the arbiter's state.
type State uint8

// States.
const (
	StateIdle State = iota
	StateRegistering
	StateInspecting
	StateReserving
	StateDefenceWait // a challenger waiting the defence delay
	StateChallenging // reading keys after the delay: was our key removed?
	StatePreempting
	StateVerifying
	StateCleanup // won: removing keys of nodes outside the membership
	StateOwner
	StateLost       // lost the arbitration: another node owns the disk
	StateLostQuorum // was owner, lost the reservation: self-fence
)

func (s State) String() string {
	return [...]string{"idle", "registering", "inspecting", "reserving", "defence wait", "challenging",
		"preempting", "verifying", "cleanup", "owner", "lost", "lost quorum"}[s]
}

// EventKind says what happened.
type EventKind uint8

// Events.
const (
	// EventWon: this node holds the reservation and every key outside the
	// membership is gone; it may form the cluster (after replaying the log).
	EventWon EventKind = iota + 1
	// EventLost: another node holds the reservation and defended it.
	EventLost
	// EventLostQuorum: the owner lost the reservation (or could not verify
	// it for the defence delay): it must take every resource offline and
	// stop at once.
	EventLostQuorum
	// EventKeyRemoved: the key of a node outside the membership was removed.
	EventKeyRemoved
	// EventChallenged: another node holds the reservation; the defence
	// delay starts.
	EventChallenged
)

func (k EventKind) String() string {
	switch k {
	case EventWon:
		return "won"
	case EventLost:
		return "lost"
	case EventLostQuorum:
		return "lost quorum"
	case EventKeyRemoved:
		return "key removed"
	case EventChallenged:
		return "challenging"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is an output of the arbiter.
type Event struct {
	Kind EventKind
	Tick uint64
	// Key is the other node's key: the holder (Lost, Challenged, LostQuorum)
	// or the removed key (KeyRemoved).
	Key    uint64
	Reason string
}

// Ready is what the arbiter wants done: at most one command (the driver
// issues it and feeds the result back with Step) and events to report.
type Ready struct {
	Command *Command
	Events  []Event
}

// ArbiterConfig configures an Arbiter. Durations are in ticks.
type ArbiterConfig struct {
	ClusterTag uint32
	Node       uint32
	// Members is the membership this node arbitrates for; keys of other
	// nodes are removed once it owns the disk. The node itself is always a
	// member.
	Members []uint32
	// CheckTicks is QuorumCheckInterval: the owner re-checks its reservation
	// and removes outsiders' keys this often. Default 10.
	CheckTicks int
	// DefenceTicks is the defence delay: a challenger waits this long after
	// finding another holder before it preempts; it must exceed CheckTicks
	// plus the time of a check. An owner that cannot complete a check for
	// this long reports lost quorum. Default 25.
	DefenceTicks int
	// MaxAttempts bounds the arbitration rounds (a reserve or preempt that
	// conflicts, a verify that finds another holder). Default 4.
	MaxAttempts int
	// MaxFailures bounds consecutive failed commands while arbitrating.
	// Default 5.
	MaxFailures int
}

// Arbiter is quorum arbitration with SCSI-3 persistent reservations as a
// deterministic state machine: it starts no goroutines, reads no clock and
// does no I/O. Inputs are Start, Tick, Step (a command's result),
// SetMembership and Recheck; outputs come from Ready. It is not safe for
// concurrent use.
//
// Reference: DESIGN.md §5.3; SPC-4 5.12.11.4 (preempting), 5.12.1 Table 60
// (Write Exclusive - Registrants Only).
type Arbiter struct {
	cfg     ArbiterConfig
	key     uint64
	members []uint32
	state   State
	now     uint64

	pending  *Command // emitted, not yet returned by Ready
	inflight *Command // issued, result not yet stepped
	events   []Event

	holder   uint64 // the other holder a challenger waits against
	waited   int
	attempts int
	failures int
	retry    *Command // a failed command to issue again on the next tick

	victims      []uint64 // keys to remove
	winning      bool     // cleanup after winning (emit Won when done)
	lastGood     uint64   // tick of the last successful check
	sinceCheck   int
	checkPending bool
}

// NewArbiter returns an idle arbiter.
func NewArbiter(cfg ArbiterConfig) *Arbiter {
	if cfg.CheckTicks <= 0 {
		cfg.CheckTicks = 10
	}
	if cfg.DefenceTicks <= 0 {
		cfg.DefenceTicks = 25
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 4
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 5
	}
	a := &Arbiter{cfg: cfg, key: Key(cfg.ClusterTag, cfg.Node)}
	a.SetMembership(cfg.Members)
	return a
}

// Key is this node's reservation key.
func (a *Arbiter) Key() uint64 { return a.key }

// State is the current state.
func (a *Arbiter) State() State { return a.state }

// Now is the number of ticks so far.
func (a *Arbiter) Now() uint64 { return a.now }

// SetMembership replaces the membership; an owner removes the keys of nodes
// no longer in it at its next check.
func (a *Arbiter) SetMembership(ids []uint32) {
	m := append([]uint32{a.cfg.Node}, ids...)
	slices.Sort(m)
	a.members = slices.Compact(m)
}

// Start begins arbitration (a challenge): register the key, then defend or
// challenge.
func (a *Arbiter) Start() {
	if a.state != StateIdle {
		return
	}
	a.state = StateRegistering
	a.issue(Command{Op: OpRegister, Key: a.key})
}

// Recheck asks an owner to check its reservation now, as when a write
// failed with RESERVATION CONFLICT.
func (a *Arbiter) Recheck() {
	if a.state != StateOwner {
		return
	}
	if a.inflight != nil || a.pending != nil {
		a.checkPending = true
		return
	}
	a.startCheck()
}

// Tick advances logical time by one tick.
func (a *Arbiter) Tick() {
	a.now++
	switch a.state {
	case StateIdle, StateLost, StateLostQuorum:
		return
	case StateDefenceWait:
		a.waited++
		if a.waited >= a.cfg.DefenceTicks && a.inflight == nil {
			a.state = StateChallenging
			a.issue(Command{Op: OpReadKeys})
		}
		return
	case StateOwner:
		if a.now-a.lastGood >= uint64(a.cfg.DefenceTicks) {
			a.lose(StateLostQuorum, 0, fmt.Sprintf("no successful reservation check for %d ticks", a.now-a.lastGood))
			return
		}
		a.sinceCheck++
	}
	if a.inflight != nil || a.pending != nil {
		return
	}
	if a.retry != nil {
		c := *a.retry
		a.retry = nil
		a.issue(c)
		return
	}
	if a.state == StateOwner && (a.sinceCheck >= a.cfg.CheckTicks || a.checkPending) {
		a.startCheck()
	}
}

// Ready returns the command to issue (if any) and the events since the last
// call, and clears them.
func (a *Arbiter) Ready() Ready {
	r := Ready{Command: a.pending, Events: a.events}
	if a.pending != nil {
		a.inflight = a.pending
	}
	a.pending, a.events = nil, nil
	return r
}

func (a *Arbiter) issue(c Command) { a.pending = &c }

func (a *Arbiter) emit(k EventKind, key uint64, reason string) {
	a.events = append(a.events, Event{Kind: k, Tick: a.now, Key: key, Reason: reason})
}

func (a *Arbiter) lose(s State, holder uint64, reason string) {
	a.state = s
	a.pending, a.inflight, a.retry = nil, nil, nil
	if s == StateLost {
		a.emit(EventLost, holder, reason)
	} else {
		a.emit(EventLostQuorum, holder, reason)
	}
}

func (a *Arbiter) startCheck() {
	a.sinceCheck, a.checkPending = 0, false
	a.issue(Command{Op: OpReadReservation})
}

// allowed reports whether key belongs to a member of this cluster.
func (a *Arbiter) allowed(key uint64) bool {
	tag, node := KeyNode(key)
	_, ok := slices.BinarySearch(a.members, node)
	return tag == a.cfg.ClusterTag && ok
}

// Step feeds the result of the outstanding command. A result for no
// outstanding command, or for another op, is an error and changes nothing.
func (a *Arbiter) Step(r Result) error {
	c := a.inflight
	if c == nil || c.Op != r.Op {
		return fmt.Errorf("quorum arbiter: result of %s while %s", r.Op, a.outstanding())
	}
	a.inflight = nil
	if r.Outcome == Failed {
		return a.failed(*c, r)
	}
	if a.state != StateOwner && a.state != StateCleanup {
		a.failures = 0
	}
	switch a.state {
	case StateRegistering:
		if r.Outcome != OK {
			return a.failed(*c, r)
		}
		a.state = StateInspecting
		a.issue(Command{Op: OpReadReservation})
	case StateInspecting, StateVerifying:
		verifying := a.state == StateVerifying
		switch {
		case r.Reserved && r.Holder == a.key:
			// Already the holder: defend at once.
			a.state, a.winning = StateCleanup, true
			a.issue(Command{Op: OpReadKeys})
		case verifying && !a.attempt():
		case !r.Reserved:
			a.state = StateReserving
			a.issue(Command{Op: OpReserve, Key: a.key})
		default:
			a.state, a.holder, a.waited = StateDefenceWait, r.Holder, 0
			a.emit(EventChallenged, r.Holder, "another node holds the reservation; waiting the defence delay")
		}
	case StateReserving, StatePreempting:
		if r.Outcome == Conflict {
			if !a.attempt() {
				return nil
			}
			a.state = StateInspecting
			a.issue(Command{Op: OpReadReservation})
			return nil
		}
		a.state = StateVerifying
		a.issue(Command{Op: OpReadReservation})
	case StateChallenging:
		switch {
		case !slices.Contains(r.Keys, a.key):
			a.lose(StateLost, a.holder, "the holder removed our key during the defence delay: it is alive")
		case !slices.Contains(r.Keys, a.holder):
			// The holder's registration is gone: look again.
			if a.attempt() {
				a.state = StateInspecting
				a.issue(Command{Op: OpReadReservation})
			}
		default:
			a.state = StatePreempting
			a.issue(Command{Op: OpPreempt, Key: a.key, Victim: a.holder})
		}
	case StateCleanup, StateOwner:
		return a.stepOwner(*c, r)
	}
	return nil
}

// attempt counts an arbitration round; past MaxAttempts the node gives up.
func (a *Arbiter) attempt() bool {
	a.attempts++
	if a.attempts > a.cfg.MaxAttempts {
		a.lose(StateLost, a.holder, fmt.Sprintf("no reservation after %d attempts", a.cfg.MaxAttempts))
		return false
	}
	return true
}

// stepOwner handles results of the cleanup after winning and of the
// owner's periodic check: READ RESERVATION, READ KEYS, then one PREEMPT per
// key outside the membership.
func (a *Arbiter) stepOwner(c Command, r Result) error {
	switch c.Op {
	case OpReadReservation:
		if !r.Reserved || r.Holder != a.key {
			reason := "the reservation is gone"
			if r.Reserved {
				reason = fmt.Sprintf("the reservation is held by key 0x%016x", r.Holder)
			}
			a.lose(StateLostQuorum, r.Holder, reason)
			return nil
		}
		a.issue(Command{Op: OpReadKeys})
	case OpReadKeys:
		if !slices.Contains(r.Keys, a.key) {
			a.lose(StateLostQuorum, 0, "our key is no longer registered")
			return nil
		}
		a.victims = a.victims[:0]
		for _, k := range r.Keys {
			if k != a.key && !a.allowed(k) && !slices.Contains(a.victims, k) {
				a.victims = append(a.victims, k)
			}
		}
		a.nextVictim()
	case OpPreempt:
		v := a.victims[0]
		a.victims = a.victims[1:]
		if r.Outcome == OK {
			a.emit(EventKeyRemoved, v, "outside the membership")
		} else {
			// The victim may have gone, or we were preempted: check.
			a.checkPending = true
		}
		a.nextVictim()
	}
	return nil
}

func (a *Arbiter) nextVictim() {
	if len(a.victims) > 0 {
		a.issue(Command{Op: OpPreempt, Key: a.key, Victim: a.victims[0]})
		return
	}
	a.lastGood, a.failures = a.now, 0
	if a.winning {
		a.winning = false
		a.state = StateOwner
		a.sinceCheck = 0
		a.emit(EventWon, 0, "")
	}
	if a.checkPending {
		a.startCheck()
	}
}

// failed handles a Failed (or unexpected) result: retry on the next tick,
// up to MaxFailures while arbitrating; an owner keeps checking until its
// last good check is DefenceTicks old.
func (a *Arbiter) failed(c Command, r Result) error {
	a.failures++
	if a.state != StateOwner && a.failures >= a.cfg.MaxFailures {
		a.lose(StateLost, a.holder, fmt.Sprintf("%s failed %d times: %s", c.Op, a.failures, r.Err))
		return nil
	}
	if a.state == StateOwner || a.state == StateCleanup && !a.winning {
		// Start the check over.
		a.victims = nil
		a.state = StateOwner
		a.checkPending = true
		return nil
	}
	a.retry = &c
	return nil
}

func (a *Arbiter) outstanding() string {
	if a.inflight == nil {
		return "no command is outstanding"
	}
	return a.inflight.Op.String() + " is outstanding"
}
