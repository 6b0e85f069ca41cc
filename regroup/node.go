package regroup

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
)

// Default timings in ticks (10 ms each in the simulator and the daemon).
const (
	DefaultResendTicks      = 2   // retransmit unacknowledged barrier messages
	DefaultActivateTicks    = 10  // Activate: wait for every reachable member's status
	DefaultStageTicks       = 15  // Closing/Pruning/Cleanup barriers
	DefaultArbitrationTicks = 250 // a follower's wait for the leader's arbitration (covers the defence delays)
	DefaultJoinTicks        = 50  // one join attempt, end to end
	DefaultJoinRetryTicks   = 10  // between JoinRequests
	DefaultFormTicks        = 60  // no member answered for this long: form
	DefaultFormStaggerTicks = 20  // per node id, so nodes booting together do not all form
)

// Config configures a Node.
type Config struct {
	Cluster     uint32
	Self        NodeID
	Incarnation uint64
	// Nodes is the configured cluster: every node that may be a member.
	Nodes NodeSet
	// Secret is the cluster secret that authenticates joins.
	Secret []byte
	// TieBreaker breaks exact halves (rule b). 0: the lowest id of the
	// original membership.
	TieBreaker NodeID

	ResendTicks, ActivateTicks, StageTicks, ArbitrationTicks int
	JoinTicks, JoinRetryTicks, FormTicks, FormStaggerTicks   int

	// PatienceTicks is how long a wait for a peer the failure detector
	// still hears may last: the detector's suspicion time (the node core
	// passes heartbeat interval × threshold). A regroup stage, a sponsor
	// or a joiner that waits for such a peer gives up after its own
	// timeout only if the peer is no longer heard, else after the
	// patience: a peer whose heartbeats arrive is slow (a busy machine, a
	// TCG guest), not gone, and leaving it out would prune or fence a
	// healthy node. 0: the timeouts alone (docs/membership.md, "Slow
	// members, late joiners and a live owner").
	PatienceTicks int

	// MayAck reports whether this node may tell a sponsor that it spares
	// joiner's key now (AnnounceAck; for a sponsor: send it JoinState, so
	// that it registers). The node core says no while a PREEMPT of that
	// node's key is in flight: on a slow path it could land after the
	// joiner registered again. The sponsor announces again every resend
	// interval. Nil: always.
	MayAck func(joiner NodeID) bool

	// Logger receives the node's records; it names the node (the driver
	// adds "node" once, as clusterd's logger does), regroup does not.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.ResendTicks, DefaultResendTicks)
	def(&c.ActivateTicks, DefaultActivateTicks)
	def(&c.StageTicks, DefaultStageTicks)
	def(&c.ArbitrationTicks, DefaultArbitrationTicks)
	def(&c.JoinTicks, DefaultJoinTicks)
	def(&c.JoinRetryTicks, DefaultJoinRetryTicks)
	def(&c.FormTicks, DefaultFormTicks)
	def(&c.FormStaggerTicks, DefaultFormStaggerTicks)
}

// ErrConfig wraps configuration errors.
var ErrConfig = errors.New("regroup: bad config")

// Node is one node's membership state machine. It is not safe for
// concurrent use.
type Node struct {
	cfg   Config
	log   *slog.Logger
	now   int64
	state State
	ready Ready

	epoch     Epoch
	members   NodeSet
	alive     NodeSet    // peers the failure detector hears
	suspected NodeSet    // peers the failure detector suspects (heard before, silent now)
	memberInc [65]uint64 // incarnation a member joined with, where known
	restarted NodeSet    // members heard with a new incarnation: their old self is gone
	evict     NodeSet    // evictions requested here, not yet carried out
	banned    NodeSet    // nodes an administrator evicted (SetEvicted): their joins are refused
	inCluster NodeSet    // peers whose heartbeats say they are members of a cluster (SetInCluster)
	announced [65]int64  // tick a sponsor last announced each joiner (0: never)
	holdKey   bool       // registered on the quorum disk (as far as we know)

	rg regroupState
	jn joinState
	sp sponsorState
}

type regroupState struct {
	round      uint64
	stage      Stage
	since      int64 // tick the stage began
	lastSend   int64
	leader     NodeID
	rows       [65]NodeSet // Hears row per responder
	gens       [65]uint64  // epoch generation per responder
	evict      NodeSet
	responders NodeSet
	closing    NodeSet // leader: Closing received from
	excluded   NodeSet // timed out on during this regroup episode
	survivors  NodeSet
	pruned     NodeSet
	class      Class
	acks       NodeSet
	original   NodeSet
	arbitrate  bool // waiting for ArbitrationDone
	accepted   bool // follower: accepted a Pruning decision this round
}

// New returns a Node in StateDown; call Start (join or form) or Form.
func New(cfg Config) (*Node, error) {
	if !cfg.Self.Valid() {
		return nil, fmt.Errorf("%w: node id %d out of range", ErrConfig, cfg.Self)
	}
	if len(cfg.Secret) == 0 {
		return nil, fmt.Errorf("%w: empty cluster secret", ErrConfig)
	}
	cfg.Nodes = cfg.Nodes.Add(cfg.Self)
	cfg.defaults()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Node{cfg: cfg, log: log}, nil
}

// ID is this node's id.
func (n *Node) ID() NodeID { return n.cfg.Self }

// State is this node's state.
func (n *Node) State() State { return n.state }

// Stage is the regroup stage (StageStabilized when not regrouping).
func (n *Node) Stage() Stage { return n.rg.stage }

// Round is the current or last regroup round.
func (n *Node) Round() uint64 { return n.rg.round }

// Membership returns the installed membership and its epoch.
func (n *Node) Membership() (Epoch, NodeSet) { return n.epoch, n.members }

// Member reports whether this node holds an installed membership (Up or
// Paused).
func (n *Node) Member() bool { return n.state == StateUp || n.state == StatePaused }

// Joining is the set of nodes being joined right now: announced by a
// sponsor within the last two join attempts' time, or sponsored by this
// node. A joiner registers its key before its join commits, so the quorum
// owner's defence must not remove these keys (a regroup's arbitration
// still does).
func (n *Node) Joining() NodeSet {
	var s NodeSet
	for id := NodeID(1); id <= 64; id++ {
		if t := n.announced[id]; t != 0 && n.now-t <= int64(2*n.joinSpan()) && !n.members.Has(id) {
			s = s.Add(id)
		}
	}
	if n.sp.phase != spIdle {
		s = s.Add(n.sp.joiner)
	}
	return s
}

// Registered reports whether this node believes its key is on the quorum
// disk.
func (n *Node) Registered() bool { return n.holdKey }

// Now is the number of ticks so far.
func (n *Node) Now() int64 { return n.now }

// HasReady reports whether Ready has anything.
func (n *Node) HasReady() bool {
	r := &n.ready
	return len(r.Messages) > 0 || len(r.Events) > 0 || r.Arbitrate != nil || r.Register || r.Unregister
}

// Ready returns and clears what accumulated since the last call.
func (n *Node) Ready() Ready {
	r := n.ready
	n.ready = Ready{}
	return r
}

func (n *Node) send(m Message) {
	m.From = n.cfg.Self
	n.ready.Messages = append(n.ready.Messages, m)
}

func (n *Node) sendAll(to NodeSet, m Message) {
	for _, id := range to.Remove(n.cfg.Self).IDs() {
		m.To = id
		n.send(m)
	}
}

func (n *Node) event(e Event) { n.ready.Events = append(n.ready.Events, e) }

func (n *Node) halt(reason string) { n.haltAs(reason, false) }

// haltAs halts; evicted says an administrator evicted this node (it must
// not come back by itself).
func (n *Node) haltAs(reason string, evicted bool) {
	if n.state == StateHalted || n.state == StateLeft {
		return
	}
	n.log.Info("halt", "reason", reason)
	n.state = StateHalted
	n.rg.stage = StageStabilized
	n.rg.arbitrate = false
	n.event(Event{Kind: EventHalt, Reason: reason, Epoch: n.epoch, Members: n.members, Evicted: evicted})
}

func (n *Node) dead() bool {
	return n.state == StateHalted || n.state == StateLeft || n.state == StateDown
}

// PeerUp tells the node the failure detector hears peer.
func (n *Node) PeerUp(peer NodeID) {
	n.alive = n.alive.Add(peer)
	n.suspected = n.suspected.Remove(peer)
}

// SetInCluster tells the node which peers the failure detector hears as
// members of a cluster (their heartbeats carry a membership epoch). A
// joining node that hears one does not form: a live cluster exists, and
// forming would only contend with its owner for the quorum disk; it keeps
// asking to join (docs/membership.md, "Join"). The peers it hears (PeerUp)
// that are not in s are starting: a joining node leaves the form to a
// lower one of them, for a bounded time. A driver that joins must call it
// before every Tick while the node is joining.
func (n *Node) SetInCluster(s NodeSet) { n.inCluster = s.Remove(n.cfg.Self) }

// waitOver reports whether a wait that began elapsed ticks ago for the
// peers in missing is over: after base ticks when none of them is heard
// any more, after long ticks (at least the patience) while one is.
func (n *Node) waitOver(elapsed int64, base, long int, missing NodeSet) bool {
	if elapsed < int64(base) {
		return false
	}
	if missing&n.alive == 0 || n.cfg.PatienceTicks <= 0 {
		return true
	}
	return elapsed >= int64(max(base, long, n.cfg.PatienceTicks))
}

// joinSpan is how long one step of a join may wait for a peer that is
// still heard.
func (n *Node) joinSpan() int { return max(n.cfg.JoinTicks, n.cfg.PatienceTicks) }

// PeerDown tells the node the failure detector suspects peer.
func (n *Node) PeerDown(peer NodeID) {
	n.alive = n.alive.Remove(peer)
	n.suspected = n.suspected.Add(peer)
	if n.Member() && n.members.Has(peer) && n.rg.stage == StageStabilized {
		n.log.Info("member suspected", "peer", peer)
		n.beginRegroup()
	}
}

// PeerRestarted tells the node peer came back with a new incarnation: if it
// was a member, that member is gone and must be regrouped out before it can
// join again.
// inc is the new incarnation: a member that joined with it (its join
// committed before this node's detector heard it) is not a restart.
func (n *Node) PeerRestarted(peer NodeID, inc uint64) {
	if peer.Valid() && inc <= n.memberInc[peer] {
		return
	}
	if n.Member() && n.members.Has(peer) {
		n.restarted = n.restarted.Add(peer)
		if n.rg.stage == StageStabilized {
			n.beginRegroup()
		}
	}
}

// Evict removes peer from the membership through a regroup; the winner of
// the arbitration fences it.
func (n *Node) Evict(peer NodeID) error {
	if !n.Member() {
		return fmt.Errorf("regroup: evict %d: node %d is %v, not a member", peer, n.cfg.Self, n.state)
	}
	if peer == n.cfg.Self || !n.members.Has(peer) {
		return fmt.Errorf("regroup: evict %d: not another member of %v", peer, n.members)
	}
	n.evict = n.evict.Add(peer)
	if n.rg.stage == StageStabilized {
		n.beginRegroup()
	}
	return nil
}

// SetEvicted gives the nodes an administrator evicted (the cluster
// database's node objects with evicted set; docs/cli.md, "cluster node
// evict"). A member evicts those that are members through a regroup (the
// winner of the arbitration fences them), and refuses their joins with a
// fatal refusal that names the eviction; this node itself is never in it.
func (n *Node) SetEvicted(s NodeSet) {
	n.banned = s.Remove(n.cfg.Self)
	if !n.Member() {
		return
	}
	if add := n.banned & n.members &^ n.evict; add != 0 {
		n.evict |= add
		if n.rg.stage == StageStabilized {
			n.beginRegroup()
		}
	}
}

// QuorumLost tells the node the arbiter found its key gone or the
// reservation lost: it must stop at once (self-fence, docs/design.md,
// "Quorum arbitration").
func (n *Node) QuorumLost(reason string) {
	n.holdKey = false
	if n.dead() {
		return
	}
	n.halt("lost quorum: " + reason)
}

// DiskRegistered reports the result of a Ready.Register: a joiner that
// registered acknowledges the sponsor's JoinState; one that could not
// aborts the attempt (and tries again).
func (n *Node) DiskRegistered(err error) {
	if n.state != StateJoining || n.jn.phase != joinRegistering {
		return // a stale answer: the attempt is over (the owner removes a stray key)
	}
	if err != nil {
		n.send(Message{Type: MsgJoinAbort, To: n.jn.sponsor, Joiner: n.cfg.Self, Reason: "register on the quorum disk: " + err.Error()})
		n.joinFailed(fmt.Sprintf("register on the quorum disk: %v", err), false)
		return
	}
	n.holdKey = true
	n.jn.phase = joinRestored
	n.send(Message{Type: MsgJoinStateAck, To: n.jn.sponsor})
}

// Tick advances the logical clock by one tick.
func (n *Node) Tick() {
	n.now++
	switch n.state {
	case StateJoining:
		n.tickJoin()
	case StateUp, StatePaused:
		n.tickSponsor()
		n.tickRegroup()
	}
}

// NextTick is the earliest tick at which Tick may have work
// (math.MaxInt64: none until an input comes). A stabilised membership
// with nothing to sponsor and no trigger to regroup waits for inputs
// only; a join, a sponsorship or a regroup in progress counts every tick
// (their timeouts and resends), so it asks for the next one. The result
// is always after Now.
func (n *Node) NextTick() int64 {
	switch n.state {
	case StateJoining:
		return n.now + 1
	case StateUp, StatePaused:
		if n.sp.phase != spIdle || n.sp.waiting != 0 || n.rg.stage != StageStabilized ||
			n.members&n.suspected != 0 || n.restarted != 0 || n.evict != 0 {
			return n.now + 1
		}
	}
	return math.MaxInt64
}

// Step processes a message from a peer.
func (n *Node) Step(m Message) {
	if n.dead() || m.To != n.cfg.Self || !n.cfg.Nodes.Has(m.From) || m.From == n.cfg.Self {
		return
	}
	switch m.Type {
	case MsgRegroup, MsgRegroupAck, MsgAbandon:
		n.stepRegroup(m)
	case MsgExit:
		n.stepExit(m)
	default:
		n.stepJoin(m)
	}
}

// ArbitrationDone is the arbiter's answer to the Arbitration of round.
func (n *Node) ArbitrationDone(round uint64, won bool, reason string) {
	if n.state == StateForming {
		n.formDone(round, won, reason)
		return
	}
	if !n.Member() || !n.rg.arbitrate || round != n.rg.round {
		return
	}
	n.rg.arbitrate = false
	if !won {
		n.sendAll(n.rg.survivors, Message{Type: MsgAbandon, Round: n.rg.round, Reason: "partition lost quorum arbitration: " + reason})
		n.halt("lost quorum arbitration: " + reason)
		return
	}
	n.holdKey = true
	n.installAsLeader()
}

// WantsArbitration reports whether the Arbitration of round is still
// wanted. An arbiter checks it before every disk command: a regroup that
// moved on to a new round must not go on preempting for the old one.
func (n *Node) WantsArbitration(round uint64) bool {
	if n.state == StateForming {
		return round == n.jn.formRound
	}
	return n.Member() && n.rg.arbitrate && round == n.rg.round
}

func (n *Node) install(e Epoch, members NodeSet, why string) {
	lost := n.members &^ members
	for _, id := range lost.IDs() {
		n.event(Event{Kind: EventNodeDown, Node: id, Epoch: e})
	}
	n.restarted &= members
	// A node added by a join was heard by its sponsor: an old suspicion
	// of its previous incarnation no longer holds.
	n.suspected &^= members &^ n.members
	n.evict &= members
	n.epoch, n.members = e, members
	n.state = StateUp
	if n.rg.stage != StageStabilized {
		n.state = StatePaused
	}
	n.log.Debug("install", "epoch", e, "members", members.IDs(), "why", why)
	n.event(Event{Kind: EventMembershipInstalled, Epoch: e, Members: members, Reason: why})
}

// tieBreaker is the node that breaks exact halves of original.
func (n *Node) tieBreaker(original NodeSet) NodeID {
	if tb := n.cfg.TieBreaker; tb != 0 && original.Has(tb) {
		return tb
	}
	return original.Min()
}
