package resources

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// Default timings, in ticks of 10 ms.
const (
	// DefaultLeaseTicks is how long a node's resources stay online after
	// the disk heartbeat write that last renewed its lease was issued.
	DefaultLeaseTicks = 30 // 300 ms: three disk beats
	// DefaultWaitSlackTicks is added to the lease in a new owner's wait:
	// resmon's reaction to an expired lease (a Terminate) and clock rates.
	DefaultWaitSlackTicks = 5
	// DefaultProposalTicks: a proposal not completed by then is forgotten
	// (its version check makes a late commit harmless).
	DefaultProposalTicks = 300
	// DefaultRetryTicks: the wait before the same proposal again after
	// one that failed for another reason than a changed group.
	DefaultRetryTicks = 100
	// reconcileTicks: the manager looks at its timers this often.
	reconcileTicks = 10
)

// Config configures a Manager. Durations are in ticks; zero takes the
// default.
type Config struct {
	Self nodes.ID
	// Name is this node's name in the database; a member whose node object
	// is missing creates it.
	Name        string
	Incarnation uint64
	// DB is the replicated database, read after GUP applies updates.
	DB *db.DB
	// TickMs is the length of a tick in milliseconds (default 10).
	TickMs int64
	// LeaseTicks is a node's lease; WaitTicks a new owner's wait after the
	// membership that removed the previous owner was installed here
	// (default LeaseTicks + DefaultWaitSlackTicks).
	LeaseTicks, WaitTicks int
	ProposalTicks         int
	RetryTicks            int
	Logger                *slog.Logger
}

// EventKind names a failover manager Event.
type EventKind uint8

// The events.
const (
	EventClaim          EventKind = iota + 1 // {Group, Node: previous owner (0: none), Reason}: this node asked to own the group
	EventOwner                               // {Group, Ticks: lease wait left}: this node owns the group (committed)
	EventLeaseWait                           // {Group, Node, Ticks}: waiting out the previous owner's lease
	EventGroupOnline                         // {Group}
	EventGroupOffline                        // {Group}
	EventResourceFailed                      // {Group, Resource, Reason}
	EventRestart                             // {Group, Resource, Count}
	EventPush                                // {Group, Node: to, Reason}
	EventMove                                // {Group, Node: to}: offline here done, handed over
	EventFailback                            // {Group, Node: to}
	EventGroupFailed                         // {Group, Resource, Reason}
	EventNodeObject                          // {Node, Reason}: this node's node object created, or why not
	EventProposalFailed                      // {Group, Reason}
)

var eventNames = map[EventKind]string{
	EventClaim: "claim", EventOwner: "owner", EventLeaseWait: "lease wait",
	EventGroupOnline: "group online", EventGroupOffline: "group offline",
	EventResourceFailed: "resource failed", EventRestart: "restart", EventPush: "push",
	EventMove: "moved", EventFailback: "failback", EventGroupFailed: "group failed",
	EventNodeObject: "node object", EventProposalFailed: "proposal failed",
}

func (k EventKind) String() string {
	if s, ok := eventNames[k]; ok {
		return s
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is something the failover manager did or concluded.
type Event struct {
	Kind     EventKind
	Group    string
	Resource string
	Node     nodes.ID
	Count    int
	Ticks    int64
	Reason   string
}

func (e Event) String() string {
	s := e.Kind.String()
	if e.Group != "" {
		s += " " + e.Group
	}
	if e.Resource != "" {
		s += "/" + e.Resource
	}
	if e.Node != 0 {
		s += fmt.Sprintf(" node %d", e.Node)
	}
	if e.Ticks != 0 {
		s += fmt.Sprintf(" %d ticks", e.Ticks)
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Proposal is a database transaction the manager wants committed through
// GUP; the driver (the node core) proposes Data and reports the outcome
// with ProposalDone(Key, err).
type Proposal struct {
	Key  string // the group, or "" for this node's node object
	Data []byte
	What string
}

// Ready is what the manager wants done since the last Ready.
type Ready struct {
	Commands  []Command
	Proposals []Proposal
	Events    []Event
}

// Manager is one node's failover manager: a deterministic state machine
// (docs/resources.md, "The failover manager"). It is not safe for
// concurrent use.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	model *Model

	now        int64
	wall       int64 // Unix ms
	hour       int   // local hour of day
	member     bool
	members    nodes.Set
	lease      bool
	resmonUp   bool
	dirty      bool
	wake       int64                // a tick a timer waits for (0: none)
	firstSeen  int64                // tick of the first install here (-1: none yet)
	absent     [nodes.Max + 1]int64 // tick since which a node is out of the membership here; -1 present
	joinedAt   [nodes.Max + 1]int64 // tick a node last came into the membership here
	local      map[string]*local
	groups     map[string]*localGroup
	nodeReq    pending
	nodeFailed string
	draining   bool
	// The event log (events.go): events named so far, the epoch being
	// installed, and the regroup event that removed each absent node and
	// the event of each node's latest join.
	evCount   int64
	epoch     string
	lostEvent [nodes.Max + 1]string
	joinEvent [nodes.Max + 1]string
	// The disk heartbeat's view: diskRead is the tick at which the latest
	// completed slot read was issued; diskSeen[id] the tick at which id's
	// current slot value was first read (-1: never).
	diskRead int64
	diskSeen [nodes.Max + 1]int64

	ready Ready
}

type pending struct {
	inflight bool
	at       int64 // proposed at
	retryAt  int64
	facts    int // recorded facts the proposal carries
}

type local struct {
	group    string
	state    State
	reason   string
	restarts []int64 // ticks of failures within the restart period
	hard     bool    // failed past its threshold: stays failed here
	// orphan: resmon died while it held the resource, which may still run
	// (an address, a unit, an agent's daemon outlive it). It counts as
	// held here until a new resmon reports it offline after a terminate
	// (orphanTerm: that terminate was sent).
	orphan, orphanTerm bool
}

// off reports whether nothing of the resource may be running here.
func (l *local) off() bool { return (l.state == Offline || l.state == Failed) && !l.orphan }

type localGroup struct {
	prop pending
	// claimedAt is when this node's claim committed; notBefore the tick
	// before which it must not bring anything online (the previous owner's
	// lease, counted from the install that removed it); from that owner
	// (0: none, or this node's previous incarnation) and since the tick
	// of that install.
	claimedAt int64
	notBefore int64
	from      nodes.ID
	since     int64
	waiting   bool // a lease wait was reported
	push      bool // a push is due (a resource failed past its threshold)
	pushWhy   string
	pushRes   string
	online    bool // group online was reported
	// The event log: facts waiting for a transaction; the events of the
	// resource failure behind a push or a failed group (and its words),
	// and of this owner's decision to move the group.
	facts                []fact
	pushEvent, failEvent string
	failWhy              string
	moveEvent            string
}

// New returns a manager that owns nothing.
func New(cfg Config) (*Manager, error) {
	if cfg.DB == nil {
		return nil, errors.New("resources: no database")
	}
	if err := db.ValidName(cfg.Name); err != nil {
		return nil, fmt.Errorf("resources: node name: %v", err)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.LeaseTicks, DefaultLeaseTicks)
	def(&cfg.WaitTicks, cfg.LeaseTicks+DefaultWaitSlackTicks)
	def(&cfg.ProposalTicks, DefaultProposalTicks)
	def(&cfg.RetryTicks, DefaultRetryTicks)
	if cfg.TickMs <= 0 {
		cfg.TickMs = 10
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, log: log, firstSeen: -1, local: map[string]*local{}, groups: map[string]*localGroup{},
		resmonUp: true, dirty: true}
	for i := range m.absent {
		m.absent[i], m.diskSeen[i] = -1, -1
	}
	m.model = Load(cfg.DB)
	return m, nil
}

// ---- inputs ----

// Tick advances the manager's clock to now (the node core's tick).
func (m *Manager) Tick(now int64) {
	m.now = now
	if m.dirty || now%reconcileTicks == 0 || (m.wake > 0 && now >= m.wake) {
		m.reconcile()
	}
}

// NextTick is the earliest tick at which Tick has work: at once while a
// change waits to be reconciled, else the next periodic reconciliation or
// the timer the manager waits for, whichever comes first. The result is
// always after the last Tick's now.
func (m *Manager) NextTick() int64 {
	if m.dirty {
		return m.now + 1
	}
	next := (m.now/reconcileTicks + 1) * reconcileTicks
	if m.wake > 0 {
		next = min(next, m.wake)
	}
	return max(next, m.now+1)
}

// SetClock gives the wall clock: Unix milliseconds (failover counts,
// which the database keeps) and the local hour of day (failback windows).
func (m *Manager) SetClock(unixMs int64, hour int) { m.wall, m.hour = unixMs, hour }

// SetMembership tells the manager whether this node is an active member
// (a registered, unhalted member) and of which membership; installed says
// a membership was installed since the last call.
func (m *Manager) SetMembership(member bool, members nodes.Set, installed bool) {
	if installed {
		if m.firstSeen < 0 {
			m.firstSeen = m.now
		}
		for id := nodes.ID(1); id <= nodes.Max; id++ {
			switch {
			case members.Has(id):
				if m.absent[id] >= 0 || !m.members.Has(id) {
					m.joinedAt[id] = m.now
					if m.epoch != "" {
						m.joinEvent[id] = NodeEventName(id, "joined", m.epoch)
					}
				}
				m.absent[id] = -1
			case m.absent[id] < 0:
				m.absent[id] = m.now
				m.lostEvent[id] = ""
				if m.epoch != "" && m.members.Has(id) {
					m.lostEvent[id] = MembershipEventName(m.epoch)
				}
			}
		}
		m.dirty = true
	}
	if member != m.member || members != m.members {
		m.dirty = true
	}
	m.member, m.members = member, members
	m.reconcileIfDirty()
}

// SetLease says whether this node's lease is valid: resmon refuses onlines
// without one, so the manager does not ask.
func (m *Manager) SetLease(valid bool) {
	if valid != m.lease {
		m.lease = valid
		m.dirty = true
	}
}

// DBChanged tells the manager that GUP applied updates.
func (m *Manager) DBChanged() {
	if !m.model.Current(m.cfg.DB) {
		m.dirty = true
		m.reconcileIfDirty()
	}
}

// StepStatus takes resmon's report on a resource.
func (m *Manager) StepStatus(s Status) {
	l := m.local[s.Resource]
	if l == nil {
		// A resource this node never commanded (deleted, or resmon
		// reporting its predecessor's): terminate anything not offline.
		if s.State != Offline {
			m.command(Command{Op: CmdTerminate, Resource: s.Resource})
		}
		return
	}
	prev := l.state
	l.state, l.reason = s.State, s.Reason
	if l.orphan && l.orphanTerm && (s.State == Offline || s.State == Failed) {
		// The new resmon terminated what its predecessor left.
		l.orphan, l.orphanTerm = false, false
	}
	if s.State == Failed && prev != Failed {
		m.failed(s.Resource, l, s.Reason, s.Class)
	}
	m.dirty = true
	m.reconcileIfDirty()
}

// ResmonDown says resmon exited: every resource it had is failed, and an
// orphan until a new resmon has terminated what may be left of it: the
// group cannot leave this node before that.
func (m *Manager) ResmonDown(reason string) {
	m.resmonUp = false
	for _, name := range sortedKeys(m.local) {
		l := m.local[name]
		if l.state != Offline && l.state != Failed {
			l.orphan, l.orphanTerm = true, false
			l.state, l.reason = Failed, "resmon exited: "+reason
			m.failed(name, l, l.reason, FailSoft)
		}
	}
	m.dirty = true
}

// ResmonUp says a (new) resmon runs: it is told to terminate whatever
// its predecessor may have left behind of the groups this node owns, then
// the manager goes on.
func (m *Manager) ResmonUp() {
	m.resmonUp = true
	for _, g := range m.model.Groups {
		if g.Owner != m.cfg.Name {
			continue
		}
		for _, r := range g.Resources {
			m.command(Command{Op: CmdTerminate, Resource: r.Name})
			l := m.res(r)
			l.orphanTerm = l.orphan
			if l.state != Failed {
				l.state = OfflinePending
			}
		}
	}
	// Orphans of groups this node no longer owns (or of deleted
	// resources).
	for _, name := range sortedKeys(m.local) {
		if l := m.local[name]; l.orphan && !l.orphanTerm {
			m.command(Command{Op: CmdTerminate, Resource: name})
			l.orphanTerm = true
		}
	}
	m.dirty = true
	m.reconcileIfDirty()
}

// ProposalDone reports the outcome of a proposal (err nil: committed and
// applied here).
func (m *Manager) ProposalDone(key string, err error) {
	p := &m.nodeReq
	if key != "" {
		lg := m.group(key)
		lg.factsDone(err)
		p = &lg.prop
	}
	p.inflight = false
	if err != nil {
		if !errors.Is(err, db.ErrPrecondition) {
			p.retryAt = m.now + int64(m.cfg.RetryTicks)
		}
		m.event(Event{Kind: EventProposalFailed, Group: key, Reason: err.Error()})
	}
	m.dirty = true
	m.reconcileIfDirty()
}

// Drain starts a planned stop: every group this node owns moves to the
// node the others would choose without it, or goes offline here when
// there is none; the node claims nothing more. Drained reports when it is
// done.
func (m *Manager) Drain() {
	m.draining = true
	m.dirty = true
	m.reconcileIfDirty()
}

// Drained reports whether nothing runs here and no group this node owns
// is still being handed over.
func (m *Manager) Drained() bool {
	for _, l := range m.local {
		if !l.off() {
			return false
		}
	}
	for _, g := range m.model.Groups {
		if g.Owner == m.cfg.Name && g.MovingTo != "" {
			return false
		}
		if lg := m.groups[g.Name]; lg != nil && lg.prop.inflight {
			return false
		}
	}
	return true
}

// ---- outputs and state ----

// HasReady reports whether Ready has anything.
func (m *Manager) HasReady() bool {
	return len(m.ready.Commands)+len(m.ready.Proposals)+len(m.ready.Events) > 0
}

// Ready returns and clears what accumulated.
func (m *Manager) Ready() Ready {
	r := m.ready
	m.ready = Ready{}
	return r
}

// Local returns this node's view of resource name: its state here, and
// whether it failed past its threshold.
func (m *Manager) Local(name string) (State, bool) {
	if l := m.local[name]; l != nil {
		return l.state, l.hard
	}
	return Offline, false
}

// Model is the database as the manager last read it (read only).
func (m *Manager) Model() *Model { return m.model }

// ---- the decision ----

func (m *Manager) reconcileIfDirty() {
	if m.dirty {
		m.reconcile()
	}
}

func (m *Manager) reconcile() {
	m.dirty, m.wake = false, 0
	if !m.model.Current(m.cfg.DB) {
		m.model = Load(m.cfg.DB)
	}
	if !m.member {
		// Not an active member: nothing may stay online here (the lease
		// lapses too, but resmon need not wait for it).
		for _, name := range sortedKeys(m.local) {
			m.down(name, CmdTerminate)
		}
		return
	}
	m.registerNode()
	seen := map[string]bool{}
	for _, g := range m.model.Groups {
		for _, r := range g.Resources {
			seen[r.Name] = true
		}
		m.reconcileGroup(g)
		m.proposeFacts(g, m.group(g.Name))
	}
	// Resources deleted from the database (or moved to another group
	// while online here) go offline.
	for _, name := range sortedKeys(m.local) {
		if !seen[name] {
			m.down(name, CmdTerminate)
			if l := m.local[name]; l.off() && l.state == Offline {
				delete(m.local, name)
			}
		}
	}
}

// registerNode creates this node's node object when the database has
// none with its id.
func (m *Manager) registerNode() {
	if _, ok := m.model.NodeName[m.cfg.Self]; ok || m.nodeReq.inflight || m.now < m.nodeReq.retryAt {
		return
	}
	if id, ok := m.model.NodeID[m.cfg.Name]; ok {
		if why := fmt.Sprintf("node object %q has id %d, not this node's %d", m.cfg.Name, id, m.cfg.Self); why != m.nodeFailed {
			m.nodeFailed = why
			m.event(Event{Kind: EventNodeObject, Node: m.cfg.Self, Reason: why})
		}
		return
	}
	tx := db.Tx{Ops: []db.Op{db.Create(db.KindNode, m.cfg.Name, map[string]db.Value{"id": db.IntValue(int64(m.cfg.Self))}).IfAbsent()}}
	m.propose(&m.nodeReq, "", tx, "create node object "+m.cfg.Name)
}

func (m *Manager) reconcileGroup(g *Group) {
	lg := m.group(g.Name)
	if lg.prop.inflight && m.now-lg.prop.at > int64(m.cfg.ProposalTicks) {
		lg.prop.inflight = false
	}
	ownerID, known := m.model.NodeID[g.Owner]
	mine := g.Owner == m.cfg.Name && known && ownerID == m.cfg.Self
	switch {
	case mine && g.OwnerInc == m.cfg.Incarnation:
		m.own(g, lg)
	case mine && m.draining:
		m.offlineAll(g, CmdTerminate, true)
	case mine:
		// Handed over to this node (OwnerInc 0), or owned by this node's
		// previous incarnation: claim it for this one.
		m.offlineAll(g, CmdTerminate, true)
		wait := int64(0)
		if g.OwnerInc != 0 {
			wait = m.firstSeen + int64(m.cfg.WaitTicks)
		}
		var e eventRec // a hand-over: its group-moved event is recorded
		if g.OwnerInc != 0 {
			e = eventRec{typ: db.EventGroupPulled, cause: fmt.Sprintf("its owner %s restarted (incarnation %d owned it)", m.cfg.Name, g.OwnerInc),
				msg: fmt.Sprintf("group %s claimed again by %s after a restart", g.Name, m.cfg.Name)}
		}
		m.claim(g, lg, m.cfg.Self, wait, m.firstSeen, e)
	default:
		// Another node's group, or nobody's: nothing of it here.
		m.offlineAll(g, CmdTerminate, true)
		lg.claimedAt, lg.online, lg.push = 0, false, false
		if g.Owner != "" && known && m.members.Has(ownerID) {
			return
		}
		if m.draining || m.model.Choose(g, m.members, 0) != m.cfg.Self {
			return
		}
		// An orphan: its owner is out of the membership (or unknown).
		// Every member computed the same new owner; this node is it.
		wait, since := int64(0), m.firstSeen
		e := eventRec{typ: db.EventGroupPulled, msg: fmt.Sprintf("group %s pulled by %s from %s, which is not a member", g.Name, m.cfg.Name, g.Owner)}
		switch {
		case g.Owner == "":
			e = eventRec{typ: db.EventGroupPlaced, cause: "the group had no owner",
				msg: fmt.Sprintf("group %s placed on %s", g.Name, m.cfg.Name)}
		case known && m.absent[ownerID] >= 0:
			since = m.absent[ownerID]
			wait = since + int64(m.cfg.WaitTicks)
			if e.causeEvent = m.lostEvent[ownerID]; e.causeEvent == "" {
				e.cause = fmt.Sprintf("its owner %s is out of the membership", g.Owner)
			}
			e.msg = fmt.Sprintf("group %s pulled by %s from %s, which left the membership", g.Name, m.cfg.Name, g.Owner)
		default:
			wait = m.firstSeen + int64(m.cfg.WaitTicks)
			e.cause = fmt.Sprintf("its owner %s is not a member (or not a node)", g.Owner)
		}
		m.claim(g, lg, ownerID, wait, since, e)
	}
}

// claim proposes this node as g's owner, from the previous owner (this
// node for a hand-over or its own previous incarnation, 0 for none).
// notBefore is the tick before which the new owner must bring nothing
// online: the previous owner's lease, counted from the install here (at
// tick since) that removed it.
func (m *Manager) claim(g *Group, lg *localGroup, from nodes.ID, notBefore, since int64, e eventRec) {
	if lg.prop.inflight || m.now < lg.prop.retryAt {
		return
	}
	e.group, e.node = g.Name, m.cfg.Self
	tx := db.Tx{Ops: []db.Op{
		db.Check(db.KindGroup, g.Name).IfVersion(g.Version),
		db.Set(db.KindGroup, g.Name, map[string]db.Value{
			"owner": db.StringValue(m.cfg.Name), "owner_inc": db.IntValue(int64(m.cfg.Incarnation)),
			"state": db.StringValue("pending"),
		}),
		db.DeleteProps(db.KindGroup, g.Name, "moving_to"),
	}}
	tx.Ops, _ = m.withEvent(g, lg, tx.Ops, e)
	if m.propose(&lg.prop, g.Name, tx, "claim "+g.Name) {
		lg.notBefore, lg.from, lg.since = notBefore, from, since
		if from == m.cfg.Self {
			lg.from = 0 // its own slot says nothing of its predecessor's writes
		}
		lg.claimedAt = m.now
		lg.waiting, lg.online, lg.push = false, false, false
		m.event(Event{Kind: EventClaim, Group: g.Name, Node: from})
	}
}

// leaseEnd is when the previous owner's lease is over for certain: the
// lease after the install that removed it, or sooner, after its last
// disk heartbeat write, once a slot read issued after that install has
// been done. The install came after the arbitration preempted the old
// owner's key, so such a read saw every write of it the target ever
// accepted: its lease ran from before the read that first saw its
// current slot. A crashed owner stopped writing when it crashed, so the
// wait is one slot read instead of the lease; a partitioned one wrote
// until it was preempted, so the wait is the lease after that.
func (m *Manager) leaseEnd(lg *localGroup) int64 {
	end := lg.notBefore
	if x := lg.from; x.Valid() && m.diskRead > lg.since && m.diskSeen[x] >= 0 {
		end = min(end, m.diskSeen[x]+int64(m.cfg.WaitTicks))
	}
	return end
}

// DiskRead gives the disk heartbeat's latest slot read: the tick at which
// it was issued, and for each node the tick at which its current slot
// value was first read (-1: never).
func (m *Manager) DiskRead(issued int64, seen *[nodes.Max + 1]int64) {
	m.diskRead, m.diskSeen = issued, *seen
	m.dirty = true
}

// own runs a group this node owns.
func (m *Manager) own(g *Group, lg *localGroup) {
	if lg.claimedAt == 0 {
		lg.claimedAt = m.now
	}
	if g.MovingTo != "" {
		m.move(g, lg)
		return
	}
	if lg.push && m.startPush(g, lg) {
		return
	}
	if m.draining {
		if to := m.model.Choose(g, m.members, m.cfg.Self); to != 0 {
			m.setMovingTo(g, lg, m.model.NodeName[to], nil, eventRec{typ: db.EventGroupDrained, node: to, cause: m.drainCause(),
				msg: fmt.Sprintf("group %s leaves %s for %s: drain", g.Name, m.cfg.Name, m.model.NodeName[to])})
		} else {
			m.offlineAll(g, CmdOffline, true)
		}
		return
	}
	if m.model.Draining.Has(m.cfg.Self) {
		// An administrator drains this node (or evicted it) through the
		// database: the groups move as in a planned stop, but a group no
		// other node can take stays here, and the database says why.
		if to := m.model.Choose(g, m.members, m.cfg.Self); to != 0 {
			m.setMovingTo(g, lg, m.model.NodeName[to], nil, eventRec{typ: db.EventGroupDrained, node: to,
				cause: fmt.Sprintf("an administrator drains (or evicts) node %s", m.cfg.Name),
				msg:   fmt.Sprintf("group %s leaves %s for %s: drain", g.Name, m.cfg.Name, m.model.NodeName[to])})
			return
		}
		if why := "drain of " + m.cfg.Name + ": no other member may host it"; g.MoveError != why {
			m.writeMoveError(g, lg, why)
		}
	}
	if g.Offline {
		if m.offlineAll(g, CmdOffline, true) && g.State != "offline" {
			m.writeState(g, lg, "offline")
			if lg.online {
				lg.online = false
				m.event(Event{Kind: EventGroupOffline, Group: g.Name})
			}
		}
		return
	}
	if end := m.leaseEnd(lg); m.now < end {
		m.wakeAt(end)
		if !lg.waiting {
			lg.waiting = true
			m.event(Event{Kind: EventLeaseWait, Group: g.Name, Node: lg.from, Ticks: end - m.now})
		}
		return
	}
	if !m.lease || !m.resmonUp {
		return
	}
	// Online in dependency order; offline (in reverse) what the
	// administrator wants offline, and whatever depends on a resource
	// that is not online.
	online := map[string]bool{}
	for _, r := range g.Resources {
		l := m.res(r)
		depsUp := true
		for _, d := range r.DependsOn {
			if !online[d] {
				depsUp = false
			}
		}
		if l.state == Online && depsUp && !r.Offline {
			online[r.Name] = true
			continue
		}
		if l.state == Offline && depsUp && !r.Offline && !l.hard && !l.orphan {
			m.command(m.onlineCommand(g, r))
			l.state = OnlinePending
		}
	}
	for i := len(g.Resources) - 1; i >= 0; i-- {
		r := g.Resources[i]
		l := m.res(r)
		if l.state == Online && !online[r.Name] {
			if !m.dependentsDown(g, r) {
				continue
			}
			m.command(Command{Op: CmdOffline, Resource: r.Name})
			l.state = OfflinePending
		}
	}
	state := m.groupState(g)
	if state == "online" && !lg.online {
		lg.online = true
		m.event(Event{Kind: EventGroupOnline, Group: g.Name})
	}
	if state != "pending" {
		m.writeState(g, lg, state)
	}
	if state == "online" {
		m.failback(g, lg)
	}
}

// groupState: failed (a resource failed past its threshold), online
// (every resource wanted online is), else pending.
func (m *Manager) groupState(g *Group) string {
	all := true
	for _, r := range g.Resources {
		l := m.res(r)
		if l.hard {
			return "failed"
		}
		if !r.Offline && l.state != Online {
			all = false
		}
	}
	if all {
		return "online"
	}
	return "pending"
}

// writeState records the group's settled state and its resources' states
// in the database, when they differ from what it holds.
func (m *Manager) writeState(g *Group, lg *localGroup, state string) {
	if lg.prop.inflight || m.now < lg.prop.retryAt {
		return
	}
	ops := []db.Op{db.Check(db.KindGroup, g.Name).IfVersion(g.Version)}
	if g.State != state {
		ops = append(ops, db.Set(db.KindGroup, g.Name, map[string]db.Value{"state": db.StringValue(state)}))
	}
	for _, r := range g.Resources {
		l := m.res(r)
		s := l.state
		if s != Online && s != Offline && s != Failed {
			continue
		}
		if r.State == s.String() && (s != Failed || r.Props.Str("reason", "") == l.reason) {
			continue
		}
		p := map[string]db.Value{"state": db.StringValue(s.String()), "state_node": db.StringValue(m.cfg.Name)}
		if s == Failed {
			p["reason"] = db.StringValue(trim(l.reason))
		}
		ops = append(ops, db.Set(db.KindResource, r.Name, p))
	}
	if len(ops) == 1 {
		return
	}
	if g.State != state {
		ops, _ = m.withEvent(g, lg, ops, m.stateEvent(g, lg, state))
	}
	m.propose(&lg.prop, g.Name, db.Tx{Ops: ops}, "state "+g.Name+" "+state)
}

// stateEvent records a group's new settled state on this node.
func (m *Manager) stateEvent(g *Group, lg *localGroup, state string) eventRec {
	e := eventRec{group: g.Name, node: m.cfg.Self, msg: fmt.Sprintf("group %s %s on %s", g.Name, state, m.cfg.Name)}
	switch state {
	case "online":
		e.typ = db.EventGroupOnline
	case "offline":
		e.typ, e.cause = db.EventGroupOffline, "target_state offline (an administrator)"
	case "failed":
		e.typ, e.causeEvent, e.cause = db.EventGroupFailed, lg.failEvent, lg.failWhy
		if e.causeEvent != "" {
			e.cause = ""
		}
		if lg.failWhy != "" {
			e.msg += ": " + lg.failWhy
		}
	}
	return e
}

func trim(s string) string {
	if len(s) > 1024 {
		return s[:1024]
	}
	return s
}

// failback moves an online group back to a more preferred owner that
// joined after this node took it, when the policy allows it now.
func (m *Manager) failback(g *Group, lg *localGroup) {
	if g.Failback == FailbackNever || lg.prop.inflight {
		return
	}
	if g.Failback == FailbackWindow && !inWindow(m.hour, g.WindowStart, g.WindowEnd) {
		return
	}
	for _, name := range g.Preferred {
		id, ok := m.model.NodeID[name]
		if !ok {
			continue
		}
		if id == m.cfg.Self {
			return // this node is the most preferred one present
		}
		if m.members.Has(id) && !m.model.Paused.Has(id) && m.model.Possible(g, id) && m.joinedAt[id] > lg.claimedAt {
			e := eventRec{typ: db.EventGroupFailback, node: id, causeEvent: m.joinEvent[id],
				msg: fmt.Sprintf("group %s fails back from %s to %s (failback %s)", g.Name, m.cfg.Name, name, failbackName(g.Failback))}
			if e.causeEvent == "" {
				e.cause = fmt.Sprintf("%s, more preferred, joined", name)
			}
			m.setMovingTo(g, lg, name, nil, e)
			m.event(Event{Kind: EventFailback, Group: g.Name, Node: id})
			return
		}
	}
}

func inWindow(h, start, end int) bool {
	if start <= end {
		return h >= start && h < end
	}
	return h >= start || h < end
}

// failed handles a resource's failure: restart in place while under its
// threshold, then (as its restart action says) push the group or leave
// the resource failed. A hard failure skips the restarts (the resource
// cannot run on this node); a fatal one leaves it failed, not moved (it
// cannot run anywhere).
func (m *Manager) failed(name string, l *local, reason string, class FailureClass) {
	g := m.model.Group(l.group)
	var r *Resource
	if g != nil {
		for _, x := range g.Resources {
			if x.Name == name {
				r = x
			}
		}
	}
	if r == nil || g.Owner != m.cfg.Name {
		l.state = Offline
		return
	}
	m.event(Event{Kind: EventResourceFailed, Group: g.Name, Resource: name, Reason: reason})
	period := r.RestartPeriodS * 1000 / m.cfg.TickMs
	l.restarts = slices.DeleteFunc(l.restarts, func(t int64) bool { return m.now-t >= period })
	l.restarts = append(l.restarts, m.now)
	// Whatever depends on it goes offline (it comes back after it).
	m.offlineDependents(g, r)
	lg := m.group(g.Name)
	fe := eventRec{typ: db.EventResFailed, group: g.Name, resource: name, node: m.cfg.Self, cause: class.String() + " failure: " + reason}
	switch {
	case class == FailSoft && r.Restart != NoRestart && len(l.restarts) <= r.RestartThreshold:
		l.state = Offline // resmon terminated it; online again
		fe.msg = fmt.Sprintf("resource %s failed on %s (%s): restart in place, %d of %d in %ds", name, m.cfg.Name, class, len(l.restarts), r.RestartThreshold, r.RestartPeriodS)
		m.recordFact(g, fe)
		m.event(Event{Kind: EventRestart, Group: g.Name, Resource: name, Count: len(l.restarts)})
	case class != FailFatal && r.Restart == RestartThenFailover:
		// Past its threshold (or a hard failure): it does not restart
		// here, whether the push happens (the group leaves) or not (it
		// stays failed). Two resources may get here before the push:
		// each stays down.
		l.state, l.hard = Offline, true
		lg.push, lg.pushRes = true, name
		lg.pushWhy = fmt.Sprintf("resource %s failed %d times in %ds: %s", name, len(l.restarts), r.RestartPeriodS, reason)
		if class == FailHard {
			lg.pushWhy = fmt.Sprintf("resource %s failed (hard: it cannot run on this node): %s", name, reason)
		}
		fe.msg = fmt.Sprintf("resource %s failed on %s (%s): no restart in place; the group fails over", name, m.cfg.Name, class)
		lg.pushEvent = m.recordFact(g, fe)
	default:
		l.hard = true
		fe.msg = fmt.Sprintf("resource %s failed on %s (%s): no restart; it stays failed", name, m.cfg.Name, class)
		lg.failEvent, lg.failWhy = m.recordFact(g, fe), fmt.Sprintf("resource %s failed: %s", name, reason)
		m.event(Event{Kind: EventGroupFailed, Group: g.Name, Resource: name, Reason: reason})
	}
}

// startPush moves the group to the next owner after this one, if its
// failover threshold allows; otherwise the resource stays failed here. It
// reports whether a push is under way.
func (m *Manager) startPush(g *Group, lg *localGroup) bool {
	if lg.prop.inflight || m.now < lg.prop.retryAt {
		return true
	}
	period := g.FailoverPeriodS * 1000
	recent := slices.DeleteFunc(slices.Clone(g.Failovers), func(t int64) bool { return m.wall-t >= period })
	to := m.model.Choose(g, m.members, m.cfg.Self)
	if to == 0 || len(recent) >= g.FailoverThreshold {
		lg.push = false
		why := "no other possible owner is a member"
		if to != 0 {
			why = fmt.Sprintf("failover threshold: %d failovers in %ds", len(recent), g.FailoverPeriodS)
		}
		if l := m.local[lg.pushRes]; l != nil {
			l.hard = true
		}
		lg.failEvent, lg.failWhy = lg.pushEvent, lg.pushWhy+"; not moved: "+why
		m.event(Event{Kind: EventGroupFailed, Group: g.Name, Resource: lg.pushRes, Reason: lg.failWhy})
		return false
	}
	recent = append(recent, m.wall)
	list := make([]string, len(recent))
	for i, t := range recent {
		list[i] = strconv.FormatInt(t, 10)
	}
	name := m.model.NodeName[to]
	// lg.push stays set until the move is seen committed (move runs
	// instead of this) or the proposal is retried.
	if m.setMovingTo(g, lg, name, list, eventRec{typ: db.EventGroupPushed, node: to, causeEvent: lg.pushEvent, cause: lg.pushWhy,
		msg: fmt.Sprintf("group %s pushed from %s to %s: %s", g.Name, m.cfg.Name, name, lg.pushWhy)}) {
		m.event(Event{Kind: EventPush, Group: g.Name, Node: to, Reason: lg.pushWhy})
	}
	return true
}

// writeMoveError records why the group cannot move (a drain with no
// other owner to take it).
func (m *Manager) writeMoveError(g *Group, lg *localGroup, why string) {
	tx := db.Tx{Ops: []db.Op{db.Check(db.KindGroup, g.Name).IfVersion(g.Version),
		db.Set(db.KindGroup, g.Name, map[string]db.Value{"move_error": db.StringValue(trim(why))})}}
	m.propose(&lg.prop, g.Name, tx, "no move of "+g.Name+": "+why)
}

func (m *Manager) setMovingTo(g *Group, lg *localGroup, to string, failovers []string, e eventRec) bool {
	if lg.prop.inflight || m.now < lg.prop.retryAt {
		return false
	}
	p := map[string]db.Value{"moving_to": db.StringValue(to)}
	if failovers != nil {
		p["failovers"] = db.ListValue(failovers...)
	}
	e.group = g.Name
	tx := db.Tx{Ops: []db.Op{db.Check(db.KindGroup, g.Name).IfVersion(g.Version), db.Set(db.KindGroup, g.Name, p),
		db.DeleteProps(db.KindGroup, g.Name, "move_error")}}
	tx.Ops, lg.moveEvent = m.withEvent(g, lg, tx.Ops, e)
	return m.propose(&lg.prop, g.Name, tx, "move "+g.Name+" to "+to)
}

func failbackName(f Failback) string {
	switch f {
	case FailbackImmediate:
		return "immediate"
	case FailbackWindow:
		return "window"
	}
	return "never"
}

// move takes the group offline here, then hands it to moving_to, which
// claims it. A move to a node that is not a possible owner in the
// membership is cancelled.
func (m *Manager) move(g *Group, lg *localGroup) {
	if why := m.model.Unfit(g, g.MovingTo, m.cfg.Self, m.members); why != "" {
		// Cancelled: the reason goes into the database with it, where the
		// administrator's `cluster group move` reads it.
		if !lg.prop.inflight && m.now >= lg.prop.retryAt {
			tx := db.Tx{Ops: []db.Op{
				db.Check(db.KindGroup, g.Name).IfVersion(g.Version),
				db.DeleteProps(db.KindGroup, g.Name, "moving_to"),
				db.Set(db.KindGroup, g.Name, map[string]db.Value{"move_error": db.StringValue(trim("move to " + g.MovingTo + " cancelled: " + why))}),
			}}
			m.propose(&lg.prop, g.Name, tx, "cancel the move of "+g.Name+" to "+g.MovingTo)
		}
		return
	}
	to := m.model.NodeID[g.MovingTo]
	if !m.offlineAll(g, CmdOffline, false) || lg.prop.inflight || m.now < lg.prop.retryAt {
		return
	}
	// The node this one hands the group to does not wait (owner_inc 0):
	// a previous owner's lease that this node still waits out must be
	// over first.
	if end := m.leaseEnd(lg); m.now < end {
		m.wakeAt(end)
		return
	}
	ops := []db.Op{
		db.Check(db.KindGroup, g.Name).IfVersion(g.Version),
		db.Set(db.KindGroup, g.Name, map[string]db.Value{
			"owner": db.StringValue(g.MovingTo), "owner_inc": db.IntValue(0), "state": db.StringValue("pending"),
		}),
		db.DeleteProps(db.KindGroup, g.Name, "moving_to"),
	}
	for _, r := range g.Resources {
		if r.State != "" && r.State != Offline.String() {
			ops = append(ops, db.Set(db.KindResource, r.Name, map[string]db.Value{"state": db.StringValue(Offline.String())}))
		}
	}
	e := eventRec{typ: db.EventGroupMoved, group: g.Name, node: to,
		msg: fmt.Sprintf("group %s handed over from %s to %s", g.Name, m.cfg.Name, g.MovingTo)}
	if g.Event != lg.moveEvent || lg.moveEvent == "" {
		// Not this owner's decision: an administrator set moving_to.
		e.cause = fmt.Sprintf("an administrator's move to %s", g.MovingTo)
	}
	ops, _ = m.withEvent(g, lg, ops, e)
	if m.propose(&lg.prop, g.Name, db.Tx{Ops: ops}, "hand "+g.Name+" to "+g.MovingTo) {
		m.event(Event{Kind: EventMove, Group: g.Name, Node: to})
	}
}

// offlineAll takes every resource of g offline here, dependents first
// (op CmdOffline), or at once (CmdTerminate). It reports whether all
// are offline. Once they are, reset forgets their failures here (their
// restarts, a hard or fatal failure): the group left this node, or an
// administrator took it offline. A move does not reset: it may be
// cancelled (its target became unfit) and the group stay here, where a
// fatal failure must keep it failed.
func (m *Manager) offlineAll(g *Group, op CommandOp, reset bool) bool {
	done := true
	for i := len(g.Resources) - 1; i >= 0; i-- {
		r := g.Resources[i]
		l := m.local[r.Name]
		if l == nil || l.off() {
			continue
		}
		done = false
		if op == CmdOffline && !m.dependentsDown(g, r) {
			continue
		}
		m.down(r.Name, op)
	}
	if done && reset {
		for _, r := range g.Resources {
			if l := m.local[r.Name]; l != nil {
				l.restarts, l.hard = nil, false
				if l.state == Failed {
					// resmon terminated it: offline, to be brought online
					// again if the group comes back.
					l.state = Offline
				}
			}
		}
	}
	return done
}

// down sends name offline (or terminates it) unless that is under way.
func (m *Manager) down(name string, op CommandOp) {
	l := m.local[name]
	if l == nil || l.off() {
		return
	}
	if l.orphan {
		// Only a new resmon's terminate clears it (ResmonUp sends it).
		if m.resmonUp && !l.orphanTerm {
			m.command(Command{Op: CmdTerminate, Resource: name})
			l.orphanTerm = true
		}
		return
	}
	if l.state == OfflinePending && op == CmdOffline {
		return
	}
	if op == CmdTerminate && l.state == OfflinePending && l.reason == "terminate" {
		return
	}
	if !m.resmonUp {
		return
	}
	m.command(Command{Op: op, Resource: name})
	l.state = OfflinePending
	if op == CmdTerminate {
		l.reason = "terminate"
	}
}

// dependentsDown reports whether every resource of g that depends on r
// is offline (or failed) here.
func (m *Manager) dependentsDown(g *Group, r *Resource) bool {
	for _, x := range g.Resources {
		if slices.Contains(x.DependsOn, r.Name) {
			if l := m.res(x); !l.off() {
				return false
			}
		}
	}
	return true
}

// offlineDependents takes offline what depends on r, transitively.
func (m *Manager) offlineDependents(g *Group, r *Resource) {
	for _, x := range g.Resources {
		if slices.Contains(x.DependsOn, r.Name) {
			m.offlineDependents(g, x)
			m.down(x.Name, CmdOffline)
		}
	}
}

func (m *Manager) onlineCommand(g *Group, r *Resource) Command {
	props := Props{}
	for k, v := range r.Props {
		props[k] = v
	}
	if r.Type == "network_name" {
		if _, ok := props["addresses"]; !ok {
			var addrs []string
			for _, x := range g.Resources {
				if x.Type == "ip_address" && slices.Contains(r.DependsOn, x.Name) {
					addrs = append(addrs, x.Props.Str("address", ""))
					if _, ok := props["interface"]; !ok {
						if ifc := x.Props.Str("interface", ""); ifc != "" {
							props["interface"] = db.StringValue(ifc)
						}
					}
				}
			}
			props["addresses"] = db.ListValue(addrs...)
		}
	}
	for k, v := range r.TypeProps {
		props[PropResourceTypePrefix+k] = v
	}
	props[PropNodeID] = db.IntValue(int64(m.cfg.Self))
	props[PropNodeName] = db.StringValue(m.cfg.Name)
	return Command{Op: CmdOnline, Resource: r.Name, Type: r.Type, Props: props,
		LooksAliveMs: r.LooksAliveMs, IsAliveMs: r.IsAliveMs, PendingTimeoutMs: r.PendingTimeoutMs}
}

// ---- helpers ----

func (m *Manager) res(r *Resource) *local {
	l := m.local[r.Name]
	if l == nil {
		l = &local{group: r.Group}
		m.local[r.Name] = l
	}
	l.group = r.Group
	return l
}

func (m *Manager) group(name string) *localGroup {
	lg := m.groups[name]
	if lg == nil {
		lg = &localGroup{}
		m.groups[name] = lg
	}
	return lg
}

// wakeAt asks for a reconcile at tick t.
func (m *Manager) wakeAt(t int64) {
	if m.wake == 0 || t < m.wake {
		m.wake = t
	}
}

func (m *Manager) command(c Command) {
	m.ready.Commands = append(m.ready.Commands, c)
}

func (m *Manager) event(e Event) {
	m.ready.Events = append(m.ready.Events, e)
}

// propose queues tx unless a proposal for key is in flight or waits to
// be retried; it reports whether it queued it.
func (m *Manager) propose(p *pending, key string, tx db.Tx, what string) bool {
	if p.inflight || m.now < p.retryAt {
		return false
	}
	data, err := tx.MarshalBinary()
	if err != nil {
		m.event(Event{Kind: EventProposalFailed, Group: key, Reason: fmt.Sprintf("%s: %v", what, err)})
		p.retryAt = m.now + int64(m.cfg.RetryTicks)
		return false
	}
	p.inflight, p.at = true, m.now
	m.ready.Proposals = append(m.ready.Proposals, Proposal{Key: key, Data: data, What: what})
	return true
}

func sortedKeys[V any](mp map[string]V) []string {
	ks := make([]string, 0, len(mp))
	for k := range mp {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
