package gup

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// Defaults, in ticks of the node core (10 ms).
const (
	DefaultRetransmitTicks = 20   // a member silent about updates sent to it: send again
	DefaultRequestTicks    = 50   // a request or read with no progress: send again
	DefaultHistory         = 4096 // committed updates the locker keeps to send again
	DefaultMaxBatchBytes   = 256 << 10
	DefaultMaxUpdateBytes  = 1 << 20
	maxBuffered            = 4096 // updates a member holds ahead of a gap
	announceTicks          = 100  // the locker announces itself to a quiet member again
	gapTicks               = 5    // a member's hole is sent again at most this often
	catchUpBytes           = 64 << 10
	catchUpUpdates         = 256 // a catch-up chunk: small, so a member applies it between heartbeats
)

// Config configures a Node.
type Config struct {
	Self        nodes.ID
	Incarnation uint64
	State       StateMachine
	// Issue runs a log command through the node core and returns its ID;
	// the result comes back through LogDone.
	Issue func(LogCommand) uint64
	// Fence is called when a log write found this node's key gone: the
	// node core self-fences.
	Fence func(reason string)

	RetransmitTicks int
	RequestTicks    int
	History         int
	MaxBatchBytes   int
	MaxUpdateBytes  int
	Logger          *slog.Logger
}

// Errors of Propose and Read.
var (
	ErrNotMember = errors.New("gup: this node is not a cluster member")
	ErrTooLarge  = errors.New("gup: update too large")
	ErrConfig    = errors.New("gup: bad config")
)

type pendingReq struct {
	req    uint64
	data   []byte
	sentAt int64
}

type pendingRead struct {
	id      uint64
	askedAt int64
	indexed bool
	seq     uint64
}

type peer struct {
	acked    uint64 // highest sequence number the member said it applied
	known    bool   // acked is from this term
	other    bool   // the member holds another history: it needs the state whole
	sentUpTo uint64 // highest sequence number sent to it
	sentAt   int64  // when anything was last sent to it (announcements repeat when idle)
	// progressAt is when acked last grew, or when the member, up to date,
	// was sent a new batch; resentAt when it was last sent a gap again.
	// A member behind for RetransmitTicks without progress is sent what
	// it lacks, however busy the locker is with newer batches.
	progressAt, resentAt int64
}

type readReq struct {
	from nodes.ID
	id   uint64
}

// lockerState is the locker's: present while this node is the locker.
type lockerState struct {
	term     uint64
	queue    []Update                // accepted, not yet sequenced
	held     [nodes.Max + 1][]Update // requests ahead of a gap, by origin, in request order
	accepted [nodes.Max + 1]reqMark  // the last request accepted from each origin
	logCmd   uint64                  // append or checkpoint in flight
	logOp    LogOp                   //
	inflight []Update                // the batch being appended
	history  []Update                // committed, consecutive, ending at applied
	peers    [nodes.Max + 1]*peer    //
	waiting  []readReq               // reads for the next barrier
	barrier  uint64                  // barrier in flight
	inBar    []readReq               // reads the barrier in flight serves
	free     uint64                  // ring blocks free, as the last log result said
	size     uint64                  // ring blocks
	maxRec   int                     // largest record payload
	ckpt     bool                    // a checkpoint is due before the next append
	ckptSeq  uint64                  // the sequence number the checkpoint in flight covers
	retry    int64                   // after a failed checkpoint: not before this tick
	sentSnap [nodes.Max + 1]int64    // when a snapshot last went to each member
}

// Node is one node's GUP state. It is not safe for concurrent use.
type Node struct {
	cfg Config
	log *slog.Logger
	now int64

	member  bool
	members nodes.Set
	owner   bool

	hist    uint64 // the history applied here (0: none yet)
	applied uint64
	marks   [nodes.Max + 1]reqMark // the last applied request of each origin

	// Sender and reader side.
	locker   nodes.ID
	term     uint64
	nextReq  uint64
	pending  []pendingReq
	buffered map[uint64]Update
	nextRead uint64
	reads    []pendingRead

	lk        *lockerState
	replayCmd uint64 // takeover replay in flight

	// A delayed ack, sent at the next tick.
	ackDue  bool
	ackTo   nodes.ID
	ackTerm uint64

	ready Ready
}

// New returns a node at sequence number 0 with an empty state; Restore
// loads a local copy before the node joins.
func New(cfg Config) (*Node, error) {
	if cfg.State == nil || cfg.Issue == nil || cfg.Fence == nil {
		return nil, fmt.Errorf("%w: State, Issue and Fence are required", ErrConfig)
	}
	if !cfg.Self.Valid() || cfg.Incarnation == 0 {
		return nil, fmt.Errorf("%w: node %d incarnation %d", ErrConfig, cfg.Self, cfg.Incarnation)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.RetransmitTicks, DefaultRetransmitTicks)
	def(&cfg.RequestTicks, DefaultRequestTicks)
	def(&cfg.History, DefaultHistory)
	def(&cfg.MaxBatchBytes, DefaultMaxBatchBytes)
	def(&cfg.MaxUpdateBytes, DefaultMaxUpdateBytes)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Node{cfg: cfg, log: log, buffered: map[uint64]Update{}}, nil
}

// ---- state ----

// Applied is the sequence number of the last update applied here.
func (n *Node) Applied() uint64 { return n.applied }

// Locker is the node this node takes for the locker, and its term.
func (n *Node) Locker() (nodes.ID, uint64) { return n.locker, n.term }

// IsLocker reports whether this node is the locker now.
func (n *Node) IsLocker() bool { return n.lk != nil }

// Pending is the number of this node's requests not yet applied here.
func (n *Node) Pending() int { return len(n.pending) }

// Snapshot encodes the state at Applied, for the local copy on disk.
func (n *Node) Snapshot() []byte {
	s := state{hist: n.hist, seq: n.applied, marks: n.marks, sm: n.cfg.State.Snapshot()}
	return s.encode()
}

// Restore loads a snapshot made by Snapshot (the local copy) before the
// node joins; the locker brings it up to date.
func (n *Node) Restore(b []byte) error {
	s, err := decodeState(b)
	if err != nil {
		return fmt.Errorf("restore the local copy: %w", err)
	}
	if err := n.cfg.State.Restore(s.sm); err != nil {
		return fmt.Errorf("restore the local copy at #%d: %w", s.seq, err)
	}
	n.hist, n.applied, n.marks = s.hist, s.seq, s.marks
	clear(n.buffered)
	return nil
}

// HasReady reports whether Ready has anything.
func (n *Node) HasReady() bool { return !n.ready.empty() }

// Ready returns and clears what accumulated.
func (n *Node) Ready() Ready {
	r := n.ready
	n.ready = Ready{}
	return r
}

func (n *Node) send(m Message) {
	m.From, m.Hist = n.cfg.Self, n.hist
	n.ready.Messages = append(n.ready.Messages, m)
}

func (n *Node) event(e Event) { n.ready.Events = append(n.ready.Events, e) }

// ---- inputs ----

// SetMembership tells GUP this node's place in the cluster: whether it is
// a member, the installed membership, and whether it holds the quorum
// reservation. The node core calls it after every step; installed is true
// when a new membership was just installed (the locker then announces
// itself to every member: the takeover of regroup's second cleanup).
func (n *Node) SetMembership(member bool, members nodes.Set, owner, installed bool) {
	n.member, n.owner = member, owner && member
	old := n.members
	n.members = members
	if !member {
		n.owner = false
	}
	if n.lk != nil && !n.owner {
		n.loseLocker("this node no longer holds the quorum reservation")
	}
	if n.owner && n.lk == nil && n.replayCmd == 0 {
		// Takeover: replay the log before sequencing anything.
		n.replayCmd = n.cfg.Issue(LogCommand{Op: LogReplay})
	}
	if !n.owner && n.replayCmd != 0 {
		n.replayCmd = 0 // its result is ignored
	}
	if member && n.locker != 0 && n.locker != n.cfg.Self && !members.Has(n.locker) {
		n.locker = 0 // until the next locker announces itself
	}
	switch {
	case n.lk == nil:
	case installed:
		n.announce(n.others())
	case old != members:
		n.announce(members &^ old)
	}
}

// Tick advances the clock by one tick: sends again what made no progress.
func (n *Node) Tick() {
	n.now++
	if n.ackDue {
		n.ack(n.ackTo, n.ackTerm)
	}
	if lk := n.lk; lk != nil {
		for _, id := range n.others().IDs() {
			p := lk.peer(id)
			r := int64(n.cfg.RetransmitTicks)
			switch {
			case !p.known:
				if n.now-p.sentAt >= r { // the announcement or its answer was lost
					n.announce(nodes.SetOf(id))
				}
			case n.now-p.sentAt >= announceTicks: // a member may have forgotten the locker
				n.announce(nodes.SetOf(id))
			case (p.other || p.acked < n.applied && n.now-p.progressAt >= r) && n.now-p.resentAt >= r:
				n.catchUp(id, p)
			}
		}
		if lk.logCmd == 0 && lk.ckpt && n.now >= lk.retry {
			n.maybeAppend()
		}
	}
	if n.locker != 0 {
		if len(n.pending) > 0 && n.now-n.pending[0].sentAt >= int64(n.cfg.RequestTicks) {
			n.sendPending()
		}
		for i := range n.reads {
			r := &n.reads[i]
			if !r.indexed && n.now-r.askedAt >= int64(n.cfg.RequestTicks) {
				r.askedAt = n.now
				n.askIndex(r.id)
			}
		}
	}
}

// NextTick is the earliest tick at which Tick may have work
// (math.MaxInt64: none until an input comes): an acknowledgement due, the
// locker's next announcement, retransmission or checkpoint retry, a
// request or a read index asked again. The result is always after Now.
func (n *Node) NextTick() int64 {
	if n.ackDue {
		return n.now + 1
	}
	next := int64(math.MaxInt64)
	if lk := n.lk; lk != nil {
		r := int64(n.cfg.RetransmitTicks)
		for _, id := range n.others().IDs() {
			p := lk.peers[id]
			if p == nil {
				p = &peer{} // as lk.peer would make it
			}
			if !p.known {
				next = min(next, p.sentAt+r)
				continue
			}
			next = min(next, p.sentAt+announceTicks)
			switch {
			case p.other:
				next = min(next, p.resentAt+r)
			case p.acked < n.applied:
				next = min(next, max(p.progressAt+r, p.resentAt+r))
			}
		}
		if lk.logCmd == 0 && lk.ckpt {
			next = min(next, lk.retry)
		}
	}
	if n.locker != 0 {
		if len(n.pending) > 0 {
			next = min(next, n.pending[0].sentAt+int64(n.cfg.RequestTicks))
		}
		for _, r := range n.reads {
			if !r.indexed {
				next = min(next, r.askedAt+int64(n.cfg.RequestTicks))
			}
		}
	}
	return max(next, n.now+1)
}

// Propose hands an update to the locker and returns its request number;
// the Completion with that number comes once it is applied here.
func (n *Node) Propose(data []byte) (uint64, error) {
	if !n.member {
		return 0, ErrNotMember
	}
	if len(data) > n.cfg.MaxUpdateBytes {
		return 0, fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, len(data), n.cfg.MaxUpdateBytes)
	}
	n.nextReq++
	p := pendingReq{req: n.nextReq, data: slices.Clone(data), sentAt: n.now}
	n.pending = append(n.pending, p)
	if n.locker != 0 {
		n.sendRequest(p)
	}
	return p.req, nil
}

// Read asks for a linearizable read and returns its id; the ReadDone with
// that id comes once every update committed before now is applied here.
func (n *Node) Read() (uint64, error) {
	if !n.member {
		return 0, ErrNotMember
	}
	n.nextRead++
	n.reads = append(n.reads, pendingRead{id: n.nextRead, askedAt: n.now})
	if n.locker != 0 {
		n.askIndex(n.nextRead)
	}
	return n.nextRead, nil
}

// CancelRead forgets a read the driver gave up on.
func (n *Node) CancelRead(id uint64) {
	n.reads = slices.DeleteFunc(n.reads, func(r pendingRead) bool { return r.id == id })
}

// Step takes a message from another node.
func (n *Node) Step(m Message) {
	if m.To != n.cfg.Self || m.From == n.cfg.Self || !m.From.Valid() {
		return
	}
	switch m.Type {
	case MsgRequest:
		if n.lk != nil && n.members.Has(m.From) {
			n.accept(Update{Origin: m.From, Inc: m.Inc, Req: m.Req, Data: m.Data})
			n.maybeAppend()
		}
	case MsgUpdates:
		// Only a locker sends updates: a member that missed its
		// announcement learns it here. (Its acks of these updates answer
		// the announcement, so the locker would not send it again, and
		// the member's own requests would never leave it.)
		if m.From != n.locker && n.members.Has(m.From) {
			n.lockerAnnounced(m)
		}
		if m.Hist != n.hist && n.hist == 0 && n.applied == 0 && len(m.Updates) > 0 && m.Updates[0].Seq == 1 {
			n.hist = m.Hist // a new node takes the history from its start
		}
		if m.Hist == n.hist {
			for _, u := range m.Updates {
				n.receive(u)
			}
			n.drainBuffered()
		}
		// Up to date with what the locker had applied when it sent this,
		// and no hole: the ack can wait for the next tick (one ack for
		// all the batches of a tick). Behind (a catch-up, clocked by its
		// acks) or holding a hole: ack now.
		if n.applied >= m.Seq && len(n.buffered) == 0 {
			n.ackDue, n.ackTo, n.ackTerm = true, m.From, m.Term
		} else {
			n.ack(m.From, m.Term)
		}
	case MsgAck:
		if n.lk != nil && m.Term == n.lk.term {
			p := n.lk.peer(m.From)
			if m.Seq > p.acked || !p.known {
				p.progressAt = n.now
			}
			p.acked, p.known = m.Seq, true
			p.sentUpTo = max(p.sentUpTo, m.Seq)
			p.other = m.Hist != n.hist && (m.Hist != 0 || m.Seq != 0)
			// Nothing in flight to it and still behind: the next chunk
			// (a catch-up is clocked by its acks). Updates held above a
			// hole (m.Req): one was lost; send the hole again, at most
			// every gapTicks.
			holes := m.Req > m.Seq+1 && n.now-p.resentAt >= gapTicks
			if p.other || m.Seq < n.applied && (p.sentUpTo <= m.Seq || holes) {
				n.catchUp(m.From, p)
			}
		}
	case MsgLocker:
		n.lockerAnnounced(m)
	case MsgSnapshot:
		// A snapshot of another history replaces this node's state even
		// if it is behind: the log wins.
		if m.Seq > n.applied || m.Hist != n.hist {
			if err := n.restoreState(m.Data, "snapshot from the locker"); err != nil {
				n.log.Warn("snapshot from the locker", "from", m.From, "err", err)
				return
			}
			n.drainBuffered()
		}
		n.ack(m.From, m.Term)
	case MsgRead:
		if n.lk != nil {
			n.lk.waiting = append(n.lk.waiting, readReq{from: m.From, id: m.ReadID})
			n.maybeBarrier()
		}
	case MsgReadIndex:
		n.indexed(m.ReadID, m.Seq)
	}
}

// LogDone takes the result of a log command; it reports whether the
// command was GUP's.
func (n *Node) LogDone(r LogResult) bool {
	switch {
	case r.ID == 0:
		return false
	case r.ID == n.replayCmd:
		n.replayCmd = 0
		n.replayed(r)
	case n.lk != nil && r.ID == n.lk.logCmd:
		n.lk.logCmd = 0
		if r.Op == LogAppend {
			n.appended(r)
		} else {
			n.checkpointed(r)
		}
	case n.lk != nil && r.ID == n.lk.barrier:
		n.barrierDone(r)
	default:
		return r.Op == LogReplay || r.Op == LogAppend || r.Op == LogCheckpoint
	}
	return true
}

// ---- sender side ----

func (n *Node) sendRequest(p pendingReq) {
	if n.locker == n.cfg.Self {
		if n.lk != nil {
			n.accept(Update{Origin: n.cfg.Self, Inc: n.cfg.Incarnation, Req: p.req, Data: p.data})
			n.maybeAppend()
		}
		return
	}
	n.send(Message{Type: MsgRequest, To: n.locker, Term: n.term, Inc: n.cfg.Incarnation, Req: p.req, Data: p.data})
}

// sendPending sends every pending request again, in order: the locker
// drops what it already has.
func (n *Node) sendPending() {
	for i := range n.pending {
		n.pending[i].sentAt = n.now
	}
	// On the locker a request is accepted at once: iterate over a copy,
	// whatever that does to the pending list.
	for _, p := range slices.Clone(n.pending) {
		n.sendRequest(p)
	}
}

func (n *Node) askIndex(id uint64) {
	if n.locker == n.cfg.Self {
		if n.lk != nil {
			n.lk.waiting = append(n.lk.waiting, readReq{from: n.cfg.Self, id: id})
			n.maybeBarrier()
		}
		return
	}
	n.send(Message{Type: MsgRead, To: n.locker, ReadID: id})
}

func (n *Node) indexed(id, seq uint64) {
	for i := range n.reads {
		if r := &n.reads[i]; r.id == id && !r.indexed {
			r.indexed, r.seq = true, seq
		}
	}
	n.readsDone()
}

func (n *Node) readsDone() {
	n.reads = slices.DeleteFunc(n.reads, func(r pendingRead) bool {
		if r.indexed && r.seq <= n.applied {
			n.ready.Reads = append(n.ready.Reads, ReadDone{ReadID: r.id, Seq: n.applied})
			return true
		}
		return false
	})
}

func (n *Node) lockerAnnounced(m Message) {
	if m.Term < n.term || m.Term == n.term && m.From != n.locker && n.locker != 0 {
		return
	}
	if n.lk != nil && m.Term > n.lk.term {
		// A later term's locker: this node's term is over (the log has
		// moved on; its own appends would be refused by the disk), so it
		// stops sequencing and applies the new locker's updates as a
		// member. Kept as locker, it applied them outside its history
		// and then sent a member a catch-up from a history that no
		// longer reached its applied (simulator seed 8428, 15 nodes).
		n.loseLocker(fmt.Sprintf("node %d is the locker of a later term (%d)", m.From, m.Term))
	}
	changed := m.Term != n.term || m.From != n.locker
	n.locker, n.term = m.From, m.Term
	if changed {
		n.event(Event{Kind: EventLockerKnown, Node: m.From, Term: m.Term})
	}
	n.ack(m.From, m.Term)
	if changed {
		n.sendPending()
		for i := range n.reads {
			if r := &n.reads[i]; !r.indexed {
				r.askedAt = n.now
				n.askIndex(r.id)
			}
		}
	}
}

// ack tells the locker what is applied here (Seq) and the highest update
// held beyond a hole (Req; 0 when none).
func (n *Node) ack(to nodes.ID, term uint64) {
	n.ackDue = false
	var held uint64
	for s := range n.buffered {
		held = max(held, s)
	}
	n.send(Message{Type: MsgAck, To: to, Term: term, Seq: n.applied, Req: held})
}

// ---- applying ----

// receive takes a committed update from the locker: applied if it is the
// next, held if it is ahead of a gap, dropped if it was applied already.
func (n *Node) receive(u Update) {
	switch {
	case u.Seq <= n.applied:
	case u.Seq == n.applied+1:
		n.apply(u)
	case len(n.buffered) < maxBuffered:
		n.buffered[u.Seq] = u
	}
}

func (n *Node) drainBuffered() {
	for len(n.buffered) > 0 {
		for s := range n.buffered {
			if s <= n.applied {
				delete(n.buffered, s)
			}
		}
		u, ok := n.buffered[n.applied+1]
		if !ok {
			break
		}
		delete(n.buffered, u.Seq)
		n.apply(u)
	}
	n.readsDone()
}

// apply applies the next update. A request applied before (a duplicate
// that was sequenced twice) changes nothing the second time.
func (n *Node) apply(u Update) {
	outcome, dup := applyUpdate(n.cfg.State, &n.marks, u)
	if dup {
		n.log.Warn("duplicate request sequenced twice: not applied", "update", u.String())
	}
	n.applied = u.Seq
	if u.Origin == n.cfg.Self && u.Inc == n.cfg.Incarnation {
		i := 0
		for i < len(n.pending) && n.pending[i].req <= u.Req {
			if n.pending[i].req == u.Req {
				n.ready.Completions = append(n.ready.Completions, Completion{Req: u.Req, Seq: u.Seq, Err: outcome})
			}
			i++
		}
		n.pending = n.pending[i:]
	}
}

// applyUpdate applies u to sm, unless it repeats a request marks say was
// applied (dup) or the locker refused it, and records u's request in
// marks. outcome is what the sender's client is told. Nodes and Replay
// both apply through it.
func applyUpdate(sm StateMachine, marks *[nodes.Max + 1]reqMark, u Update) (outcome string, dup bool) {
	switch {
	case marks[u.Origin].covers(u.Inc, u.Req):
		return "duplicate", true
	case u.Refused != "":
		outcome = u.Refused
	default:
		if err := sm.Apply(u.Seq, u.Data); err != nil {
			outcome = err.Error()
		}
	}
	marks[u.Origin] = reqMark{inc: u.Inc, req: u.Req}
	return outcome, false
}

// restoreState replaces the state with an encoded one.
func (n *Node) restoreState(b []byte, why string) error {
	var s state
	if len(b) > 0 {
		var err error
		if s, err = decodeState(b); err != nil {
			return err
		}
	}
	if err := n.cfg.State.Restore(s.sm); err != nil {
		return fmt.Errorf("restore the state machine at #%d: %w", s.seq, err)
	}
	n.hist, n.applied, n.marks = s.hist, s.seq, s.marks
	clear(n.buffered)
	n.event(Event{Kind: EventReset, Seq: s.seq, Reason: why})
	// Own requests at or before the restored mark are applied.
	i := 0
	for i < len(n.pending) && n.marks[n.cfg.Self].covers(n.cfg.Incarnation, n.pending[i].req) {
		n.ready.Completions = append(n.ready.Completions, Completion{Req: n.pending[i].req, Seq: s.seq, AtOrBefore: true})
		i++
	}
	n.pending = n.pending[i:]
	return nil
}

// ---- locker side ----

func (lk *lockerState) peer(id nodes.ID) *peer {
	if lk.peers[id] == nil {
		lk.peers[id] = &peer{}
	}
	return lk.peers[id]
}

func (n *Node) others() nodes.Set { return n.members.Remove(n.cfg.Self) }

// replayed: the log says what was committed; this node takes it over.
func (n *Node) replayed(r LogResult) {
	if !r.OK {
		n.event(Event{Kind: EventLogTrouble, Reason: "replay: " + r.Err})
		if r.Conflict {
			n.cfg.Fence("replay of the recovery log: RESERVATION CONFLICT")
			return
		}
		// The next SetMembership tries again while this node owns.
		return
	}
	ck := state{}
	if len(r.Snapshot) > 0 {
		var err error
		if ck, err = decodeState(r.Snapshot); err != nil {
			n.cfg.Fence(fmt.Sprintf("the recovery log's checkpoint is unreadable: %v", err))
			return
		}
	}
	var recs []Update
	for _, rec := range r.Records {
		if !rec.Update {
			continue
		}
		us, err := DecodeBatch(rec.Payload)
		if err != nil {
			n.cfg.Fence(fmt.Sprintf("record LSN %d of the recovery log is unreadable: %v", rec.LSN, err))
			return
		}
		recs = append(recs, us...)
	}
	next := ck.seq + 1
	for _, u := range recs {
		if u.Seq != next {
			n.cfg.Fence(fmt.Sprintf("the recovery log holds update #%d where #%d was due", u.Seq, next))
			return
		}
		next++
	}
	last := next - 1
	seed := false
	switch {
	case ck.hist == 0 && len(recs) == 0:
		// A log that never held an update (a new quorum disk): it starts
		// a history, or this node's copy seeds it; either way with a
		// checkpoint before anything else.
		seed = true
		if n.hist == 0 {
			n.hist = r.FormatID
		}
	case ck.hist == 0:
		n.cfg.Fence("the recovery log holds updates after a checkpoint without a history")
		return
	case n.hist != ck.hist || n.applied > last:
		// This node's copy holds another history than the log's (the
		// quorum disk was formatted again), or updates the log does
		// not: the log wins.
		if err := n.restoreState(r.Snapshot, fmt.Sprintf("this node's copy (#%d) is not the recovery log's history (#%d): the log wins", n.applied, last)); err != nil {
			n.cfg.Fence(err.Error())
			return
		}
	case n.applied < ck.seq:
		if err := n.restoreState(r.Snapshot, "the recovery log's checkpoint is ahead of this node"); err != nil {
			n.cfg.Fence(err.Error())
			return
		}
	}
	for _, u := range recs {
		if u.Seq > n.applied {
			n.apply(u)
		}
	}
	lk := &lockerState{term: r.Term, free: r.Free, size: r.Size, maxRec: r.MaxPayload, accepted: n.marks}
	for _, u := range recs {
		if u.Seq > ck.seq && u.Seq <= n.applied {
			lk.history = append(lk.history, u)
		}
	}
	if seed {
		lk.ckpt = true
	}
	n.trimHistory(lk)
	n.lk = lk
	n.locker, n.term = n.cfg.Self, r.Term
	n.event(Event{Kind: EventLocker, Term: r.Term, Seq: n.applied, Records: len(recs)})
	n.announce(n.others())
	n.sendPending()
	for i := range n.reads {
		if r := &n.reads[i]; !r.indexed {
			n.askIndex(r.id)
		}
	}
	n.readsDone()
	n.maybeAppend()
}

func (n *Node) announce(to nodes.Set) {
	for _, id := range to.Remove(n.cfg.Self).IDs() {
		p := n.lk.peer(id)
		p.known, p.sentAt = false, n.now
		n.send(Message{Type: MsgLocker, To: id, Term: n.lk.term, Seq: n.applied})
	}
}

func (n *Node) loseLocker(why string) {
	n.lk = nil
	if n.locker == n.cfg.Self {
		n.locker = 0
	}
	n.event(Event{Kind: EventLockerLost, Reason: why})
}

// accept queues a request unless it is a duplicate. One that arrives
// ahead of an earlier one of its sender (reordered, or the earlier one
// lost) is held until the gap fills: a sender's requests are sequenced in
// the order it made them. The sender sends a lost one again.
func (n *Node) accept(u Update) {
	lk := n.lk
	m := lk.accepted[u.Origin]
	switch {
	case m.covers(u.Inc, u.Req):
		return // a duplicate
	case u.Inc == m.inc && u.Req != m.req+1, u.Inc > m.inc && u.Req != 1:
		h := lk.held[u.Origin]
		switch {
		case len(h) > 0 && h[0].Inc < u.Inc:
			lk.held[u.Origin] = []Update{u} // a new incarnation: the old one's are moot
		case len(h) < maxBuffered && (len(h) == 0 || h[0].Inc == u.Inc):
			if i, found := slices.BinarySearchFunc(h, u.Req, func(x Update, r uint64) int { return cmp.Compare(x.Req, r) }); !found {
				lk.held[u.Origin] = slices.Insert(h, i, u)
			}
		}
		return
	}
	lk.accepted[u.Origin] = reqMark{inc: u.Inc, req: u.Req}
	lk.queue = append(lk.queue, u)
	// Requests held behind this one may follow now.
	h := lk.held[u.Origin]
	i := 0
	for ; i < len(h); i++ {
		next := lk.accepted[u.Origin]
		if h[i].Inc != next.inc || h[i].Req > next.req+1 {
			break
		}
		if h[i].Req == next.req+1 {
			lk.accepted[u.Origin] = reqMark{inc: h[i].Inc, req: h[i].Req}
			lk.queue = append(lk.queue, h[i])
		}
	}
	if i > 0 {
		lk.held[u.Origin] = h[i:]
	}
}

// maybeAppend starts the next log write when none runs: a due checkpoint,
// else every queued request up to MaxBatchBytes as one record.
func (n *Node) maybeAppend() {
	lk := n.lk
	if lk == nil || lk.logCmd != 0 {
		return
	}
	if lk.ckpt {
		if n.now < lk.retry {
			return
		}
		lk.ckptSeq = n.applied
		lk.logOp = LogCheckpoint
		lk.logCmd = n.cfg.Issue(LogCommand{Op: LogCheckpoint, GUPSeq: n.applied, Payload: n.Snapshot()})
		return
	}
	if len(lk.queue) == 0 {
		return
	}
	limit := n.cfg.MaxBatchBytes
	if lk.maxRec > 0 {
		limit = min(limit, lk.maxRec-16)
	}
	size, k := 9, 0
	for k < len(lk.queue) {
		u := &lk.queue[k]
		if lk.maxRec > 0 && updateSize(*u)+9 > lk.maxRec-16 {
			u.Data, u.Refused = nil, fmt.Sprintf("update of %d bytes does not fit a record of the recovery log (at most %d)", len(u.Data), lk.maxRec-16-9-updFixedLen)
		}
		if k > 0 && size+updateSize(*u) > limit {
			break
		}
		size += updateSize(*u)
		k++
	}
	batch := slices.Clone(lk.queue[:k])
	lk.queue = slices.Delete(lk.queue, 0, k)
	for i := range batch {
		batch[i].Seq = n.applied + 1 + uint64(i)
	}
	lk.inflight = batch
	lk.logOp = LogAppend
	lk.logCmd = n.cfg.Issue(LogCommand{Op: LogAppend, GUPSeq: batch[k-1].Seq, Payload: EncodeBatch(batch)})
}

// appended: the batch is on the log, so it is committed. Apply it here,
// then deliver it to the other members in node-id order after this node.
func (n *Node) appended(r LogResult) {
	lk := n.lk
	batch := lk.inflight
	lk.inflight = nil
	if !r.OK {
		if r.Full {
			// Unsequence the batch: it goes first after the checkpoint.
			for i := range batch {
				batch[i].Seq = 0
			}
			lk.queue = append(batch, lk.queue...)
			lk.ckpt = true
			n.maybeAppend()
			return
		}
		n.logFailed("append", r, batch)
		return
	}
	lk.free, lk.size = r.Free, r.Size
	if r.MaxPayload > 0 {
		lk.maxRec = r.MaxPayload
	}
	for _, u := range batch {
		n.apply(u)
	}
	lk.history = append(lk.history, batch...)
	n.trimHistory(lk)
	n.deliver(batch)
	n.readsDone()
	if lk.size > 0 && lk.free < lk.size/2 {
		lk.ckpt = true
	}
	n.maybeAppend()
}

// deliver sends a batch to every other member, in node-id order starting
// after this node (docs/gup.md: the order a sequential delivery would
// use; the log makes waiting for each in turn unnecessary).
func (n *Node) deliver(batch []Update) {
	ids := n.others().IDs()
	slices.SortStableFunc(ids, func(a, b nodes.ID) int { return n.after(a) - n.after(b) })
	first := batch[0].Seq
	for _, id := range ids {
		p := n.lk.peer(id)
		if p.known && p.sentUpTo+1 < first {
			continue // behind: catchUp sends it the gap first
		}
		if p.acked+1 >= first {
			p.progressAt = n.now // up to date until now: its wait starts
		}
		p.sentUpTo, p.sentAt = batch[len(batch)-1].Seq, n.now
		n.send(Message{Type: MsgUpdates, To: id, Term: n.lk.term, Seq: n.applied, Updates: batch})
	}
}

// after is id's position in node-id order starting after this node.
func (n *Node) after(id nodes.ID) int {
	d := int(id) - int(n.cfg.Self)
	if d < 0 {
		d += nodes.Max
	}
	return d
}

// catchUp sends a member what it lacks: updates from history, or the
// whole state when history no longer reaches back far enough.
func (n *Node) catchUp(id nodes.ID, p *peer) {
	lk := n.lk
	p.sentAt, p.resentAt = n.now, n.now
	if p.other || p.acked > n.applied || len(lk.history) == 0 || lk.history[0].Seq > p.acked+1 {
		if p.acked == n.applied && !p.other {
			return
		}
		if n.now-lk.sentSnap[id] < int64(n.cfg.RetransmitTicks) && lk.sentSnap[id] != 0 {
			return
		}
		lk.sentSnap[id] = n.now
		p.sentUpTo = n.applied
		n.send(Message{Type: MsgSnapshot, To: id, Term: lk.term, Seq: n.applied, Data: n.Snapshot()})
		return
	}
	start := int(p.acked + 1 - lk.history[0].Seq)
	end, size := start, 0
	limit := min(n.cfg.MaxBatchBytes, catchUpBytes)
	for end < len(lk.history) && end-start < catchUpUpdates && (end == start || size+updateSize(lk.history[end]) <= limit) {
		size += updateSize(lk.history[end])
		end++
	}
	chunk := lk.history[start:end]
	p.sentUpTo = chunk[len(chunk)-1].Seq
	n.send(Message{Type: MsgUpdates, To: id, Term: lk.term, Seq: n.applied, Updates: chunk})
}

func (n *Node) trimHistory(lk *lockerState) {
	if over := len(lk.history) - n.cfg.History; over > 0 {
		lk.history = slices.Delete(lk.history, 0, over)
	}
}

func (n *Node) checkpointed(r LogResult) {
	lk := n.lk
	if !r.OK {
		if r.Conflict {
			n.cfg.Fence("checkpoint of the recovery log: RESERVATION CONFLICT: this node's key was removed")
			return
		}
		if r.Full { // too large for the checkpoint area: the log stays full
			n.event(Event{Kind: EventLogTrouble, Reason: "checkpoint: " + r.Err})
			lk.retry = n.now + 100
			return
		}
		n.logFailed("checkpoint", r, nil)
		return
	}
	lk.ckpt = false
	lk.free, lk.size = r.Free, r.Size
	n.event(Event{Kind: EventCheckpoint, Seq: lk.ckptSeq})
	n.maybeAppend()
}

// logFailed: a log write failed and may or may not have landed; the log
// refuses writes until it is replayed. This node gives up the locker role
// and takes it over again: the replay shows what is committed, and the
// senders send what is not again.
func (n *Node) logFailed(what string, r LogResult, batch []Update) {
	if r.Conflict {
		n.cfg.Fence(what + " to the recovery log: RESERVATION CONFLICT: this node's key was removed")
		return
	}
	n.event(Event{Kind: EventLogTrouble, Reason: what + ": " + r.Err})
	n.loseLocker(what + " to the recovery log failed: " + r.Err)
	if n.owner && n.replayCmd == 0 {
		n.replayCmd = n.cfg.Issue(LogCommand{Op: LogReplay})
	}
}

func (n *Node) maybeBarrier() {
	lk := n.lk
	if lk.barrier != 0 || len(lk.waiting) == 0 {
		return
	}
	lk.inBar, lk.waiting = lk.waiting, nil
	lk.barrier = n.cfg.Issue(LogCommand{Op: LogBarrier})
}

// barrierDone: this node's key was still registered after every read in
// the barrier was asked, so no other node had taken the log over: every
// update committed before is applied here.
func (n *Node) barrierDone(r LogResult) {
	lk := n.lk
	lk.barrier = 0
	reads := lk.inBar
	lk.inBar = nil
	switch {
	case r.OK && !r.KeyPresent:
		n.cfg.Fence("read barrier: this node's key is no longer registered on the quorum disk")
		return
	case !r.OK:
		n.event(Event{Kind: EventLogTrouble, Reason: "read barrier: " + r.Err})
		return // the readers ask again after RequestTicks
	}
	for _, rr := range reads {
		if rr.from == n.cfg.Self {
			n.indexed(rr.id, n.applied)
		} else {
			n.send(Message{Type: MsgReadIndex, To: rr.from, ReadID: rr.id, Seq: n.applied})
		}
	}
	n.maybeBarrier()
}
