package core

import (
	"fmt"
	"math"
	"slices"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/regroup"
)

// The arbiter is the project's only quorum arbitration: it makes a
// membership the only registrants of the quorum LUN with SCSI-3 persistent
// reservations (docs/design.md, "Quorum arbitration"; SPC-4 5.12.11.4
// preempting, 5.12.1 Write Exclusive - Registrants Only). It issues one
// reservation command at a time through the node core and never waits on
// anything but ticks.
//
// Four operations, one at a time:
//   - claim: regroup's Arbitration (or a form): wait as the partition's
//     class says, then PREEMPT every key outside the members and make sure
//     a member holds the reservation; a forming node registers first.
//     Whoever holds the reservation afterwards replays the recovery log
//     before it writes it (GUP's takeover, see gup.go).
//   - register: after a join, register this node's key, then verify that a
//     member of the membership it joined holds the reservation (if not,
//     its sponsor's partition was fenced while the join ran: unregister).
//   - unregister: after ClusterExit.
//   - check: every CheckTicks while a registered member: a node whose key
//     is gone, or that cannot read the keys, loses quorum (self-fence); the
//     holder defends by removing the keys of non-members; the leader of a
//     membership with no reservation takes it.
//
// A claim cancels a running check; a check never starts while another
// operation runs.

// DefaultMaxFenceSteps bounds the read-keys / preempt loop of one claim.
const maxFenceSteps = 4 * nodes.Max

type arbOp uint8

const (
	opNone arbOp = iota
	opClaim
	opRegister
	opUnregister
	opCheck
)

func (o arbOp) String() string {
	return [...]string{"none", "claim", "register", "unregister", "check"}[o]
}

// arbStep is where an operation is: the command it waits for.
type arbStep uint8

const (
	stepIdle           arbStep = iota
	stepFormRegister           // claim (form): REGISTER own key
	stepInspectKeys            // claim: READ KEYS: still registered?
	stepInspectRes             // claim: READ RESERVATION: holder? -> wait
	stepFormSlots              // claim (form, disk in use): READ the slots before the wait
	stepWait                   // claim: waiting the class's delay (ticks)
	stepFormSlotsAgain         // claim (form): READ the slots after the wait: did a member beat?
	stepFenceKeys              // claim: READ KEYS: who is outside?
	stepFencePreempt           // claim: PREEMPT of one outsider
	stepFenceRes               // claim: READ RESERVATION: a member holds it?
	stepReserve                // claim: RESERVE
	stepRegister               // register: REGISTER own key
	stepRegisterRes            // register: READ RESERVATION: holder a member?
	stepUnregister             // unregister / undo a register
	stepCheckKeys              // check: READ KEYS
	stepCheckRes               // check: READ RESERVATION
	stepCheckPreempt           // check: PREEMPT outsiders, one at a time
	stepCheckReserve           // check: RESERVE (no holder, this node leads)
	stepCheckTake              // check: PREEMPT a departed holder (this node leads)
)

// ArbiterConfig configures the arbiter; durations are in ticks.
type ArbiterConfig struct {
	ClusterTag uint32
	Self       nodes.ID
	// DefenceTicks is the defence delay: how long a non-holder of an
	// uncontested partition waits before it preempts (twice that for a
	// contested one; the holder of a contested one waits once).
	DefenceTicks int
	// FormTicks is a forming node's wait when the disk is in use: longer
	// than CheckTicks plus a check, so that a live owner's check removes
	// the former's key first.
	FormTicks int
	// CheckTicks is the quorum check interval.
	CheckTicks int
}

type arbiter struct {
	cfg  ArbiterConfig
	key  uint64
	node *Node // issues commands, receives outcomes
	// wanted and members are regroup's, read through the node: whether a
	// claim's round is still wanted, and the installed membership.
	wanted  func(round uint64) bool
	members func() nodes.Set
	joining func() nodes.Set

	op          arbOp
	step        arbStep
	cmd         uint64 // ID of the command waited for (0: none)
	req         regroup.Arbitration
	waitEnd     int64 // stepWait: tick the wait ends
	steps       int   // fence loop iterations
	victims     []uint64
	pending     struct{ register, unregister, check bool }
	joinMembers nodes.Set // register: the membership being joined

	// slots: a forming node's read of the heartbeat slots before its
	// wait, compared with one after it.
	slots []Slot

	owner  bool   // this node holds the reservation, as last seen
	taking uint64 // stepCheckTake: the departed holder's key
	// noAbort is only for reporting; the fallback itself lives in scsi.
}

func newArbiter(cfg ArbiterConfig, n *Node) *arbiter {
	return &arbiter{cfg: cfg, key: Key(cfg.ClusterTag, cfg.Self), node: n,
		wanted: n.rg.WantsArbitration, members: n.members, joining: n.rg.Joining}
}

func (a *arbiter) issue(step arbStep, c DiskCommand) {
	a.step = step
	a.cmd = a.node.issueDisk(c)
}

func (a *arbiter) idle() {
	a.op, a.step, a.cmd = opNone, stepIdle, 0
	a.victims, a.slots = nil, nil
	switch {
	case a.pending.unregister:
		a.pending.unregister = false
		a.startUnregister()
	case a.pending.register:
		a.pending.register = false
		a.startRegister()
	case a.pending.check:
		a.pending.check = false
		a.check()
	}
}

// memberKey reports whether k is the key of a member of m.
func (a *arbiter) memberKey(k uint64, m nodes.Set) bool {
	tag, id := KeyNode(k)
	return tag == a.cfg.ClusterTag && m.Has(id)
}

// ---- claim ----

func (a *arbiter) claim(req regroup.Arbitration) {
	if a.op == opClaim || a.op == opCheck {
		a.node.logDebug("arbiter: operation replaced by a claim", "op", a.op.String(), "round", a.req.Round)
		a.op = opNone
	}
	if a.op != opNone {
		// register/unregister runs: it cannot be in the way of a claim
		// (both are of a node that is not arbitrating); queue nothing,
		// replace it: a claim decides the registrations anyway.
		a.op = opNone
	}
	a.op, a.req, a.steps, a.slots = opClaim, req, 0, nil
	if req.Class == regroup.ClassForm {
		a.issue(stepFormRegister, DiskCommand{Op: DiskRegister, Key: a.key})
		return
	}
	a.issue(stepInspectKeys, DiskCommand{Op: DiskReadKeys})
}

// cancelClaim drops a claim regroup no longer wants; its command's result
// is ignored when it comes.
func (a *arbiter) cancelClaim() {
	if a.op != opClaim {
		return
	}
	a.node.logDebug("arbiter: claim no longer wanted", "round", a.req.Round)
	a.idle()
}

func (a *arbiter) claimDone(won bool, reason string) {
	req := a.req
	a.idle()
	a.node.arbitrationDone(req, won, reason)
}

// classWait is the claim's wait by class, in ticks (docs/design.md,
// "Defence delay").
func (a *arbiter) classWait(class regroup.Class, holder bool, reserved bool, nkeys int) int {
	d := a.cfg.DefenceTicks
	switch class {
	case regroup.ClassUncontested:
		if !holder {
			return d
		}
	case regroup.ClassContested:
		if holder {
			return d
		}
		return 2 * d
	case regroup.ClassForm:
		if reserved || nkeys > 1 {
			return a.cfg.FormTicks
		}
	}
	return 0
}

func (a *arbiter) stepClaim(r DiskResult) {
	fail := func(what string) { a.claimDone(false, fmt.Sprintf("%s: %s", what, r.errString())) }
	switch a.step {
	case stepFormRegister:
		if r.Outcome != OK {
			fail("register")
			return
		}
		a.issue(stepInspectKeys, DiskCommand{Op: DiskReadKeys})
	case stepInspectKeys:
		if r.Outcome != OK {
			fail("read keys")
			return
		}
		if !slices.Contains(r.Keys, a.key) {
			a.claimDone(false, "this node's key is not registered: fenced")
			return
		}
		a.victims = slices.Clone(r.Keys) // remembered for the class wait
		a.issue(stepInspectRes, DiskCommand{Op: DiskReadReservation})
	case stepInspectRes:
		if r.Outcome != OK {
			fail("read reservation")
			return
		}
		holder := r.Reserved && r.Holder == a.key
		wait := a.classWait(a.req.Class, holder, r.Reserved, len(a.victims))
		a.victims = nil
		if wait > 0 {
			a.node.event(Event{Kind: EventArbitrationWaits, Round: a.req.Round, Class: a.req.Class, Ticks: int64(wait), Owner: holder})
			a.waitEnd = a.node.now + int64(wait)
			if a.req.Class == regroup.ClassForm {
				// A disk in use: find out whether a member still beats on
				// it (docs/design.md, "Quorum arbitration": a live owner
				// defends; its disk heartbeat shows it is alive).
				a.issue(stepFormSlots, DiskCommand{Op: DiskReadSlots})
				return
			}
			a.step, a.cmd = stepWait, 0
			return
		}
		a.fence()
	case stepFormSlots:
		if r.Outcome != OK {
			fail("read the heartbeat slots")
			return
		}
		a.slots = slices.Clone(r.Slots)
		a.step, a.cmd = stepWait, 0
		if a.node.now >= a.waitEnd {
			a.waitOver()
		}
	case stepFormSlotsAgain:
		if r.Outcome != OK {
			fail("read the heartbeat slots")
			return
		}
		if id, ok := a.slotMoved(r.Slots); ok {
			a.claimDone(false, fmt.Sprintf("node %d wrote its disk heartbeat slot during the form delay: a live cluster holds the disk, join it", id))
			return
		}
		a.fence()
	case stepFenceKeys:
		if r.Outcome != OK {
			fail("read keys")
			return
		}
		if !slices.Contains(r.Keys, a.key) {
			a.claimDone(false, "this node's key was removed while it waited: another partition won")
			return
		}
		if i := slices.IndexFunc(r.Keys, func(k uint64) bool { return !a.memberKey(k, a.req.Members) }); i >= 0 {
			a.victims = []uint64{r.Keys[i]}
			a.issue(stepFencePreempt, DiskCommand{Op: DiskPreempt, Key: a.key, Victim: r.Keys[i]})
			return
		}
		a.issue(stepFenceRes, DiskCommand{Op: DiskReadReservation})
	case stepFencePreempt:
		switch r.Outcome {
		case Failed:
			fail(fmt.Sprintf("preempt %#x", a.victims[0]))
			return
		case Conflict:
			// The victim, or this node, is gone: re-read.
			a.node.logInfo("preempt conflict", "victim", fmt.Sprintf("%#x", a.victims[0]))
		default:
			a.node.keyRemoved(a.victims[0], "claim")
		}
		a.fence()
	case stepFenceRes:
		if r.Outcome != OK {
			fail("read reservation")
			return
		}
		if r.Reserved {
			if !a.memberKey(r.Holder, a.req.Members) {
				a.claimDone(false, fmt.Sprintf("reservation held by %#x outside the membership", r.Holder))
				return
			}
			a.owner = r.Holder == a.key
			a.claimDone(true, "")
			return
		}
		a.issue(stepReserve, DiskCommand{Op: DiskReserve, Key: a.key})
	case stepReserve:
		if r.Outcome != OK {
			fail("reserve")
			return
		}
		a.owner = true
		a.claimDone(true, "")
	}
}

// waitOver ends a claim's wait: a forming node reads the slots again
// first, the others fence.
func (a *arbiter) waitOver() {
	if a.req.Class == regroup.ClassForm && a.slots != nil {
		a.issue(stepFormSlotsAgain, DiskCommand{Op: DiskReadSlots})
		return
	}
	a.fence()
}

// slotMoved reports a node other than this one whose slot changed
// (counter or incarnation) between the form wait's two reads: a member
// that wrote its disk heartbeat meanwhile, so a live one.
func (a *arbiter) slotMoved(after []Slot) (nodes.ID, bool) {
	for _, s := range after {
		if s.Node == a.cfg.Self || !s.Node.Valid() {
			continue
		}
		i := slices.IndexFunc(a.slots, func(b Slot) bool { return b.Node == s.Node })
		if i < 0 {
			if s.Counter != 0 {
				return s.Node, true
			}
			continue
		}
		if b := a.slots[i]; b.Counter != s.Counter || b.Incarnation != s.Incarnation {
			return s.Node, true
		}
	}
	return 0, false
}

// fence reads the keys again: PREEMPT the next outsider, or check the
// reservation once only members are left.
func (a *arbiter) fence() {
	a.steps++
	if a.steps > maxFenceSteps {
		a.claimDone(false, "keys keep changing: gave up")
		return
	}
	a.issue(stepFenceKeys, DiskCommand{Op: DiskReadKeys})
}

// ---- register / unregister ----

func (a *arbiter) register(joining nodes.Set) {
	a.joinMembers = joining
	if a.op != opNone {
		a.pending.register = true
		return
	}
	a.startRegister()
}

func (a *arbiter) startRegister() {
	a.op = opRegister
	a.issue(stepRegister, DiskCommand{Op: DiskRegister, Key: a.key})
}

func (a *arbiter) unregister() {
	a.pending.register = false
	if a.op != opNone {
		a.pending.unregister = true
		return
	}
	a.startUnregister()
}

func (a *arbiter) startUnregister() {
	a.op = opUnregister
	a.issue(stepUnregister, DiskCommand{Op: DiskRegister, Key: 0})
}

func (a *arbiter) stepRegister(r DiskResult) {
	switch a.step {
	case stepRegister:
		if r.Outcome != OK {
			a.idle()
			a.node.registered(fmt.Errorf("register key %#x: %s", a.key, r.errString()))
			return
		}
		a.issue(stepRegisterRes, DiskCommand{Op: DiskReadReservation})
	case stepRegisterRes:
		if r.Outcome != OK {
			a.idle()
			a.node.registered(fmt.Errorf("read reservation: %s", r.errString()))
			return
		}
		if m := a.joinMembers; r.Reserved && !a.memberKey(r.Holder, m) {
			err := fmt.Errorf("reservation holder %#x is outside membership %v: the sponsor's partition was fenced", r.Holder, m)
			a.op = opUnregister
			a.issue(stepUnregister, DiskCommand{Op: DiskRegister, Key: 0})
			a.node.registered(err)
			return
		}
		a.idle()
		a.node.registered(nil)
	}
}

// ---- check ----

// checkSoon runs a check as soon as no other operation runs: a new
// membership may have left the disk without a reservation (its holder
// left or was fenced), and a disk without one lets a fenced node write.
func (a *arbiter) checkSoon() {
	if a.op != opNone {
		a.pending.check = true
		return
	}
	a.check()
}

func (a *arbiter) check() {
	if a.op != opNone {
		return
	}
	a.pending.check = false
	a.op = opCheck
	a.issue(stepCheckKeys, DiskCommand{Op: DiskReadKeys})
}

func (a *arbiter) stepCheck(r DiskResult) {
	switch a.step {
	case stepCheckKeys:
		if r.Outcome != OK {
			// A member that cannot confirm its registration cannot tell a
			// dead path from being fenced: it stops, like a fenced one.
			a.idle()
			a.owner = false
			a.node.quorumLost(fmt.Sprintf("quorum disk unreachable: read keys: %s", r.errString()))
			return
		}
		if !slices.Contains(r.Keys, a.key) {
			a.idle()
			a.owner = false
			a.node.quorumLost("this node's key is no longer registered on the quorum disk")
			return
		}
		// A node being joined registered before its join commits: its key
		// is not an outsider's.
		spare := a.members() | a.joining()
		a.victims = a.victims[:0]
		for _, k := range r.Keys {
			if !a.memberKey(k, spare) && !slices.Contains(a.victims, k) {
				a.victims = append(a.victims, k)
			}
		}
		a.issue(stepCheckRes, DiskCommand{Op: DiskReadReservation})
	case stepCheckRes:
		if r.Outcome != OK {
			a.node.logWarn("quorum check", "err", "read reservation: "+r.errString())
			a.idle()
			return
		}
		m := a.members()
		switch {
		case r.Reserved && r.Holder == a.key:
			a.owner = true
			a.nextDefence()
		case !r.Reserved && m.Min() == a.cfg.Self:
			a.issue(stepCheckReserve, DiskCommand{Op: DiskReserve, Key: a.key})
		case r.Reserved && !a.memberKey(r.Holder, m|a.joining()) && m.Min() == a.cfg.Self:
			// The holder left (ClusterExit keeps a holder's key for its
			// successor): preempting its key moves the reservation here
			// in one command, so the LUN is never without one, when
			// any registrant-or-not zombie could write.
			a.victims = slices.DeleteFunc(a.victims, func(k uint64) bool { return k == r.Holder })
			a.issue(stepCheckTake, DiskCommand{Op: DiskPreempt, Key: a.key, Victim: r.Holder})
			a.taking = r.Holder
		default:
			a.owner = false
			a.idle()
		}
	case stepCheckPreempt:
		v := a.victims[0]
		a.victims = a.victims[1:]
		if r.Outcome == OK {
			a.node.keyRemoved(v, "defence")
		} else {
			a.node.logInfo("defend: preempt", "victim", fmt.Sprintf("%#x", v), "err", r.errString())
		}
		a.nextDefence()
	case stepCheckReserve:
		a.owner = r.Outcome == OK
		a.idle()
	case stepCheckTake:
		if r.Outcome != OK {
			a.node.logInfo("take the reservation over", "holder", fmt.Sprintf("%#x", a.taking), "err", r.errString())
			a.idle()
			return
		}
		a.owner = true
		a.node.keyRemoved(a.taking, "defence")
		a.nextDefence()
	}
}

// nextDefence removes the next key outside the membership (a node trying
// to form, a pruned node that has not halted yet).
func (a *arbiter) nextDefence() {
	// The keys were read a while ago (a slow path): a victim may have
	// become a member or a joiner since.
	now := a.members() | a.joining()
	for len(a.victims) > 0 && a.memberKey(a.victims[0], now) {
		a.victims = a.victims[1:]
	}
	if len(a.victims) == 0 {
		a.idle()
		return
	}
	a.issue(stepCheckPreempt, DiskCommand{Op: DiskPreempt, Key: a.key, Victim: a.victims[0]})
}

// preempting reports whether a PREEMPT of node id's key is in flight.
func (a *arbiter) preempting(id nodes.ID) bool {
	if a.cmd == 0 {
		return false
	}
	var k uint64
	switch a.step {
	case stepFencePreempt, stepCheckPreempt:
		if len(a.victims) > 0 {
			k = a.victims[0]
		}
	case stepCheckTake:
		k = a.taking
	default:
		return false
	}
	return a.memberKey(k, nodes.SetOf(id))
}

// ---- results ----

func (a *arbiter) tick() {
	if a.op == opClaim && a.step == stepWait && a.node.now >= a.waitEnd {
		a.waitOver()
	}
}

// nextTick is the tick at which tick has work: the end of a claim's
// wait (math.MaxInt64: none).
func (a *arbiter) nextTick() int64 {
	if a.op == opClaim && a.step == stepWait {
		return a.waitEnd
	}
	return math.MaxInt64
}

// result takes the result of command id; stale results (of a cancelled
// operation) are ignored.
func (a *arbiter) result(r DiskResult) bool {
	if a.cmd == 0 || r.ID != a.cmd {
		return false
	}
	a.cmd = 0
	switch a.op {
	case opClaim:
		a.stepClaim(r)
	case opRegister:
		a.stepRegister(r)
	case opUnregister:
		a.idle()
		a.node.unregistered(r)
	case opCheck:
		a.stepCheck(r)
	}
	return true
}

func (r DiskResult) errString() string {
	if r.Outcome == Conflict {
		return "RESERVATION CONFLICT"
	}
	if r.Err == "" {
		return r.Outcome.String()
	}
	return r.Err
}
