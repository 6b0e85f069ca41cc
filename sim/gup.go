package sim

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/wolfpack-ha/wolfpack/gup"
	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/quorumdisk"
	"github.com/wolfpack-ha/wolfpack/regroup"
)

// The simulator's GUP workload: clients write and read a few keys through
// random nodes while the faults run; every apply on every node is checked
// against every other (same update at the same sequence number, each
// request at one sequence number only), and at the end the log on the
// target, the survivors' states and the clients' history (with a
// linearizability checker) are checked too (docs/gup.md, "Invariants").

// kvState is the simulator's state machine: the cluster database that
// clusterd runs (gup/db), whose network objects k0..k2 are the clients'
// registers (property "v"), and a hash chained over every (sequence
// number, update) applied, so two states with equal hashes hold the same
// history.
type kvState struct {
	s    *Sim
	node *node
	seq  uint64
	hash uint64
	db   *db.DB
	// snap is Snapshot's last result while nothing was applied or
	// restored since (nil: none): the node's local copy is saved every
	// few hundred milliseconds, mostly of a state that did not change.
	// Its readers copy it and never modify it.
	snap []byte
}

func newKV(s *Sim, n *node) *kvState { return &kvState{s: s, node: n, db: db.New()} }

func (st *kvState) Apply(seq uint64, data []byte) error {
	st.snap = nil
	st.s.noteApply(st, seq, data)
	st.s.fmApply(seq, data)
	err := st.db.Apply(seq, data)
	st.db.TakeChanges()
	st.seq = seq
	st.hash = chain(st.hash, seq, data)
	return err
}

// get reads register k.
func (st *kvState) get(k string) string {
	o, _ := st.db.Get(db.KindNetwork, k)
	v, _ := o.Prop("v")
	return v.Str
}

// putTx is a client's write: register k := v.
func putTx(k, v string) []byte {
	b, err := (&db.Tx{Ops: []db.Op{db.Set(db.KindNetwork, k, map[string]db.Value{"v": db.StringValue(v)})}}).MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// setupTx creates the registers.
func setupTx() []byte {
	t := db.Tx{}
	for i := range simKeys {
		t.Ops = append(t.Ops, db.Create(db.KindNetwork, fmt.Sprintf("k%d", i), map[string]db.Value{"v": db.StringValue("")}))
	}
	b, err := t.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

func chain(h uint64, seq uint64, data []byte) uint64 {
	f := fnv.New64a()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], h)
	binary.BigEndian.PutUint64(b[8:], seq)
	f.Write(b[:])
	f.Write(data)
	return f.Sum64()
}

// Snapshot is the sequence number and the hash, then the database's own.
func (st *kvState) Snapshot() []byte {
	if st.snap == nil {
		b := binary.BigEndian.AppendUint64(nil, st.seq)
		b = binary.BigEndian.AppendUint64(b, st.hash)
		st.snap = append(b, st.db.Snapshot()...)
	}
	return st.snap
}

func (st *kvState) Restore(b []byte) error {
	// The database is restored in place: the node's failover manager
	// holds it.
	st.snap = nil
	seq, hash, snap := uint64(0), uint64(0), db.New().Snapshot()
	if len(b) > 0 {
		if len(b) < 16 {
			return fmt.Errorf("kv: snapshot of %d bytes", len(b))
		}
		seq, hash, snap = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:]), b[16:]
	}
	if err := st.db.Restore(snap); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	st.db.TakeChanges()
	if st.node != nil && seq < st.seq {
		st.s.violate("node %d: its state went back from #%d to #%d", st.node.id, st.seq, seq)
	}
	st.seq, st.hash = seq, hash
	return nil
}

// simOp is one client operation, for the linearizability check.
type simOp struct {
	client     int
	write      bool
	key, value string // value: written, or read
	call, ret  int64
	done       bool
	then       func() // once, when done or timed out
	seq        uint64 // write: where it was applied
	node       *node
	inc        uint64
}

type opKey struct {
	node regroup.NodeID
	inc  uint64
	id   uint64
}

type workload struct {
	ops     []*simOp
	writes  map[opKey]*simOp
	reads   map[opKey]*simOp
	applied map[uint64]string // seq -> update, as first applied anywhere
	at      map[string]uint64 // update -> seq
	// unique are the updates issued once only (the clients' writes and
	// their setup): exactly once is checked on them. Others may be
	// issued again with the same bytes (the failover manager's node
	// object, an administrator's move).
	unique map[string]bool
	n      int
}

const (
	simKeys   = 3
	opTimeout = 3 * Second
)

// startClients starts cfg.Clients clients that each run one operation at
// a time, on a random node, until stop.
func (s *Sim) startClients(stop int64) {
	w := &s.wl
	w.writes, w.reads = map[opKey]*simOp{}, map[opKey]*simOp{}
	w.applied, w.at, w.unique = map[uint64]string{}, map[string]uint64{}, map[string]bool{string(setupTx()): true}
	// First the registers are created, through node 1 (it formed the
	// cluster), then the clients start.
	setup := &simOp{key: "setup", write: true}
	var create func()
	create = func() {
		n := s.nodes[1]
		if setup.node == nil || setup.node.inc != setup.inc {
			if n.running && !n.frozen && n.core.Member() {
				if req, err := n.core.Propose(setupTx()); err == nil {
					setup.node, setup.inc, setup.call = n, n.inc, s.now
					w.writes[opKey{n.id, n.inc, req}] = setup
					s.flush(n)
				}
			}
		}
		if !setup.done {
			s.after(20*Millisecond, create)
			return
		}
		s.clients(stop)
	}
	s.after(200*Millisecond, create)
}

func (s *Sim) clients(stop int64) {
	for c := range s.cfg.Clients {
		var next func()
		next = func() {
			if s.now >= stop {
				return
			}
			op := s.startOp(c, s.rng.IntN(3) > 0)
			if op == nil {
				s.after(s.randDur(10*Millisecond, 50*Millisecond), next)
				return
			}
			s.whenDone(op, opTimeout, func() { s.after(s.randDur(0, 20*Millisecond), next) })
		}
		s.after(s.rng.Int64N(100*Millisecond), next)
	}
}

// startOp starts one operation on a random node; nil if that node cannot
// take it now (not running, frozen, not a member).
func (s *Sim) startOp(client int, write bool) *simOp {
	n := s.nodes[s.randNode()]
	if !n.running || n.frozen || !n.core.Member() {
		return nil
	}
	w := &s.wl
	op := &simOp{client: client, write: write, key: fmt.Sprintf("k%d", s.rng.IntN(simKeys)), call: s.now, node: n, inc: n.inc}
	if write {
		w.n++
		op.value = fmt.Sprintf("c%d.%d", client, w.n)
		w.unique[string(putTx(op.key, op.value))] = true
		req, err := n.core.Propose(putTx(op.key, op.value))
		if err != nil {
			return nil
		}
		w.writes[opKey{n.id, n.inc, req}] = op
	} else {
		id, err := n.core.Read()
		if err != nil {
			return nil
		}
		w.reads[opKey{n.id, n.inc, id}] = op
	}
	w.ops = append(w.ops, op)
	s.tracef(n.id, "client %d: %s", client, op)
	s.flush(n)
	return op
}

func (op *simOp) String() string {
	if op.write {
		return fmt.Sprintf("write %s=%s", op.key, op.value)
	}
	return fmt.Sprintf("read %s", op.key)
}

// gupReady takes the GUP part of node n's Ready.
func (s *Sim) gupReady(n *node, r gup.Ready) {
	for _, m := range r.Messages {
		s.sendGUP(m)
	}
	w := &s.wl
	for _, c := range r.Completions {
		if s.fmCompletion(n, c.Req, c.Err) {
			continue
		}
		op := w.writes[opKey{n.id, n.inc, c.Req}]
		if op == nil || op.done || s.now-op.call >= opTimeout {
			continue
		}
		if c.Err != "" {
			s.violate("node %d: update %s failed: %s", n.id, op, c.Err)
			continue
		}
		op.done, op.ret, op.seq = true, s.now, c.Seq
		if c.AtOrBefore {
			// Found applied in a restored snapshot: where it was
			// applied is what the workload saw (the checks below
			// still hold it to the log).
			want := string(putTx(op.key, op.value))
			for q := c.Seq; q > 0; q-- {
				if w.applied[q] == want {
					op.seq = q
					break
				}
			}
		}
		op.finish()
		s.tracef(n.id, "client %d: %s done at #%d", op.client, op, c.Seq)
	}
	for _, rd := range r.Reads {
		op := w.reads[opKey{n.id, n.inc, rd.ReadID}]
		if op == nil || op.done || s.now-op.call >= opTimeout {
			continue
		}
		op.done, op.ret, op.value = true, s.now, n.state.get(op.key)
		op.finish()
		s.tracef(n.id, "client %d: %s = %q", op.client, op, op.value)
	}
	for _, e := range r.Events {
		s.tracef(n.id, "gup: %v", e)
	}
}

// sendGUP carries a GUP message like a regroup message: over the first
// private network that connects the two nodes, with loss and duplicates.
// The real streams are reliable while a connection lives; GUP is checked
// here against worse.
func (s *Sim) sendGUP(m gup.Message) {
	s.carry(m.From, m.To, func(to *node) {
		s.tracef(to.id, "<- gup %v", m)
		to.core.StepGUP(m)
	})
}

// noteApply checks every apply against every other: one update per
// sequence number, one sequence number per update, in order on a node.
func (s *Sim) noteApply(st *kvState, seq uint64, data []byte) {
	w := &s.wl
	if w.applied == nil {
		return
	}
	id := regroup.NodeID(0)
	if st.node != nil {
		id = st.node.id
		if seq != st.seq+1 {
			s.violate("node %d applied #%d after #%d", id, seq, st.seq)
		}
	}
	u := string(data)
	if prev, ok := w.applied[seq]; ok && prev != u {
		s.violate("agreement: node %d applied %s at #%d, where %s was applied before", id, describeTx(data), seq, describeTx([]byte(prev)))
	} else if !ok {
		w.applied[seq] = u
	}
	if !w.unique[u] {
		return
	}
	if at, ok := w.at[u]; ok && at != seq {
		s.violate("exactly once: node %d applied %s at #%d, and it was applied at #%d before", id, describeTx(data), seq, at)
	} else if !ok {
		w.at[u] = seq
	}
}

// checkGUP runs at the end: progress (a last write and read go through and
// every running member converges), nothing acknowledged lost (the log on
// the target holds the survivors' history and every acknowledged write),
// and linearizability of the clients' history.
func (s *Sim) checkGUP() {
	w := &s.wl
	// Progress: one more write through a member (another one if the node
	// taking it stops: a command issued before the heal may still time
	// out), then convergence.
	var last *simOp
	end := s.now + 5*Second
	for s.now < end && (last == nil || !last.done) {
		if last == nil || last.node.inc != last.inc || !last.node.running {
			last = s.startOp(s.cfg.Clients, true)
		}
		s.RunUntil(s.now+20*Millisecond, func() bool { return last != nil && last.done })
	}
	if last == nil || !last.done {
		s.violate("gup: no progress: a write after the faults stopped was not applied in 5s:\n%s", s.describeGUP())
		return
	}
	converged := func() bool {
		for _, n := range s.nodes[1:] {
			if n.running && n.core.Member() && n.core.GUP().Applied() < last.seq {
				return false
			}
		}
		return true
	}
	if !s.RunUntil(s.now+5*Second, converged) {
		s.violate("gup: members did not catch up with #%d in 5s:\n%s", last.seq, s.describeGUP())
		return
	}
	// Availability, in every fourth seed (it costs as much as the rest
	// of a seed): with no fault left, every operation of clients that
	// keep every node busy completes within 1.5 s (a member left behind
	// while the locker is busy would not: TestIntegrationLockerCrash found
	// one; gup/catchup_test.go pins it).
	if s.cfg.Seed%4 == 0 {
		s.steadyLoad(2*Second, 1500*Millisecond)
	}
	// The log on the target.
	logSt := newKV(s, nil)
	logSeq, err := s.replayTarget(logSt)
	if err != nil {
		s.violate("gup: read the recovery log: %v", err)
		return
	}
	for _, n := range s.nodes[1:] {
		if !n.running || !n.core.Member() {
			continue
		}
		if a := n.core.GUP().Applied(); a > logSeq {
			s.violate("gup: node %d applied #%d but the log ends at #%d", n.id, a, logSeq)
		} else if a == logSeq && n.state.hash != logSt.hash {
			s.violate("gup: node %d's history at #%d differs from the log's", n.id, a)
		}
	}
	for _, op := range w.ops {
		if op.write && op.done && op.seq > logSeq {
			s.violate("gup: %s was acknowledged at #%d, the log ends at #%d", op, op.seq, logSeq)
		}
		if op.write && op.done && w.applied[op.seq] != string(putTx(op.key, op.value)) {
			s.violate("gup: %s was acknowledged at #%d, which holds another update", op, op.seq)
		}
	}
	s.checkEventLog(logSeq)
	s.checkLinearizable()
}

// checkEventLog: the cluster-wide event log (docs/events.md) is the same
// on every member that applied the whole log, and numbered in the order
// GUP committed its events.
func (s *Sim) checkEventLog(logSeq uint64) {
	var ref []string
	var refNode regroup.NodeID
	for _, n := range s.nodes[1:] {
		if !n.running || !n.core.Member() || n.core.GUP().Applied() != logSeq {
			continue
		}
		evs := n.state.db.List(db.KindEvent)
		slices.SortFunc(evs, func(a, b db.Object) int { return cmp.Compare(a.Props["seq"].Int, b.Props["seq"].Int) })
		var got []string
		for i, o := range evs {
			if i > 0 && (o.Props["seq"].Int <= evs[i-1].Props["seq"].Int || o.Created < evs[i-1].Created) {
				s.violate("event log: node %d: event %s (seq %d, #%d) after %s (seq %d, #%d)", n.id,
					o.Name, o.Props["seq"].Int, o.Created, evs[i-1].Name, evs[i-1].Props["seq"].Int, evs[i-1].Created)
			}
			got = append(got, fmt.Sprintf("%d:%s", o.Props["seq"].Int, o.Name))
		}
		if refNode == 0 {
			ref, refNode = got, n.id
		} else if !slices.Equal(got, ref) {
			s.violate("event log: node %d holds %v, node %d %v", n.id, got, refNode, ref)
		}
	}
}

// steadyLoad runs the clients for d, each on a random member, and reports
// an operation that takes longer than bound.
func (s *Sim) steadyLoad(d, bound int64) {
	end := s.now + d
	// No fault left, and a loss low enough that three losses on one
	// operation's path (each costs a resend interval) do not happen in
	// 10,000 seeds; the datagrams still reorder and duplicate.
	s.loss = 0.002
	var ops []*simOp
	for c := range s.cfg.Clients {
		var next func()
		next = func() {
			if s.now >= end {
				return
			}
			op := s.startOp(c, s.rng.IntN(3) > 0)
			if op == nil {
				s.after(Millisecond, next)
				return
			}
			ops = append(ops, op)
			// A few milliseconds apart: the locker commits far more often
			// than a member's retransmit interval, and the history stays
			// small enough for the linearizability checker.
			s.whenDone(op, bound, func() { s.after(s.randDur(5*Millisecond, 20*Millisecond), next) })
		}
		next()
	}
	s.RunUntil(end+bound, nil)
	for _, op := range ops {
		if !op.done && op.node.running && op.node.inc == op.inc {
			s.violate("gup: availability: %s on node %d, started with no fault left, not done within %s:\n%s",
				op, op.node.id, fmtDur(bound), s.describeGUP())
			return
		}
	}
}

// whenDone calls then once: when op completes, or after timeout.
func (s *Sim) whenDone(op *simOp, timeout int64, then func()) {
	op.then = then
	s.after(op.call+timeout-s.now, op.finish)
}

func (op *simOp) finish() {
	if f := op.then; f != nil {
		op.then = nil
		f()
	}
}

// replayTarget reads the recovery log off the target into st.
func (s *Sim) replayTarget(st *kvState) (uint64, error) {
	blocks, err := quorumdisk.NewSCSIBlocks(ctx, s.target.Nexus("iqn.2026-01.org.wolfpack:checker"))
	if err != nil {
		return 0, err
	}
	d, err := quorumdisk.Open(ctx, blocks)
	if err != nil {
		return 0, err
	}
	rp, err := d.ReadLog(ctx)
	if err != nil {
		return 0, err
	}
	var recs []gup.LogRecord
	for _, r := range rp.Records {
		recs = append(recs, gup.LogRecord{LSN: r.LSN, GUPSeq: r.GUPSeq, Update: r.Type == quorumdisk.RecordUpdate, Payload: r.Payload})
	}
	return gup.Replay(rp.Snapshot, recs, st)
}

type kvInput struct {
	write      bool
	key, value string
}

var kvModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(kvInput).key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(kvInput)
		if in.write {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(kvInput)
		if in.write {
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %q", in.key, output)
	},
}

// checkLinearizable checks the clients' history with porcupine. A write
// whose outcome the client never learnt may have happened at any time
// after its call; a read that never returned tells nothing.
func (s *Sim) checkLinearizable() {
	var h []porcupine.Operation
	for _, op := range s.wl.ops {
		switch {
		case op.done:
			h = append(h, porcupine.Operation{ClientId: op.client, Input: kvInput{op.write, op.key, op.value}, Call: op.call, Output: op.value, Return: op.ret})
		case op.write:
			h = append(h, porcupine.Operation{ClientId: op.client, Input: kvInput{true, op.key, op.value}, Call: op.call, Return: math.MaxInt64})
		}
	}
	switch porcupine.CheckOperationsTimeout(kvModel, h, 20*time.Second) {
	case porcupine.Illegal:
		s.violate("linearizability: the clients' history of %d operations is not linearizable", len(h))
	case porcupine.Unknown:
		s.violate("linearizability: the checker timed out on %d operations", len(h))
	}
}

func (s *Sim) describeGUP() string {
	var b strings.Builder
	b.WriteString(s.Describe())
	for _, n := range s.nodes[1:] {
		if n.running {
			g := n.core.GUP()
			l, t := g.Locker()
			fmt.Fprintf(&b, "  n%d: gup applied #%d locker %d term %d is-locker %v pending %d owner %v\n",
				n.id, g.Applied(), l, t, g.IsLocker(), g.Pending(), n.core.Owner())
		}
	}
	return b.String()
}

// acknowledged counts the clients' writes and reads that completed.
func (s *Sim) acknowledged() (writes, reads int) {
	for _, op := range s.wl.ops {
		switch {
		case op.done && op.write:
			writes++
		case op.done:
			reads++
		}
	}
	return writes, reads
}

// describeTx names a client's write for a violation.
func describeTx(b []byte) string {
	var t db.Tx
	if err := t.UnmarshalBinary(b); err != nil || len(t.Ops) != 1 {
		return fmt.Sprintf("an update of %d bytes", len(b))
	}
	return fmt.Sprintf("%s=%s", t.Ops[0].Name, t.Ops[0].Props["v"].Str)
}
