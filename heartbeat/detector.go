package heartbeat

import (
	"errors"
	"fmt"
	"log/slog"
)

// Default timings, in ticks of the driver's base tick (10 ms in the
// simulator and the daemon): a heartbeat every 100 ms, suspicion after 5
// missed on every network. docs/membership.md justifies the choice.
const (
	DefaultIntervalTicks = 10
	DefaultThreshold     = 5
)

// Config configures a Detector.
type Config struct {
	// Cluster is the cluster id carried in every heartbeat; heartbeats of
	// other clusters are dropped as unknown.
	Cluster uint32
	// Self is this node's id; Incarnation its boot id, which must grow
	// across restarts (a restarted node is told apart by it).
	Self        NodeID
	Incarnation uint64
	// Key is the cluster key for HMAC-SHA256.
	Key []byte
	// Peers are the configured peers (Self is ignored if listed).
	Peers []NodeID
	// Networks is the number of private networks, 1..MaxNetworks.
	Networks int
	// IntervalTicks is the heartbeat interval in ticks (DefaultIntervalTicks).
	IntervalTicks int
	// Threshold is the number of missed intervals after which a network is
	// declared down for a peer, and the peer suspected when all are
	// (DefaultThreshold).
	Threshold int
	// Phase offsets this node's send tick within the interval, so that nodes
	// do not all send on the same tick. 0..IntervalTicks-1.
	Phase int
	// Logger receives debug records; nil discards them.
	Logger *slog.Logger
}

// EventKind names a Detector event.
type EventKind uint8

// Detector events.
const (
	// PeerAlive: a peer not currently alive was heard (first time, or after
	// suspicion).
	PeerAlive EventKind = iota + 1
	// PeerSuspected: a peer was silent on every network for Threshold
	// intervals; or a member (SetMembers) was not heard at all for
	// Threshold intervals since it became one (NeverHeard).
	PeerSuspected
	// PeerRestarted: a peer was heard with a higher incarnation than before.
	PeerRestarted
	// NetworkDown: a live peer was silent on one network for Threshold
	// intervals while still heard on another.
	NetworkDown
	// NetworkUp: a network reported down for a live peer carries its
	// heartbeats again.
	NetworkUp
)

func (k EventKind) String() string {
	switch k {
	case PeerAlive:
		return "PeerAlive"
	case PeerSuspected:
		return "PeerSuspected"
	case PeerRestarted:
		return "PeerRestarted"
	case NetworkDown:
		return "NetworkDown"
	case NetworkUp:
		return "NetworkUp"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is something the detector concluded about a peer.
type Event struct {
	Kind        EventKind
	Peer        NodeID
	Network     int    // NetworkDown, NetworkUp
	Incarnation uint64 // PeerAlive, PeerRestarted
	// LastHeard is the tick at which the peer was last heard on any
	// network (PeerSuspected): detection time is the event's tick minus it.
	// For a NeverHeard suspicion it is the tick silence was counted from:
	// when the peer became a member.
	LastHeard int64
	// NeverHeard (PeerSuspected): the peer was not heard since it became a
	// member, so it was never alive to go silent.
	NeverHeard bool
}

func (e Event) String() string {
	switch e.Kind {
	case NetworkDown, NetworkUp:
		return fmt.Sprintf("%v(peer %d, net %d)", e.Kind, e.Peer, e.Network)
	case PeerSuspected:
		if e.NeverHeard {
			return fmt.Sprintf("%v(peer %d, never heard since tick %d)", e.Kind, e.Peer, e.LastHeard)
		}
		return fmt.Sprintf("%v(peer %d, last heard tick %d)", e.Kind, e.Peer, e.LastHeard)
	}
	return fmt.Sprintf("%v(peer %d, inc %d)", e.Kind, e.Peer, e.Incarnation)
}

// Send is one datagram to send to one peer on one network. Datagrams of one
// interval and network share the same backing bytes: drivers must not
// modify them.
type Send struct {
	To       NodeID
	Network  int
	Datagram []byte
}

// Ready is what the detector wants done since the last Ready.
type Ready struct {
	Sends  []Send
	Events []Event
}

// DropReason is why a received datagram was dropped.
type DropReason uint8

// Drop reasons.
const (
	DropMalformed    DropReason = iota // wrong length, magic, version, field range
	DropBadMAC                         // HMAC-SHA256 under the cluster key did not verify
	DropReplay                         // incarnation older, or sequence not newer, than seen
	DropUnknownNode                    // other cluster, self, or a node not configured
	DropWrongNetwork                   // names another network than it arrived on
	numDropReasons
)

func (r DropReason) String() string {
	switch r {
	case DropMalformed:
		return "malformed"
	case DropBadMAC:
		return "bad MAC"
	case DropReplay:
		return "replay"
	case DropUnknownNode:
		return "unknown node"
	case DropWrongNetwork:
		return "wrong network"
	}
	return fmt.Sprintf("DropReason(%d)", uint8(r))
}

// Counters counts received datagrams.
type Counters struct {
	Accepted uint64
	Dropped  [numDropReasons]uint64
}

// Drops returns the number dropped for reason r.
func (c Counters) Drops(r DropReason) uint64 {
	if r >= numDropReasons {
		return 0
	}
	return c.Dropped[r]
}

type netState struct {
	last     int64 // tick last heard; -1 never
	seq      uint64
	up       bool
	reported bool // NetworkDown reported and not yet cleared
}

type peerState struct {
	id          NodeID
	incarnation uint64
	alive       bool
	lastAny     int64
	epoch       uint64
	hears       NodeSet
	nets        []netState
	// member: the peer is in the membership (SetMembers); since is the
	// tick it became one. suspected: PeerSuspected was reported and the
	// peer was not heard since.
	member    bool
	since     int64
	suspected bool
}

// Detector is the per-node failure detector. It is not safe for concurrent
// use.
type Detector struct {
	cfg    Config
	log    *slog.Logger
	sealer *Sealer
	now    int64
	seq    uint64
	epoch  uint64
	peers  map[NodeID]*peerState
	order  []*peerState // by id, for deterministic output
	ready  Ready
	count  Counters
}

// New returns a Detector for cfg, or an error for an invalid cfg.
func New(cfg Config) (*Detector, error) {
	if !cfg.Self.Valid() {
		return nil, fmt.Errorf("heartbeat: node id %d out of range 1..%d", cfg.Self, MaxNodes)
	}
	if cfg.Networks < 1 || cfg.Networks > MaxNetworks {
		return nil, fmt.Errorf("heartbeat: %d networks, want 1..%d", cfg.Networks, MaxNetworks)
	}
	if len(cfg.Key) == 0 {
		return nil, errors.New("heartbeat: empty cluster key")
	}
	if cfg.IntervalTicks <= 0 {
		cfg.IntervalTicks = DefaultIntervalTicks
	}
	if cfg.Threshold <= 0 {
		cfg.Threshold = DefaultThreshold
	}
	cfg.Phase = ((cfg.Phase % cfg.IntervalTicks) + cfg.IntervalTicks) % cfg.IntervalTicks
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Detector{cfg: cfg, log: log, sealer: NewSealer(cfg.Key), peers: map[NodeID]*peerState{}}
	var set NodeSet
	for _, p := range cfg.Peers {
		if !p.Valid() {
			return nil, fmt.Errorf("heartbeat: peer id %d out of range 1..%d", p, MaxNodes)
		}
		if p != cfg.Self {
			set = set.Add(p)
		}
	}
	for _, id := range set.IDs() {
		ps := &peerState{id: id, lastAny: -1, nets: make([]netState, cfg.Networks)}
		for i := range ps.nets {
			ps.nets[i].last = -1
		}
		d.peers[id] = ps
		d.order = append(d.order, ps)
	}
	return d, nil
}

// Now is the number of ticks so far.
func (d *Detector) Now() int64 { return d.now }

// SetEpoch sets the membership epoch carried in this node's heartbeats.
func (d *Detector) SetEpoch(e uint64) { d.epoch = e }

// SetMembers tells the detector the current membership (Self and peers
// not configured are ignored). A member that is not alive when it becomes
// one and is then not heard for Threshold intervals is suspected like a
// peer gone silent (PeerSuspected with NeverHeard): otherwise a member that
// died before this node first heard it, e.g. right after this node joined,
// would never be suspected. Suspicion is reported once per silence: again
// only after the peer was heard, or left and re-entered the membership.
// Pass the empty set while this node is not a member. The check runs in
// Tick; SetMembers itself reports nothing.
func (d *Detector) SetMembers(s NodeSet) {
	for _, p := range d.order {
		in := s.Has(p.id)
		if in && !p.member {
			p.since, p.suspected = d.now, false
		}
		p.member = in
	}
}

// Alive is the set of peers currently considered alive.
func (d *Detector) Alive() NodeSet {
	var s NodeSet
	for _, p := range d.order {
		if p.alive {
			s = s.Add(p.id)
		}
	}
	return s
}

// InCluster is the set of peers currently alive whose last heartbeat
// carried a membership epoch: members of a cluster (a node that is not a
// member sends epoch 0).
func (d *Detector) InCluster() NodeSet {
	var s NodeSet
	for _, p := range d.order {
		if p.alive && p.epoch != 0 {
			s = s.Add(p.id)
		}
	}
	return s
}

// PeerView is what the detector knows of one peer.
type PeerView struct {
	Alive       bool
	Incarnation uint64
	Epoch       uint64
	Hears       NodeSet
	NetworksUp  []bool
}

// Peer returns what the detector knows of id.
func (d *Detector) Peer(id NodeID) (PeerView, bool) {
	p, ok := d.peers[id]
	if !ok {
		return PeerView{}, false
	}
	v := PeerView{Alive: p.alive, Incarnation: p.incarnation, Epoch: p.epoch, Hears: p.hears, NetworksUp: make([]bool, len(p.nets))}
	for i, n := range p.nets {
		v.NetworksUp[i] = n.up
	}
	return v, true
}

// Counters returns the receive counters.
func (d *Detector) Counters() Counters { return d.count }

// Tick advances the detector's clock by one tick: on this node's send tick
// it queues a heartbeat to every peer on every network, and it checks every
// peer for silence.
func (d *Detector) Tick() {
	d.now++
	if d.now%int64(d.cfg.IntervalTicks) == int64(d.cfg.Phase) {
		d.send()
	}
	limit := int64(d.cfg.Threshold * d.cfg.IntervalTicks)
	for _, p := range d.order {
		if !p.alive {
			if p.member && !p.suspected && d.now-p.since >= limit {
				p.suspected = true
				d.log.Debug("member never heard suspected", "peer", p.id, "member_since", p.since, "now", d.now)
				d.ready.Events = append(d.ready.Events, Event{Kind: PeerSuspected, Peer: p.id, Incarnation: p.incarnation, LastHeard: p.since, NeverHeard: true})
			}
			continue
		}
		// A member's silence counts from its entry into the membership
		// at the earliest: one that left and joined again at once (a
		// restarted daemon) was heard through the join, and its new
		// incarnation's heartbeats may not have arrived yet.
		from := func(last int64) int64 {
			if p.member && p.since > last {
				return p.since
			}
			return last
		}
		if d.now-from(p.lastAny) >= limit {
			p.alive, p.suspected = false, true
			for i := range p.nets {
				p.nets[i].up, p.nets[i].reported = false, false
			}
			d.log.Debug("peer suspected", "peer", p.id, "last_heard", p.lastAny, "now", d.now)
			d.ready.Events = append(d.ready.Events, Event{Kind: PeerSuspected, Peer: p.id, Incarnation: p.incarnation, LastHeard: p.lastAny})
			continue
		}
		for i := range p.nets {
			n := &p.nets[i]
			if n.up && d.now-from(n.last) >= limit {
				n.up, n.reported = false, true
				d.log.Debug("network down", "peer", p.id, "net", i)
				d.ready.Events = append(d.ready.Events, Event{Kind: NetworkDown, Peer: p.id, Network: i})
			}
		}
	}
}

func (d *Detector) send() {
	d.seq++
	hears := d.Alive()
	for net := 0; net < d.cfg.Networks; net++ {
		pkt := Packet{Cluster: d.cfg.Cluster, Network: uint8(net), From: d.cfg.Self, Incarnation: d.cfg.Incarnation, Seq: d.seq, Epoch: d.epoch, Hears: hears}
		dg, err := d.sealer.Seal(&pkt)
		if err != nil {
			panic(err) // fields validated in New
		}
		for _, p := range d.order {
			d.ready.Sends = append(d.ready.Sends, Send{To: p.id, Network: net, Datagram: dg})
		}
	}
}

// Receive hands the detector a datagram that arrived on network net. It
// returns the reason it was dropped, if it was, for the driver's logs; the
// detector also counts it.
func (d *Detector) Receive(net int, datagram []byte) error {
	pkt, err := d.sealer.Open(datagram)
	switch {
	case errors.Is(err, ErrBadMAC):
		return d.drop(DropBadMAC, err)
	case err != nil:
		return d.drop(DropMalformed, err)
	}
	if int(pkt.Network) != net {
		return d.drop(DropWrongNetwork, fmt.Errorf("heartbeat: from node %d names network %d, arrived on %d", pkt.From, pkt.Network, net))
	}
	p, ok := d.peers[pkt.From]
	if pkt.Cluster != d.cfg.Cluster || !ok || net < 0 || net >= len(p.nets) {
		return d.drop(DropUnknownNode, fmt.Errorf("heartbeat: unknown node %d of cluster %d", pkt.From, pkt.Cluster))
	}
	n := &p.nets[net]
	switch {
	case pkt.Incarnation < p.incarnation:
		return d.drop(DropReplay, fmt.Errorf("heartbeat: node %d incarnation %d older than %d", pkt.From, pkt.Incarnation, p.incarnation))
	case pkt.Incarnation > p.incarnation:
		restarted := p.incarnation != 0
		p.incarnation = pkt.Incarnation
		for i := range p.nets {
			p.nets[i].seq = 0
		}
		if restarted {
			d.ready.Events = append(d.ready.Events, Event{Kind: PeerRestarted, Peer: p.id, Incarnation: p.incarnation})
		}
	case pkt.Seq <= n.seq:
		return d.drop(DropReplay, fmt.Errorf("heartbeat: node %d sequence %d not newer than %d on network %d", pkt.From, pkt.Seq, n.seq, net))
	}
	d.count.Accepted++
	n.seq = pkt.Seq
	n.last = d.now
	p.lastAny = d.now
	p.epoch = pkt.Epoch
	p.hears = pkt.Hears
	if !p.alive {
		// Every network starts up when the peer comes alive, so one that
		// stays silent is reported down after Threshold intervals.
		p.alive, p.suspected = true, false
		for i := range p.nets {
			p.nets[i].up, p.nets[i].reported, p.nets[i].last = true, false, d.now
		}
		d.ready.Events = append(d.ready.Events, Event{Kind: PeerAlive, Peer: p.id, Incarnation: p.incarnation})
		return nil
	}
	if !n.up {
		n.up = true
		if n.reported {
			n.reported = false
			d.ready.Events = append(d.ready.Events, Event{Kind: NetworkUp, Peer: p.id, Network: net})
		}
	}
	return nil
}

func (d *Detector) drop(r DropReason, err error) error {
	d.count.Dropped[r]++
	return err
}

// HasReady reports whether Ready has anything.
func (d *Detector) HasReady() bool { return len(d.ready.Sends) > 0 || len(d.ready.Events) > 0 }

// Ready returns and clears what accumulated since the last call.
func (d *Detector) Ready() Ready {
	r := d.ready
	d.ready = Ready{}
	return r
}

// NextTick is the earliest tick at which Tick has work: this node's next
// send tick, or the tick at which a peer's or a network's silence reaches
// the threshold (math.MaxInt64 never comes). Every Tick before it only
// advances the clock, so a driver may sleep until then, or until an input
// arrives, and run the ticks in between at once (docs/design.md, "The node
// core and its drivers"). The result is always after Now.
func (d *Detector) NextTick() int64 {
	interval, phase := int64(d.cfg.IntervalTicks), int64(d.cfg.Phase)
	t := d.now + 1
	next := t + ((phase-t%interval)%interval+interval)%interval
	limit := int64(d.cfg.Threshold * d.cfg.IntervalTicks)
	for _, p := range d.order {
		if !p.alive {
			if p.member && !p.suspected {
				next = min(next, p.since+limit)
			}
			continue
		}
		from := func(last int64) int64 {
			if p.member && p.since > last {
				return p.since
			}
			return last
		}
		next = min(next, from(p.lastAny)+limit)
		for i := range p.nets {
			if p.nets[i].up {
				next = min(next, from(p.nets[i].last)+limit)
			}
		}
	}
	return max(next, d.now+1)
}
