// Package core is one cluster node's protocol state machine: the failure
// detector, regroup membership, quorum arbitration and the disk heartbeat
// behind one Tick / Step / Ready, in the shape of etcd raft's RawNode. It
// starts no goroutines, reads no clock and does no I/O: clusterd and the
// simulator both drive this same type, and only execute what it asks
// (docs/design.md, "The node core and its drivers").
package core

import (
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/wolfpack-ha/wolfpack/gup"
	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/heartbeat"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// Default timings in ticks of 10 ms (docs/design.md, "Timings").
const (
	DefaultDefenceTicks  = 15  // 150 ms
	DefaultFormTicks     = 150 // 1.5 s: more than a quorum check
	DefaultCheckTicks    = 100 // 1 s
	DefaultDiskBeatTicks = 10  // 100 ms: slot write, then slot and mailbox read
	// DefaultDiskAliveBeats: a peer whose slot changed within this many
	// disk beats is alive on the disk.
	DefaultDiskAliveBeats = 3
)

// Config configures a Node. Durations are in ticks; zero takes the default.
type Config struct {
	// ClusterTag is the cluster id of heartbeats and regroup, and the high
	// half of every reservation key.
	ClusterTag  uint32
	Self        nodes.ID
	Incarnation uint64 // boot id, growing across restarts, never 0
	Nodes       nodes.Set
	Networks    int
	Secret      []byte

	HeartbeatTicks     int // heartbeat interval
	HeartbeatThreshold int // missed intervals on every network before suspicion
	HeartbeatPhase     int // this node's send tick within the interval
	JoinWindowTicks    int // no member answered for this long: form
	ArbitrationTicks   int // a follower's wait for the leader's arbitration
	DefenceTicks       int
	FormTicks          int
	CheckTicks         int
	DiskBeatTicks      int
	DiskAliveBeats     int

	// State is the cluster database GUP replicates (nil: an empty state
	// that ignores every update).
	State gup.StateMachine
	// NoGUP leaves GUP out: the node never touches the recovery log (cluster
	// quorum hold, which writes the log itself).
	NoGUP bool
	// GUP's timings and bounds; zero takes gup's defaults.
	GUP GUPConfig

	// DB is the cluster database (the one State applies updates to): with
	// it the node runs the failover manager, as node Name.
	DB   *db.DB
	Name string
	// LeaseTicks is the lease the disk heartbeat renews; LeaseWaitTicks a
	// new owner's wait after the install that removed the previous owner
	// (default LeaseTicks + resources.DefaultWaitSlackTicks).
	LeaseTicks, LeaseWaitTicks int

	Logger *slog.Logger
}

func (c *Config) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.HeartbeatTicks, heartbeat.DefaultIntervalTicks)
	def(&c.HeartbeatThreshold, heartbeat.DefaultThreshold)
	def(&c.DefenceTicks, DefaultDefenceTicks)
	def(&c.CheckTicks, DefaultCheckTicks)
	def(&c.FormTicks, max(DefaultFormTicks, c.CheckTicks+50))
	def(&c.DiskBeatTicks, DefaultDiskBeatTicks)
	def(&c.DiskAliveBeats, DefaultDiskAliveBeats)
	def(&c.JoinWindowTicks, regroup.DefaultFormTicks)
	def(&c.ArbitrationTicks, regroup.DefaultArbitrationTicks)
	def(&c.LeaseTicks, DefaultLeaseTicks)
	if c.Networks <= 0 {
		c.Networks = 1
	}
}

// EventKind names a node core Event.
type EventKind uint8

// Node core events (the detector's and regroup's come as they are).
const (
	EventArbitrationStarted EventKind = iota + 1 // {Round, Members, Class}
	EventArbitrationWaits                        // {Round, Class, Ticks, Owner: this node holds the reservation}
	EventArbitrationDone                         // {Round, Won, Owner, Reason, Ticks}
	EventKeyRegistered                           // {Key}
	EventRegisterFailed                          // {Reason}
	EventKeyRemoved                              // {Key, Reason: "claim" or "defence"}: a key outside the membership was preempted
	EventUnregistered                            // {Reason: error, if any; Owner: the holder kept its key for its successor to preempt}
	EventQuorumLost                              // {Reason}
	EventPillSent                                // {Node, Incarnation}
	EventPillRead                                // {Node: sender, Reason}
	EventDiskDown                                // {Reason}: a slot write or read failed
)

var eventNames = map[EventKind]string{
	EventArbitrationStarted: "arbitration started", EventArbitrationWaits: "arbitration waits",
	EventArbitrationDone: "arbitration done",
	EventKeyRegistered:   "key registered", EventRegisterFailed: "register failed",
	EventKeyRemoved: "key removed", EventUnregistered: "key unregistered",
	EventQuorumLost: "lost quorum", EventPillSent: "poison pill sent",
	EventPillRead: "poison pill read", EventDiskDown: "disk heartbeat failed",
}

func (k EventKind) String() string {
	if s, ok := eventNames[k]; ok {
		return s
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is something the node core did or concluded.
type Event struct {
	Kind        EventKind
	Round       uint64
	Members     nodes.Set
	Class       regroup.Class
	Won, Owner  bool
	Reason      string
	Key         uint64
	Node        nodes.ID
	Incarnation uint64
	Ticks       int64
}

func (e Event) String() string {
	switch e.Kind {
	case EventArbitrationStarted:
		return fmt.Sprintf("%v round %d %v %v", e.Kind, e.Round, e.Members, e.Class)
	case EventArbitrationDone:
		return fmt.Sprintf("%v round %d won=%v owner=%v %s", e.Kind, e.Round, e.Won, e.Owner, e.Reason)
	case EventKeyRegistered, EventKeyRemoved:
		return fmt.Sprintf("%v %#x", e.Kind, e.Key)
	case EventPillSent:
		return fmt.Sprintf("%v to %d (incarnation %d)", e.Kind, e.Node, e.Incarnation)
	case EventPillRead:
		return fmt.Sprintf("%v from %d: %s", e.Kind, e.Node, e.Reason)
	}
	if e.Reason != "" {
		return fmt.Sprintf("%v: %s", e.Kind, e.Reason)
	}
	return e.Kind.String()
}

// Ready is what the node wants done since the last Ready, in order within
// each kind.
type Ready struct {
	// Heartbeats to send.
	Sends []heartbeat.Send
	// Regroup messages to send.
	Messages []regroup.Message
	// Disk commands to execute, in order, each answered with StepDisk.
	Disk []DiskCommand
	// Events of the detector, of regroup and of the node core.
	Detector   []heartbeat.Event
	Membership []regroup.Event
	Events     []Event
	// GUP's messages to send on the streams, completions of this node's
	// updates, reads that may now be served, and its events.
	GUP gup.Ready
	// Resources are the failover manager's commands to resmon, Lease the
	// latest lease renewal (or revocation) for it, Failover its events.
	Resources []resources.Command
	Lease     *Lease
	Failover  []resources.Event
}

// Node is one node's protocol state. It is not safe for concurrent use.
type Node struct {
	cfg Config
	log *slog.Logger
	now int64
	det *heartbeat.Detector
	rg  *regroup.Node
	arb *arbiter
	gup *gup.Node
	// gupCmds maps the disk commands GUP issued to its log operations.
	gupCmds   map[uint64]gup.LogOp
	installed bool // a membership was installed since GUP last heard

	// The failover manager (nil without a database) and its proposals'
	// request numbers.
	fm           *resources.Manager
	fmReqs       map[uint64]string
	fmInstalled  bool
	ev           evState // the event log's recorder (events.go)
	leaseUntil   int64   // tick the lease runs out
	leaseRevoked bool
	beatIssued   int64 // tick the outstanding slot write was issued

	ready  Ready
	nextID uint64

	claimStart int64
	halted     string

	// Disk heartbeat.
	slot     Slot
	beatCmd  uint64 // outstanding slot write or read (0: none)
	lastBeat int64
	peers    [nodes.Max + 1]diskPeer
	pillSeq  uint64

	// Authentication failures while joining.
	accepted uint64 // regroup frames stepped
	badFrom  nodes.Set
	badCount int
	badSince int64
	refused  string
}

type diskPeer struct {
	seen        bool
	seenAt      int64 // tick the current slot value was first read
	counter     uint64
	incarnation uint64
	changedAt   int64 // tick of the last change seen; -1: never
}

// ErrConfig wraps configuration errors.
var ErrConfig = errors.New("core: bad config")

// New returns a node in regroup's StateDown; call Start or Form.
func New(cfg Config) (*Node, error) {
	cfg.defaults()
	if cfg.Incarnation == 0 {
		return nil, fmt.Errorf("%w: incarnation 0", ErrConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Nodes = cfg.Nodes.Add(cfg.Self)
	det, err := heartbeat.New(heartbeat.Config{
		Cluster: cfg.ClusterTag, Self: cfg.Self, Incarnation: cfg.Incarnation, Key: cfg.Secret,
		Peers: cfg.Nodes.Remove(cfg.Self).IDs(), Networks: cfg.Networks,
		IntervalTicks: cfg.HeartbeatTicks, Threshold: cfg.HeartbeatThreshold, Phase: cfg.HeartbeatPhase,
		Logger: log.With("core", "heartbeat"),
	})
	if err != nil {
		return nil, fmt.Errorf("core: failure detector: %w", err)
	}
	var self *Node // set below: regroup asks the arbiter
	rg, err := regroup.New(regroup.Config{
		Cluster: cfg.ClusterTag, Self: cfg.Self, Incarnation: cfg.Incarnation, Nodes: cfg.Nodes, Secret: cfg.Secret,
		FormTicks: cfg.JoinWindowTicks, ArbitrationTicks: cfg.ArbitrationTicks,
		// A peer still heard is waited for up to the detector's suspicion
		// time (docs/membership.md, "Slow members, late joiners and a live owner").
		PatienceTicks: cfg.HeartbeatTicks * cfg.HeartbeatThreshold,
		MayAck:        func(j nodes.ID) bool { return self == nil || self.arb == nil || !self.arb.preempting(j) },
		Logger:        log.With("core", "regroup"),
	})
	if err != nil {
		return nil, fmt.Errorf("core: membership: %w", err)
	}
	n := &Node{cfg: cfg, log: log, det: det, rg: rg, gupCmds: map[uint64]gup.LogOp{}}
	self = n
	if n.gup, err = n.newGUP(); err != nil {
		return nil, fmt.Errorf("core: global update protocol: %w", err)
	}
	if err := n.newFM(); err != nil {
		return nil, fmt.Errorf("core: failover manager: %w", err)
	}
	n.arb = newArbiter(ArbiterConfig{
		ClusterTag: cfg.ClusterTag, Self: cfg.Self, DefenceTicks: cfg.DefenceTicks,
		FormTicks: cfg.FormTicks, CheckTicks: cfg.CheckTicks,
	}, n)
	n.slot = Slot{Node: cfg.Self, Incarnation: cfg.Incarnation}
	for i := range n.peers {
		n.peers[i].changedAt = -1
	}
	return n, nil
}

// ---- inputs ----

// Start joins the cluster through a sponsor, or forms it when nobody
// answers within the join window.
func (n *Node) Start() { n.rg.Start(); n.process() }

// Form forms the cluster at once (it still has to win the quorum disk).
func (n *Node) Form() { n.rg.Form(); n.process() }

// Leave is a planned stop: ClusterExit, then the key comes off the disk
// (EventUnregistered).
func (n *Node) Leave() error {
	err := n.rg.Leave()
	n.process()
	return err
}

// Evict removes a member through a regroup; the arbitration fences it.
func (n *Node) Evict(peer nodes.ID) error {
	err := n.rg.Evict(peer)
	if err == nil {
		n.ev.evicted = n.ev.evicted.Add(peer)
	}
	n.process()
	return err
}

// Tick advances the logical clock by one tick.
func (n *Node) Tick() {
	n.now++
	n.det.Tick()
	if n.rg.State() == regroup.StateJoining {
		n.rg.SetInCluster(n.det.InCluster())
	}
	n.rg.Tick()
	n.arb.tick()
	n.gup.Tick()
	if n.fm != nil {
		n.fm.Tick(n.now)
	}
	if n.rg.Member() && n.rg.Registered() {
		if n.now%int64(n.cfg.CheckTicks) == 0 {
			n.arb.check()
		}
		if n.now-n.lastBeat >= int64(n.cfg.DiskBeatTicks) && n.beatCmd == 0 {
			n.lastBeat = n.now
			n.beatCmd = n.issueDisk(DiskCommand{Op: DiskReadSlots})
		}
	}
	n.process()
}

// Never is NextTick's answer when no tick has work until an input comes.
const Never = math.MaxInt64

// NextTick is the earliest tick at which Tick has work: the earliest
// deadline of the detector (a send, a silence), regroup (a join, a
// sponsorship or a regroup in progress), the arbiter (a claim's wait),
// GUP (an acknowledgement, an announcement, a retransmission), the
// failover manager (its reconciliation and timers), the quorum check, the
// disk beat and the lease's end. Every Tick before it only advances the
// clock: a driver may sleep until that tick, or until an input arrives,
// and then run the ticks in between at once; the core then does exactly
// what it would have done ticked one tick at a time. It must be asked
// again after every input and every Tick. The result is always after Now.
func (n *Node) NextTick() int64 {
	next := min(n.det.NextTick(), n.rg.NextTick(), n.arb.nextTick(), n.gup.NextTick())
	if n.fm != nil {
		next = min(next, n.fm.NextTick())
		if n.leaseUntil > n.now {
			next = min(next, n.leaseUntil) // leaseValid turns false
		}
	}
	if len(n.ev.txs) > 0 {
		// Membership events wait for GUP to take them (proposeEvents):
		// they are tried again at every tick.
		next = n.now + 1
	}
	if n.rg.Member() && n.rg.Registered() {
		check := int64(n.cfg.CheckTicks)
		next = min(next, (n.now/check+1)*check)
		if n.beatCmd == 0 {
			next = min(next, n.lastBeat+int64(n.cfg.DiskBeatTicks))
		}
	}
	return max(next, n.now+1)
}

// StepHeartbeat takes a heartbeat datagram received on network net. A
// dropped datagram's error says why (the detector counts it).
func (n *Node) StepHeartbeat(net int, datagram []byte) error {
	err := n.det.Receive(net, datagram)
	n.process()
	return err
}

// Step takes a regroup message from a peer.
func (n *Node) Step(m regroup.Message) {
	n.accepted++
	n.rg.Step(m)
	n.process()
}

// CheckQuorum asks for a quorum check now, as when a write of this node's
// failed with RESERVATION CONFLICT.
func (n *Node) CheckQuorum() {
	if n.rg.Member() && n.rg.Registered() {
		n.arb.check()
	}
	n.process()
}

// StepDisk takes the result of a disk command.
func (n *Node) StepDisk(r DiskResult) {
	switch {
	case n.arb.result(r):
	case n.gupResult(r):
	case r.ID == n.beatCmd:
		n.beatCmd = 0
		n.beatResult(r)
	case r.Op == DiskWritePill && r.Outcome != OK:
		n.logWarn("poison pill", "err", r.errString())
	}
	n.process()
}

// ---- state ----

// ID is this node's id.
func (n *Node) ID() nodes.ID { return n.cfg.Self }

// Now is the number of ticks so far.
func (n *Node) Now() int64 { return n.now }

// Key is this node's reservation key.
func (n *Node) Key() uint64 { return n.arb.key }

// Membership is the installed membership and its epoch.
func (n *Node) Membership() (regroup.Epoch, nodes.Set) { return n.rg.Membership() }

// State, Stage, Round, Member and Registered are regroup's.
func (n *Node) State() regroup.State { return n.rg.State() }
func (n *Node) Stage() regroup.Stage { return n.rg.Stage() }
func (n *Node) Round() uint64        { return n.rg.Round() }
func (n *Node) Member() bool         { return n.rg.Member() }
func (n *Node) Registered() bool     { return n.rg.Registered() }

// Owner reports whether this node held the quorum reservation at its last
// arbitration or check.
func (n *Node) Owner() bool { return n.arb.owner && n.rg.Member() }

// Halted is the reason this node halted, or "".
func (n *Node) Halted() string { return n.halted }

// Detector is the failure detector, for status (read only).
func (n *Node) Detector() *heartbeat.Detector { return n.det }

// DiskAlive reports whether peer's disk slot changed within the last
// DiskAliveBeats disk beats.
func (n *Node) DiskAlive(peer nodes.ID) bool {
	if !peer.Valid() {
		return false
	}
	p := n.peers[peer]
	return p.changedAt >= 0 && n.now-p.changedAt <= int64(n.cfg.DiskAliveBeats*n.cfg.DiskBeatTicks)
}

// HasReady reports whether Ready has anything.
func (n *Node) HasReady() bool {
	r := &n.ready
	return len(r.Sends)+len(r.Messages)+len(r.Disk)+len(r.Detector)+len(r.Membership)+len(r.Events) > 0 ||
		len(r.GUP.Messages)+len(r.GUP.Completions)+len(r.GUP.Reads)+len(r.GUP.Events) > 0 ||
		len(r.Resources)+len(r.Failover) > 0 || r.Lease != nil
}

// Ready returns and clears what accumulated.
func (n *Node) Ready() Ready {
	r := n.ready
	n.ready = Ready{}
	return r
}

// ---- composition ----

// process moves the detector's and regroup's outputs into the node's
// Ready, feeding each into the other and into the arbiter, until both are
// quiet.
func (n *Node) process() {
	for {
		n.processMembership()
		// GUP follows the membership and the reservation; what it does
		// (a self-fence) may start the loop again.
		n.syncGUP()
		n.syncFM()
		if !n.det.HasReady() && !n.rg.HasReady() {
			return
		}
	}
}

func (n *Node) processMembership() {
	for n.det.HasReady() || n.rg.HasReady() {
		dr := n.det.Ready()
		n.ready.Sends = append(n.ready.Sends, dr.Sends...)
		for _, e := range dr.Events {
			n.ready.Detector = append(n.ready.Detector, e)
			switch e.Kind {
			case heartbeat.PeerAlive:
				n.rg.PeerUp(e.Peer)
			case heartbeat.PeerSuspected:
				n.rg.PeerDown(e.Peer)
			case heartbeat.PeerRestarted:
				n.rg.PeerRestarted(e.Peer, e.Incarnation)
			}
		}
		rd := n.rg.Ready()
		// The detector suspects a member it never hears (one that died
		// before this node first heard it, e.g. right after a join).
		ep, m := n.rg.Membership()
		n.det.SetEpoch(uint64(ep))
		if n.rg.Member() {
			n.det.SetMembers(m)
		} else {
			n.det.SetMembers(0)
		}
		n.ready.Messages = append(n.ready.Messages, rd.Messages...)
		if rd.Arbitrate != nil {
			req := *rd.Arbitrate
			n.claimStart = n.now
			n.event(Event{Kind: EventArbitrationStarted, Round: req.Round, Members: req.Members, Class: req.Class})
			n.arb.claim(req)
		}
		if rd.Unregister {
			if n.arb.owner {
				// A holder that leaves keeps its key: its successor (or
				// the next node to form) preempts it, which moves the
				// reservation in one command. Releasing it would leave
				// the LUN without a reservation, and then every node,
				// fenced or not, may write (SPC-4 5.12.1): a frozen
				// former locker could append to the log.
				n.arb.owner = false
				n.event(Event{Kind: EventUnregistered, Owner: true})
			} else {
				n.arb.unregister()
			}
		}
		if rd.Register {
			n.arb.register(rd.RegisterFor)
		}
		for _, e := range rd.Events {
			n.ready.Membership = append(n.ready.Membership, e)
			n.membershipEvent(e)
		}
	}
	if n.arb.op == opClaim && !n.arb.wanted(n.arb.req.Round) {
		n.arb.cancelClaim()
	}
}

func (n *Node) membershipEvent(e regroup.Event) {
	switch e.Kind {
	case regroup.EventHalt:
		if n.halted == "" {
			n.halted = e.Reason
		}
		n.arb.owner = false
	case regroup.EventNodeDown:
		n.maybePoison(e.Node, e.Epoch)
	case regroup.EventNodeLeft:
		n.ev.left = n.ev.left.Add(e.Node)
	case regroup.EventMembershipInstalled:
		n.installed, n.fmInstalled = true, true
		n.recordMembership(e)
		// The leader of a new membership checks the disk at once: the
		// reservation may be gone with a member that left.
		if e.Members.Min() == n.cfg.Self && n.rg.Registered() {
			n.arb.checkSoon()
		}
	}
}

func (n *Node) event(e Event) { n.ready.Events = append(n.ready.Events, e) }

func (n *Node) issueDisk(c DiskCommand) uint64 {
	n.nextID++
	c.ID = n.nextID
	n.ready.Disk = append(n.ready.Disk, c)
	return c.ID
}

func (n *Node) members() nodes.Set {
	_, m := n.rg.Membership()
	return m
}

// ---- arbiter callbacks ----

func (n *Node) arbitrationDone(req regroup.Arbitration, won bool, reason string) {
	n.ev.arb = fmt.Sprintf("arbitration (%v) won", req.Class)
	if !won {
		n.ev.arb = fmt.Sprintf("arbitration (%v) lost: %s", req.Class, reason)
	}
	n.event(Event{Kind: EventArbitrationDone, Round: req.Round, Won: won, Owner: won && n.arb.owner,
		Reason: reason, Ticks: n.now - n.claimStart})
	n.rg.ArbitrationDone(req.Round, won, reason)
}

func (n *Node) registered(err error) {
	if err != nil {
		n.event(Event{Kind: EventRegisterFailed, Reason: err.Error()})
	} else {
		n.event(Event{Kind: EventKeyRegistered, Key: n.arb.key})
	}
	n.rg.DiskRegistered(err)
}

func (n *Node) unregistered(r DiskResult) {
	e := Event{Kind: EventUnregistered}
	if r.Outcome != OK {
		e.Reason = r.errString()
	}
	n.event(e)
}

// keyRemoved reports a key this node preempted: in a claim, or in the
// quorum check's defence (Reason says which).
func (n *Node) keyRemoved(k uint64, why string) {
	n.event(Event{Kind: EventKeyRemoved, Key: k, Reason: why})
}

// quorumLost is the self-fence: the key is gone, the disk cannot be read,
// or a poison pill came. regroup turns it into a halt.
func (n *Node) quorumLost(reason string) {
	if n.halted != "" {
		return
	}
	n.arb.owner = false
	n.event(Event{Kind: EventQuorumLost, Reason: reason})
	n.rg.QuorumLost(reason)
}

func (n *Node) logDebug(msg string, args ...any) { n.log.Debug(msg, args...) }
func (n *Node) logInfo(msg string, args ...any)  { n.log.Info(msg, args...) }
func (n *Node) logWarn(msg string, args ...any)  { n.log.Warn(msg, args...) }

// ---- disk heartbeat ----

// beatResult: every disk beat reads the slots and this node's mailbox,
// then writes this node's slot. Reading first means a pill written since
// the last beat is read before the write that would be refused. A write
// refused with RESERVATION CONFLICT means this node's key is gone: it
// self-fences at once rather than at its next quorum check.
func (n *Node) beatResult(r DiskResult) {
	switch r.Op {
	case DiskReadSlots:
		if r.Outcome != OK {
			n.event(Event{Kind: EventDiskDown, Reason: "read slots: " + r.errString()})
		} else {
			n.observeSlots(r)
		}
		if n.halted == "" && n.rg.Member() && n.rg.Registered() {
			n.slot.Counter++
			ep, _ := n.rg.Membership()
			n.slot.Epoch = uint64(ep)
			n.beatCmd = n.issueDisk(DiskCommand{Op: DiskWriteSlot, Slot: n.slot})
			n.beatIssued = n.now
		}
	case DiskWriteSlot:
		switch r.Outcome {
		case OK:
			n.renewLease(n.beatIssued)
		case Conflict:
			n.quorumLost("disk heartbeat write: RESERVATION CONFLICT: this node's key was removed")
		case Failed:
			n.event(Event{Kind: EventDiskDown, Reason: "write slot: " + r.errString()})
		}
	}
}

func (n *Node) observeSlots(r DiskResult) {
	for _, s := range r.Slots {
		if !s.Node.Valid() || s.Node == n.cfg.Self {
			continue
		}
		p := &n.peers[s.Node]
		if p.seen && (p.counter != s.Counter || p.incarnation != s.Incarnation) {
			p.changedAt = n.now
		}
		if !p.seen || p.counter != s.Counter || p.incarnation != s.Incarnation {
			p.seenAt = n.now
		}
		p.seen, p.counter, p.incarnation = true, s.Counter, s.Incarnation
	}
	if n.fm != nil {
		var seen [nodes.Max + 1]int64
		for i := range seen {
			seen[i] = -1
			if n.peers[i].seen {
				seen[i] = n.peers[i].seenAt
			}
		}
		// The read was issued at the last disk beat's tick.
		n.fm.DiskRead(n.lastBeat, &seen)
	}
	if pl := r.Pill; pl != nil && pl.Target == n.cfg.Self && pl.Incarnation == n.cfg.Incarnation {
		n.event(Event{Kind: EventPillRead, Node: pl.Sender, Reason: pl.Reason})
		n.quorumLost(fmt.Sprintf("poison pill from node %d: %s", pl.Sender, pl.Reason))
	}
}

// maybePoison: a member lost in a regroup that still beats on the disk is
// partitioned, not dead. The leader of the new membership (one writer)
// sends it the poison pill, so it halts within a disk beat of reading it
// even if its own regroup has not decided yet.
func (n *Node) maybePoison(peer nodes.ID, epoch regroup.Epoch) {
	m := n.members()
	if m.Has(peer) || m.Min() != n.cfg.Self || !n.rg.Registered() || !n.DiskAlive(peer) {
		return
	}
	n.pillSeq++
	inc := n.peers[peer].incarnation
	n.issueDisk(DiskCommand{Op: DiskWritePill, Pill: Pill{
		Target: peer, Sender: n.cfg.Self, Incarnation: inc, Epoch: uint64(epoch), Seq: n.pillSeq,
		Reason: fmt.Sprintf("regrouped out of epoch %v", epoch),
	}})
	n.event(Event{Kind: EventPillSent, Node: peer, Incarnation: inc})
}

// ---- inputs from the transport and the disk path ----

// wrongSecretThreshold is how many datagrams from configured peers must
// fail authentication, with none verifying, before a joining node
// concludes that its cluster secret is not the cluster's.
const wrongSecretThreshold = 10

// AuthFailed tells the node that a datagram (heartbeat or regroup frame)
// from a configured peer's own address failed authentication; the driver
// names the peer by the source address, not by what the datagram claims. A node that is not yet a member and has heard
// only such datagrams, for at least two heartbeat intervals, holds another
// cluster secret than the peers: no join can succeed and forming would
// only contend for the disk, so it stops with a fatal JoinFailed
// (docs/membership.md, "Join").
func (n *Node) AuthFailed(peer nodes.ID) {
	n.authFailed(peer)
	n.process()
}

func (n *Node) authFailed(peer nodes.ID) {
	if n.rg.Member() || n.refused != "" || !n.cfg.Nodes.Has(peer) {
		return
	}
	if n.badCount == 0 {
		n.badSince = n.now
	}
	n.badFrom = n.badFrom.Add(peer)
	n.badCount++
	if n.badCount < wrongSecretThreshold || n.now-n.badSince < 2*int64(n.cfg.HeartbeatTicks) ||
		n.det.Counters().Accepted+n.accepted > 0 {
		return
	}
	n.refused = fmt.Sprintf("%d datagrams from configured peers %v failed HMAC authentication and none verified: "+
		"this node's cluster secret (key_file) differs from the cluster's", n.badCount, n.badFrom)
	n.ready.Membership = append(n.ready.Membership, regroup.Event{Kind: regroup.EventJoinFailed, Reason: n.refused, Fatal: true})
}

// Refused is the reason this node refused to go on joining (a wrong
// cluster secret), or "".
func (n *Node) Refused() string { return n.refused }

// DiskSessionReplaced tells the node that its path to the quorum LUN was
// logged in again as a new session. tgt ties registrations to the session:
// the target no longer admits this node's registration, and registering
// again could undo a fence that happened meanwhile, so a member
// self-fences and comes back by joining again.
func (n *Node) DiskSessionReplaced() {
	if n.rg.Member() && n.rg.Registered() {
		n.quorumLost("the quorum disk session was replaced: the target no longer admits this node's registration")
	}
	n.process()
}
