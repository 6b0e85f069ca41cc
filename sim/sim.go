package sim

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/heartbeat"
	"github.com/wolfpack-ha/wolfpack/internal/core"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/internal/quorumio"
	"github.com/wolfpack-ha/wolfpack/quorumdisk"
	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

// Virtual time is in microseconds.
const (
	Microsecond int64 = 1
	Millisecond       = 1000 * Microsecond
	Second            = 1000 * Millisecond
)

// Config describes one simulation run.
type Config struct {
	Seed     uint64
	Nodes    int // 2..64
	Networks int // private networks (default 2)
	// Tick is the base tick of every state machine (default 10 ms); the
	// heartbeat interval and threshold are heartbeat's defaults in ticks.
	Tick int64
	// DefenceDelay is the arbiter's wait before a non-priority claim
	// (default 150 ms); FormDelay a forming node's (default 1.5 s, more than
	// QuorumCheck so a live owner defends); QuorumCheck the owner's
	// re-check interval (default 1 s).
	DefenceDelay, FormDelay, QuorumCheck int64
	// DiskBeat is the disk heartbeat interval (default 100 ms);
	// CommandTimeout how long a command on a cut disk path takes to fail
	// (default 1 s).
	DiskBeat, CommandTimeout int64
	// Faults turns on the random fault schedule between FaultStart and
	// FaultEnd (defaults 1 s and 4 s). After FaultEnd everything heals and
	// the cluster must stabilise within Settle (default 20 s).
	Faults               bool
	FaultStart, FaultEnd int64
	Settle               int64
	// Loss is the base probability that a datagram or message is lost
	// (default 0.01 with Faults); Dup the probability it is duplicated.
	Loss, Dup float64
	// ClusterTag is the upper half of every reservation key.
	ClusterTag uint32
	// Trace, if set, receives the event trace.
	Trace io.Writer
	// TraceHeartbeats adds every heartbeat datagram to the trace.
	TraceHeartbeats bool
	// Clients is the number of GUP clients writing and reading through
	// random nodes until the faults end (0: no GUP workload or checks).
	Clients int
	// Groups is the most groups the failover manager's workload creates
	// (1..Groups, drawn from the seed; 0: none, and no checks of theirs).
	Groups int
}

func (c *Config) defaults() {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.Networks <= 0 {
		c.Networks = 2
	}
	def(&c.Tick, 10*Millisecond)
	def(&c.DefenceDelay, 150*Millisecond)
	def(&c.FormDelay, 1500*Millisecond)
	def(&c.QuorumCheck, Second)
	def(&c.DiskBeat, 100*Millisecond)
	def(&c.CommandTimeout, Second)
	def(&c.FaultStart, Second)
	def(&c.FaultEnd, 4*Second)
	def(&c.Settle, 20*Second)
	if c.ClusterTag == 0 {
		c.ClusterTag = 0x57504b31 // "WPK1"
	}
}

var clusterKey = []byte("wolfpack simulator cluster key")

type node struct {
	id      regroup.NodeID
	inc     uint64
	running bool // process alive (not crashed, not halted, not left)
	frozen  bool // SIGSTOP: alive, but neither ticks nor receives
	core    *core.Node
	nexus   scsi.Device
	exec    *quorumio.Executor
	disk    diskQueue
	// slow is extra latency on this node's disk path (a disk-path fault).
	slow int64
	// fencedSince is when this node became a member whose key is not on
	// the target (-1: not so).
	fencedSince int64
	frozenFor   int64 // time spent frozen since fencedSince
	frozeAt     int64
	// pillAt is when a poison pill for this incarnation was written (-1:
	// none); frozenSincePill is time frozen since then.
	pillAt          int64
	frozenSincePill int64
	diskFault       bool  // a transport fault is on this node's path
	diskTroubleAt   int64 // last time a disk fault or slowness began or ended
	stuck           int   // commands issued on a troubled path still in flight
	// state is this incarnation's database; saved its last local copy on
	// the node's own disk, which the next incarnation starts from.
	state *kvState
	saved []byte
	// The failover manager's side: the node's resmon (which outlives
	// the process, not the machine), the lease it last sent (its virtual
	// deadline, 0: none), the channel from resmon (ordered, held while
	// frozen), the virtual time of each tick this incarnation processed,
	// the membership at the last flush, and the clock it was last given.
	rm        *resmon
	lease     int64
	stQ       []func(*core.Node)
	stAt      int64
	stPoll    bool
	tickAt    []int64
	fmMembers nodes.Set
	wall      int64
	hour      int
}

// Sim is one simulation. It is not safe for concurrent use; run many in
// parallel, one per goroutine.
type Sim struct {
	cfg    Config
	rng    *rand.Rand
	now    int64
	seq    uint64
	queue  eventQueue
	nodes  []*node // index = id; [0] unused
	all    regroup.NodeSet
	target *memtarget.Target
	cut    []bool // [net][from][to]
	loss   float64
	dirty  bool

	regKeys  regroup.NodeSet // nodes whose key is registered, cached by PRgeneration
	regGen   uint32
	regValid bool

	unreservedAt int64 // last time the target held no reservation

	// Scenario hooks (the seeds leave them alone): lag is extra one-way
	// delay of every datagram and message to or from a node, a machine
	// that runs late (a TCG guest) rather than one that stops; dropMsg,
	// if set, loses the regroup messages it returns true for.
	lag     [65]int64
	dropMsg func(m regroup.Message) bool

	wl workload
	fm fmState

	Violations []string
	Metrics    Metrics
	trace      io.Writer
	events     int
}

// New builds a simulation of cfg.Nodes nodes.
func New(cfg Config) *Sim {
	cfg.defaults()
	if cfg.Faults && cfg.Loss == 0 {
		cfg.Loss = 0.01
	}
	if cfg.Faults && cfg.Dup == 0 {
		cfg.Dup = 0.01
	}
	s := &Sim{
		cfg:    cfg,
		rng:    rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		target: memtarget.New(memtarget.Config{NoPowerOnAttention: true, Blocks: 1024}),
		cut:    make([]bool, cfg.Networks*65*65),
		loss:   cfg.Loss,
		trace:  cfg.Trace,
	}
	s.fm = fmState{truth: db.New(), resGrp: map[string]string{}, holders: map[string]nodes.Set{}, epoch: map[string]uint64{},
		admin: map[string]bool{}, pushes: map[string][]int64{}, failbacks: map[string][]fbRec{}, fails: map[failKey]failRec{},
		restarts: map[restartKey][]int64{}, reqs: map[opKey]string{}, setupAt: -1,
		hour0: s.rng.IntN(24), hourLen: s.randDur(200*Millisecond, Second)}
	s.nodes = make([]*node, cfg.Nodes+1)
	for i := 1; i <= cfg.Nodes; i++ {
		s.all = s.all.Add(regroup.NodeID(i))
	}
	for i := 1; i <= cfg.Nodes; i++ {
		n := &node{id: regroup.NodeID(i), fencedSince: -1, pillAt: -1, diskTroubleAt: -1}
		n.nexus = s.target.Nexus(s.initiator(n.id))
		s.nodes[i] = n
	}
	// The shared LUN is a formatted quorum disk, as `cluster quorum format`
	// leaves it.
	blocks, err := quorumdisk.NewSCSIBlocks(ctx, s.nodes[1].nexus)
	if err == nil {
		_, err = quorumdisk.Format(ctx, blocks, quorumdisk.FormatOptions{
			ClusterTag: cfg.ClusterTag, CheckpointBytes: 16 << 10, ClusterID: [16]byte{'s', 'i', 'm'}, Force: true,
		})
	}
	if err != nil {
		panic(fmt.Sprintf("sim: format the quorum disk: %v", err))
	}
	for _, n := range s.nodes[1:] {
		if n.exec, err = quorumio.Open(ctx, n.nexus, cfg.ClusterTag, uint32(n.id)); err != nil {
			panic(fmt.Sprintf("sim: open the quorum disk: %v", err))
		}
		n.exec.Nodes = uint32(cfg.Nodes)
	}
	return s
}

var ctx = context.Background()

// setClock gives node n the virtual wall clock and local hour.
func (s *Sim) setClock(n *node) {
	n.wall, n.hour = s.wallMs(), s.hour()
	n.core.SetClock(n.wall, n.hour)
}

// Now is the virtual time in microseconds.
func (s *Sim) Now() int64 { return s.now }

// Node returns node id's node core (nil before its first boot).
func (s *Sim) Node(id regroup.NodeID) *core.Node { return s.nodes[id].core }

// Target is the shared quorum LUN.
func (s *Sim) Target() *memtarget.Target { return s.target }

func (s *Sim) tracef(id regroup.NodeID, format string, args ...any) {
	if s.trace == nil {
		return
	}
	fmt.Fprintf(s.trace, "%10.6fs n%-2d %s\n", float64(s.now)/float64(Second), id, fmt.Sprintf(format, args...))
}

// ---- event queue ----

type event struct {
	at  int64
	seq uint64
	fn  func()
}

// eventQueue is a binary min-heap on (at, seq), typed so that neither a
// push nor a pop boxes an event in an interface (container/heap did, an
// allocation an event). (at, seq) is unique, so the order events are
// taken in is the same whatever the heap's shape.
type eventQueue []event

func (q eventQueue) less(i, j int) bool {
	return q[i].at < q[j].at || q[i].at == q[j].at && q[i].seq < q[j].seq
}

func (q *eventQueue) push(e event) {
	*q = append(*q, e)
	h := *q
	for j := len(h) - 1; j > 0; {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h[i], h[j] = h[j], h[i]
		j = i
	}
}

func (q *eventQueue) pop() event {
	h := *q
	e := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h[n] = event{} // the closure is garbage once run
	h = h[:n]
	for i := 0; ; {
		j := 2*i + 1
		if j >= n {
			break
		}
		if r := j + 1; r < n && h.less(r, j) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
	*q = h
	return e
}

func (s *Sim) after(d int64, fn func()) {
	s.seq++
	s.queue.push(event{at: s.now + max(d, 0), seq: s.seq, fn: fn})
}

// RunUntil processes events until virtual time t (or stop returns true
// after an event). It returns whether stop fired.
func (s *Sim) RunUntil(t int64, stop func() bool) bool {
	for len(s.queue) > 0 && s.queue[0].at <= t {
		e := s.queue.pop()
		s.now = e.at
		e.fn()
		s.events++
		if s.dirty {
			s.dirty = false
			s.check()
		}
		if stop != nil && stop() {
			return true
		}
	}
	s.now = max(s.now, t)
	return false
}

// ---- nodes ----

// Boot starts node id's process with a new incarnation; form makes it form
// the cluster at once, otherwise it joins (or forms if nobody answers).
func (s *Sim) Boot(id regroup.NodeID, form bool) {
	n := s.nodes[id]
	n.inc++
	n.state = newKV(s, n)
	s.newResmon(n)
	tick := s.cfg.Tick
	ticks := func(d int64) int { return int(max(1, (d+tick-1)/tick)) }
	c, err := core.New(core.Config{
		ClusterTag: s.cfg.ClusterTag, Self: id, Incarnation: n.inc, Nodes: s.all,
		Networks: s.cfg.Networks, Secret: clusterKey,
		HeartbeatPhase: s.rng.IntN(heartbeat.DefaultIntervalTicks),
		// As clusterd: a follower waits for the leader's arbitration: the
		// longest class wait and a few commands that may each time out.
		ArbitrationTicks: max(regroup.DefaultArbitrationTicks, ticks(2*s.cfg.DefenceDelay+2*s.cfg.CommandTimeout)),
		DefenceTicks:     ticks(s.cfg.DefenceDelay),
		FormTicks:        ticks(s.cfg.FormDelay),
		CheckTicks:       ticks(s.cfg.QuorumCheck),
		DiskBeatTicks:    ticks(s.cfg.DiskBeat),
		State:            n.state,
		DB:               n.state.db,
		Name:             fmt.Sprintf("n%d", id),
	})
	if err != nil {
		panic(err)
	}
	if n.saved != nil {
		if err := c.GUP().Restore(n.saved); err != nil {
			s.violate("node %d: restore its local copy: %v", id, err)
		}
	}
	n.core, n.running, n.frozen = c, true, false
	n.tickAt = append(n.tickAt[:0], s.now)
	s.setClock(n)
	n.pillAt = -1
	n.disk.reset()
	n.stuck = 0
	n.exec.Incarnation = n.inc
	s.tracef(id, "boot incarnation %d (form=%v)", n.inc, form)
	if form {
		c.Form()
	} else {
		c.Start()
	}
	s.flush(n)
	// Ticks, with a random phase within the first tick.
	inc := n.inc
	var tickFn func()
	tickFn = func() {
		if n.inc != inc || !n.running {
			return
		}
		s.after(s.cfg.Tick, tickFn)
		if n.frozen {
			return
		}
		s.setClock(n)
		n.tickAt = append(n.tickAt, s.now)
		s.tick(n)
		s.flush(n)
	}
	s.after(s.rng.Int64N(s.cfg.Tick), tickFn)
	// The local copy, saved now and then (the last one may be stale).
	var saveFn func()
	saveFn = func() {
		if n.inc != inc || !n.running {
			return
		}
		if !n.frozen {
			n.saved = n.core.GUP().Snapshot()
		}
		s.after(s.randDur(50*Millisecond, 500*Millisecond), saveFn)
	}
	s.after(s.randDur(50*Millisecond, 500*Millisecond), saveFn)
	s.dirty = true
}

// tick ticks node n's core once and checks the deadline it promised
// (core.Node.NextTick): a tick before that deadline may produce nothing,
// and must not bring the deadline forward, since a driver that sleeps
// until the deadline runs the ticks before it all at once without asking
// again. By induction every tick before a deadline asked for after an
// input is quiet, so clusterd, which sleeps until the deadline, does what
// this driver, which ticks every tick, does.
func (s *Sim) tick(n *node) {
	due, quiet := n.core.NextTick(), !n.core.HasReady()
	if due <= n.core.Now() {
		s.violate("deadline: node %d at tick %d asked for tick %d, not after now", n.id, n.core.Now(), due)
	}
	n.core.Tick()
	now := n.core.Now()
	if !quiet || now >= due {
		return
	}
	if n.core.HasReady() {
		s.violate("deadline: node %d asked for its next tick at %d, but tick %d had work", n.id, due, now)
	} else if next := n.core.NextTick(); next < due {
		s.violate("deadline: node %d moved its next tick from %d to %d at tick %d, with no input", n.id, due, next, now)
	}
}

// Crash kills node id's process; it restarts after down (if > 0).
func (s *Sim) Crash(id regroup.NodeID, down int64) {
	n := s.nodes[id]
	if !n.running {
		return
	}
	s.tracef(id, "CRASH (restart in %dms)", down/Millisecond)
	s.Metrics.noteCrash(s, id)
	n.running, n.frozen = false, false
	n.disk.reset()
	// The machine is down: resmon and everything it held with it.
	s.killResmon(n)
	n.rm.up = false
	s.dirty = true
	if down > 0 {
		inc := n.inc
		s.after(down, func() {
			if n.inc == inc && !n.running {
				s.Boot(id, false)
			}
		})
	}
}

// Freeze stops node id (SIGSTOP) for d: it neither ticks nor receives, and
// its disk commands are held, then it continues where it was.
func (s *Sim) Freeze(id regroup.NodeID, d int64) {
	n := s.nodes[id]
	if !n.running || n.frozen {
		return
	}
	s.tracef(id, "FREEZE for %dms", d/Millisecond)
	n.frozen, n.frozeAt = true, s.now
	inc := n.inc
	s.after(d, func() {
		if n.inc == inc && n.frozen {
			n.frozen = false
			if n.fencedSince >= 0 {
				n.frozenFor += s.now - max(n.frozeAt, n.fencedSince)
			}
			if n.pillAt >= 0 {
				n.frozenSincePill += s.now - max(n.frozeAt, n.pillAt)
			}
			s.tracef(id, "THAW")
			s.dirty = true
		}
	})
}

// flush drains node n's Ready: heartbeats and messages go on the network,
// disk commands into its disk queue.
func (s *Sim) flush(n *node) {
	for n.running && n.core.HasReady() {
		rd := n.core.Ready()
		s.fmReady(n, &rd)
		for _, snd := range rd.Sends {
			s.sendHeartbeat(n, snd)
		}
		for _, m := range rd.Messages {
			s.sendMessage(m)
		}
		for _, c := range rd.Disk {
			s.tracef(n.id, "disk: %v", c)
			s.submitDisk(n, c)
		}
		for _, e := range rd.Detector {
			s.tracef(n.id, "detector: %v", e)
			if e.Kind == heartbeat.PeerSuspected {
				s.Metrics.noteSuspect(s, n.id, e)
			}
		}
		for _, e := range rd.Events {
			s.tracef(n.id, "core: %v", e)
			if e.Kind == core.EventArbitrationStarted && e.Class == regroup.ClassForm {
				s.Metrics.Forms[n.id]++
			}
			// 5. The owner's defence removes only outsiders: never the key
			// of a member of its own membership (a joiner registers before
			// its join commits, so a defence that counts it an outsider
			// fences a node that is joining).
			if e.Kind == core.EventKeyRemoved && e.Reason == "defence" {
				_, victim := core.KeyNode(e.Key)
				if _, m := n.core.Membership(); n.core.Member() && m.Has(victim) {
					s.violate("defence: node %d removed the key of node %d, a member of its membership %v", n.id, victim, m)
				}
			}
		}
		for _, e := range rd.Membership {
			s.tracef(n.id, "%v", e)
			s.Metrics.noteEvent(s, n.id, e)
			s.dirty = true
			switch e.Kind {
			case regroup.EventHalt:
				s.checkHaltBound(n)
				s.stop(n)
			case regroup.EventLeft:
				// Stops once the key is off the disk (or the attempt
				// failed), as clusterd does.
			case regroup.EventJoinFailed:
				if e.Fatal {
					s.stop(n)
				}
			}
		}
		s.gupReady(n, rd.GUP)
		for _, e := range rd.Events {
			if e.Kind == core.EventUnregistered && n.core.State() == regroup.StateLeft {
				s.stop(n)
			}
		}
	}
}

// stop ends a halted or departed node's process; the service manager
// restarts it after a while (it then joins again).
func (s *Sim) stop(n *node) {
	n.running = false
	n.disk.reset()
	if s.now < s.cfg.FaultEnd+s.cfg.Settle {
		inc := n.inc
		s.after(200*Millisecond+s.rng.Int64N(800*Millisecond), func() {
			if n.inc == inc && !n.running {
				s.Boot(n.id, false)
			}
		})
	}
}

// ---- network ----

func (s *Sim) cutIdx(net int, from, to regroup.NodeID) int { return (net*65+int(from))*65 + int(to) }

// Cut sets whether net carries from -> to.
func (s *Sim) Cut(net int, from, to regroup.NodeID, cut bool) {
	s.cut[s.cutIdx(net, from, to)] = cut
}

// CutAll cuts (or heals) from -> to on every network.
func (s *Sim) CutAll(from, to regroup.NodeID, cut bool) {
	for net := range s.cfg.Networks {
		s.Cut(net, from, to, cut)
	}
}

// Isolate cuts id from every other node on every network, both ways.
func (s *Sim) Isolate(id regroup.NodeID) {
	for _, o := range s.all.IDs() {
		s.CutAll(id, o, true)
		s.CutAll(o, id, true)
	}
}

// Partition cuts every link between different groups, both ways.
func (s *Sim) Partition(groups ...regroup.NodeSet) {
	for i, a := range groups {
		for j, b := range groups {
			if i == j {
				continue
			}
			for _, x := range a.IDs() {
				for _, y := range b.IDs() {
					s.CutAll(x, y, true)
				}
			}
		}
	}
}

// Heal restores every link.
func (s *Sim) Heal() { clear(s.cut) }

func (s *Sim) netDelay() int64 {
	return 100*Microsecond + s.rng.Int64N(900*Microsecond)
}

func (s *Sim) diskLatency() int64 {
	return 200*Microsecond + s.rng.Int64N(1800*Microsecond)
}

func (s *Sim) sendHeartbeat(from *node, snd heartbeat.Send) {
	if s.cut[s.cutIdx(snd.Network, from.id, snd.To)] || s.rng.Float64() < s.loss {
		return
	}
	copies := 1
	if s.rng.Float64() < s.cfg.Dup {
		copies = 2
	}
	to := s.nodes[snd.To]
	for range copies {
		d := s.netDelay() + s.lag[from.id] + s.lag[snd.To]
		s.after(d, func() {
			if !to.running || to.frozen {
				return
			}
			if s.cfg.TraceHeartbeats {
				s.tracef(to.id, "heartbeat from %d on net %d", from.id, snd.Network)
			}
			_ = to.core.StepHeartbeat(snd.Network, snd.Datagram)
			s.flush(to)
		})
	}
}

// sendMessage carries a regroup message over the first private network
// that connects the two nodes (the daemon's RPC fails over between them).
func (s *Sim) sendMessage(m regroup.Message) {
	if s.dropMsg != nil && s.dropMsg(m) {
		s.tracef(m.To, "dropped %v", m)
		return
	}
	s.carry(m.From, m.To, func(to *node) {
		s.tracef(to.id, "<- %v", m)
		to.core.Step(m)
	})
}

// carry delivers a message from -> to over the first private network that
// connects them, with the network's loss, duplicates and delay, to a node
// that is running and not frozen when it arrives.
func (s *Sim) carry(from, to regroup.NodeID, deliver func(*node)) {
	ok := false
	for net := range s.cfg.Networks {
		if !s.cut[s.cutIdx(net, from, to)] {
			ok = true
			break
		}
	}
	if !ok || s.rng.Float64() < s.loss {
		return
	}
	copies := 1
	if s.rng.Float64() < s.cfg.Dup {
		copies = 2
	}
	n := s.nodes[to]
	for range copies {
		s.after(s.netDelay()+s.lag[from]+s.lag[to], func() {
			if !n.running || n.frozen {
				return
			}
			deliver(n)
			s.flush(n)
		})
	}
}

// ---- invariants ----

func (s *Sim) violate(format string, args ...any) {
	msg := fmt.Sprintf("t=%.6fs: ", float64(s.now)/float64(Second)) + fmt.Sprintf(format, args...)
	if len(s.Violations) >= 20 {
		return
	}
	s.Violations = append(s.Violations, msg)
	if s.trace != nil {
		fmt.Fprintf(s.trace, "VIOLATION %s\n", msg)
	}
}

func (s *Sim) registered() regroup.NodeSet {
	if g := s.target.Generation(); !s.regValid || g != s.regGen {
		s.regKeys = 0
		for _, r := range s.target.Registrations() {
			if r.Key>>32 == uint64(s.cfg.ClusterTag) {
				s.regKeys = s.regKeys.Add(regroup.NodeID(r.Key & 0xffffffff))
			}
		}
		s.regGen, s.regValid = g, true
	}
	return s.regKeys
}

// FenceBound is how long a member whose key was removed may go on
// believing it is a member: one quorum check that may wait behind a slot
// command on a dead path and then time out itself, or a claim's longest
// wait, plus latency.
func (s *Sim) FenceBound() int64 {
	return s.cfg.QuorumCheck + 2*s.cfg.CommandTimeout + 2*s.cfg.DefenceDelay + 100*Millisecond
}

// check verifies the safety invariants (docs/design.md, "Invariants")
// after every event that changed state:
//
//  1. No split brain: any two active nodes (running, holding an installed
//     membership, key registered on the target) each have the other in
//     their membership, or at least one has; two active nodes each outside
//     the other's membership would be two live partitions. The check is
//     symmetric: it looks at every unordered pair once and at both sides.
//  2. Agreement: active nodes with the same epoch have the same members.
//  3. Fencing: a member whose key is gone from the target halts within
//     FenceBound (time frozen does not count: a frozen node does nothing),
//     checked here while it runs and again at the moment it halts.
//  4. Poison pill: a node with a healthy disk path halts within PillBound
//     of a pill written for its incarnation.
func (s *Sim) check() {
	reg := s.registered()
	if _, ok := s.target.Reservation(); !ok {
		s.unreservedAt = s.now
	}
	var active [65]*node
	var act regroup.NodeSet
	for _, n := range s.nodes[1:] {
		if !n.running {
			n.fencedSince = -1
			continue
		}
		if late := s.pillOverdue(n); late > 0 {
			s.violate("pill bound: node %d (%v) still runs %dms after its poison pill was written",
				n.id, n.core.State(), (s.now-n.pillAt)/Millisecond)
			n.pillAt = -1 // report once
		}
		if !n.core.Member() || !n.core.Registered() {
			n.fencedSince = -1
			continue
		}
		if !reg.Has(n.id) {
			if n.fencedSince < 0 {
				n.fencedSince, n.frozenFor = s.now, 0
			}
			if s.fenceOverdue(n) > 0 {
				s.violate("node %d is a member (%v) without its key on the quorum disk for %dms and has not halted",
					n.id, n.core.State(), (s.now-n.fencedSince)/Millisecond)
				n.fencedSince = s.now // report once per bound
			}
			continue
		}
		n.fencedSince = -1
		active[n.id] = n
		act = act.Add(n.id)
	}
	ids := act.IDs()
	for i, x := range ids {
		ex, mx := active[x].core.Membership()
		for _, y := range ids[i+1:] {
			ey, my := active[y].core.Membership()
			if !mx.Has(y) && !my.Has(x) {
				s.violate("split brain: active node %d (epoch %v %v) and node %d (epoch %v %v) are each outside the other's membership", x, ex, mx, y, ey, my)
			}
			if ex == ey && mx != my {
				s.violate("disagreement: nodes %d and %d share epoch %v with members %v and %v", x, y, ex, mx, my)
			}
		}
	}
}

// Stable reports whether every node is up, stabilised, registered, and
// all agree on one membership of every node.
func (s *Sim) Stable() bool {
	reg := s.registered()
	var e0 regroup.Epoch
	for _, n := range s.nodes[1:] {
		if !n.running || n.frozen || n.core.State() != regroup.StateUp || n.core.Stage() != regroup.StageStabilized || !reg.Has(n.id) {
			return false
		}
		e, m := n.core.Membership()
		if m != s.all {
			return false
		}
		if n.id == 1 {
			e0 = e
		} else if e != e0 {
			return false
		}
	}
	return true
}

// Describe summarises every node's state.
func (s *Sim) Describe() string {
	var b strings.Builder
	reg := s.registered()
	for _, n := range s.nodes[1:] {
		if !n.running {
			fmt.Fprintf(&b, "  n%d: not running\n", n.id)
			continue
		}
		e, m := n.core.Membership()
		fmt.Fprintf(&b, "  n%d: inc %d %v stage %v round %d epoch %v members %v registered %v frozen %v hears %v\n",
			n.id, n.inc, n.core.State(), n.core.Stage(), n.core.Round(), e, m, reg.Has(n.id), n.frozen, n.core.Detector().Alive())
	}
	return b.String()
}
