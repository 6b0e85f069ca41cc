package gup

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// listState records what it applies.
type listState struct{ applied []string }

func (s *listState) Apply(seq uint64, data []byte) error {
	if bytes.HasPrefix(data, []byte("bad")) {
		return fmt.Errorf("refused %q", data)
	}
	s.applied = append(s.applied, fmt.Sprintf("%d:%s", seq, data))
	return nil
}
func (s *listState) Snapshot() []byte { return []byte(strings.Join(s.applied, ",")) }
func (s *listState) Restore(b []byte) error {
	s.applied = nil
	if len(b) > 0 {
		s.applied = strings.Split(string(b), ",")
	}
	return nil
}

// fakeLog is the recovery log: records, a checkpoint, and whoever wrote.
type fakeLog struct {
	ckpt    []byte
	records []LogRecord
	lsn     uint64
	fail    bool // the next write fails
	format  uint64
}

type tnode struct {
	g       *Node
	st      *listState
	cmds    []LogCommand
	fenced  string
	keyGone bool
	done    []Completion
}

type harness struct {
	t     *testing.T
	log   *fakeLog
	nodes map[nodes.ID]*tnode
	msgs  []Message
	all   nodes.Set
}

func newHarness(t *testing.T, ids ...nodes.ID) *harness {
	h := &harness{t: t, log: &fakeLog{}, nodes: map[nodes.ID]*tnode{}}
	for _, id := range ids {
		h.boot(id, 1)
	}
	return h
}

func (h *harness) boot(id nodes.ID, inc uint64) *tnode {
	tn := &tnode{st: &listState{}}
	var next uint64
	g, err := New(Config{Self: id, Incarnation: inc, State: tn.st,
		Issue: func(c LogCommand) uint64 { next++; c.ID = next; tn.cmds = append(tn.cmds, c); return next },
		Fence: func(r string) { tn.fenced = r },
	})
	if err != nil {
		h.t.Fatal(err)
	}
	tn.g = g
	h.nodes[id] = tn
	h.all = h.all.Add(id)
	return tn
}

// member sets every live node's membership; owner holds the reservation.
func (h *harness) members(owner nodes.ID) {
	for id, tn := range h.nodes {
		tn.g.SetMembership(true, h.all, id == owner, true)
	}
}

// run delivers messages and executes log commands until quiet.
func (h *harness) run() { h.runDropping(func(Message) bool { return false }) }

func (h *harness) exec(tn *tnode, c LogCommand) LogResult {
	l := h.log
	r := LogResult{ID: c.ID, Op: c.Op, OK: true, Free: 1000, Size: 1000, MaxPayload: 1 << 20}
	if l.fail && c.Op != LogBarrier {
		l.fail = false
		r.OK, r.Err = false, "injected"
		return r
	}
	switch c.Op {
	case LogReplay:
		l.lsn++
		r.Snapshot, r.Records, r.Term, r.FormatID = l.ckpt, slices.Clone(l.records), l.lsn, 77+l.format
	case LogAppend:
		l.lsn++
		l.records = append(l.records, LogRecord{LSN: l.lsn, GUPSeq: c.GUPSeq, Update: true, Payload: c.Payload})
	case LogCheckpoint:
		l.ckpt, l.records = c.Payload, nil
	case LogBarrier:
		r.KeyPresent = !tn.keyGone
	}
	return r
}

func (h *harness) propose(id nodes.ID, data string) uint64 {
	req, err := h.nodes[id].g.Propose([]byte(data))
	if err != nil {
		h.t.Fatal(err)
	}
	return req
}

func (h *harness) same() []string {
	var ref []string
	for i, id := range h.all.IDs() {
		a := h.nodes[id].st.applied
		if i == 0 {
			ref = a
		} else if !slices.Equal(a, ref) {
			h.t.Fatalf("node %d applied %v, node %d %v", id, a, h.all.Min(), ref)
		}
	}
	return ref
}

func TestOrderAndCompletion(t *testing.T) {
	h := newHarness(t, 1, 2, 3)
	h.members(1)
	h.run()
	for i := range 9 {
		h.propose(nodes.ID(1+i%3), fmt.Sprintf("u%d", i))
	}
	bad := h.propose(2, "bad one")
	h.run()
	got := h.same()
	if len(got) != 9 {
		t.Fatalf("applied %v", got)
	}
	var outcome string
	for _, c := range h.nodes[2].done {
		if c.Req == bad {
			outcome = c.Err
		}
	}
	if !strings.Contains(outcome, `refused "bad one"`) || len(h.nodes[1].done) != 3 || len(h.nodes[2].done) != 4 {
		t.Fatalf("completions: node 1 %v, node 2 %v", h.nodes[1].done, h.nodes[2].done)
	}
	r := h.propose(2, "after")
	h.run()
	if h.nodes[2].g.Pending() != 0 || r != bad+1 {
		t.Fatalf("pending %d, request numbers %d then %d", h.nodes[2].g.Pending(), bad, r)
	}
	if a := h.nodes[3].g.Applied(); a != 11 {
		t.Fatalf("node 3 at #%d, want #11 (the refused update takes a number too)", a)
	}
}

// TestTakeoverFromLog: the locker dies with updates only it and the log
// hold; the next holder replays them before it sequences anything.
func TestTakeoverFromLog(t *testing.T) {
	h := newHarness(t, 1, 2, 3)
	h.members(1)
	h.run()
	for i := range 5 {
		h.propose(2, fmt.Sprintf("a%d", i))
	}
	h.run()
	// Node 1 commits two more, then dies before delivering them.
	h.propose(1, "only-log-1")
	h.propose(1, "only-log-2")
	n1 := h.nodes[1]
	for len(n1.cmds) > 0 {
		c := n1.cmds[0]
		n1.cmds = n1.cmds[1:]
		n1.g.LogDone(h.exec(n1, c))
	}
	delete(h.nodes, 1)
	h.all = h.all.Remove(1)
	h.msgs = nil
	if h.nodes[2].g.Applied() != 5 {
		t.Fatalf("node 2 at #%d before the takeover", h.nodes[2].g.Applied())
	}
	h.members(2)
	h.run()
	h.propose(3, "after")
	h.run()
	got := h.same()
	want := []string{"1:a0", "2:a1", "3:a2", "4:a3", "5:a4", "6:only-log-1", "7:only-log-2", "8:after"}
	if !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	if l, term := h.nodes[3].g.Locker(); l != 2 || term <= 1 {
		t.Fatalf("node 3 takes %d (term %d) for the locker", l, term)
	}
}

// TestFailedAppendReplays: a log write that fails may have landed; the
// locker replays and goes on, applying the batch once.
func TestFailedAppendReplays(t *testing.T) {
	h := newHarness(t, 1, 2)
	h.members(1)
	h.run()
	h.log.fail = true
	h.propose(2, "x")
	h.run()
	h.propose(2, "y")
	h.run()
	if got := h.same(); !slices.Equal(got, []string{"1:x", "2:y"}) {
		t.Fatalf("applied %v", got)
	}
}

func TestConflictFences(t *testing.T) {
	h := newHarness(t, 1, 2)
	h.members(1)
	h.run()
	h.nodes[1].keyGone = true
	if _, err := h.nodes[2].g.Read(); err != nil {
		t.Fatal(err)
	}
	h.run()
	if !strings.Contains(h.nodes[1].fenced, "no longer registered") {
		t.Fatalf("a barrier that found the key gone did not fence: %q", h.nodes[1].fenced)
	}
}

// TestReadIndex: a read is served once the reader applied what the locker
// had committed when the barrier came back.
func TestReadIndex(t *testing.T) {
	h := newHarness(t, 1, 2)
	h.members(1)
	h.run()
	h.propose(1, "w")
	h.run()
	id, _ := h.nodes[2].g.Read()
	var done []ReadDone
	for range 100 {
		for _, nid := range h.all.IDs() {
			tn := h.nodes[nid]
			rd := tn.g.Ready()
			h.msgs = append(h.msgs, rd.Messages...)
			if nid == 2 {
				done = append(done, rd.Reads...)
			}
			for len(tn.cmds) > 0 {
				c := tn.cmds[0]
				tn.cmds = tn.cmds[1:]
				tn.g.LogDone(h.exec(tn, c))
			}
		}
		if len(h.msgs) > 0 {
			m := h.msgs[0]
			h.msgs = h.msgs[1:]
			h.nodes[m.To].g.Step(m)
		}
	}
	if len(done) != 1 || done[0].ReadID != id || done[0].Seq < 1 {
		t.Fatalf("reads done %+v, want read %d at #1 or later", done, id)
	}
}

// TestSeedAndLogWins: an empty log is seeded from the locker's local copy
// with a checkpoint first; a node whose copy is of another history takes
// the log's state whole.
func TestSeedAndLogWins(t *testing.T) {
	h := newHarness(t, 1)
	h.members(1)
	h.run()
	h.propose(1, "a")
	h.run()
	copy1 := h.nodes[1].g.Snapshot()
	// A new quorum disk: empty log. Node 1 restarts from its copy.
	h.log = &fakeLog{}
	delete(h.nodes, 1)
	tn := h.boot(1, 2)
	if err := tn.g.Restore(copy1); err != nil {
		t.Fatal(err)
	}
	h.members(1)
	h.run()
	if h.log.ckpt == nil {
		t.Fatal("an empty log was not seeded with a checkpoint")
	}
	h.propose(1, "b")
	h.run()
	if got := tn.st.applied; !slices.Equal(got, []string{"1:a", "2:b"}) {
		t.Fatalf("applied %v", got)
	}
	// Another history: a fresh cluster on yet another disk, whose node 2
	// carries node 1's old copy.
	h2 := newHarness(t, 1, 2)
	h2.log.format = 1
	h2.members(1)
	h2.run()
	h2.propose(1, "other")
	h2.run()
	n2 := h2.boot(2, 2)
	if err := n2.g.Restore(h.nodes[1].g.Snapshot()); err != nil {
		t.Fatal(err)
	}
	h2.members(1)
	h2.run()
	if got := n2.st.applied; !slices.Equal(got, []string{"1:other"}) {
		t.Fatalf("a copy of another history: applied %v, want the locker's", got)
	}
}

func TestWireRoundTrip(t *testing.T) {
	m := Message{Type: MsgUpdates, From: 1, To: 2, Term: 9, Hist: 7, Seq: 3,
		Updates: []Update{{Seq: 4, Origin: 2, Inc: 1, Req: 1, Data: []byte("x")}, {Seq: 5, Origin: 3, Inc: 2, Req: 9, Refused: "no"}}}
	b, _ := m.MarshalBinary()
	var got Message
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := got.MarshalBinary()
	if !bytes.Equal(b, b2) || got.Updates[1].Refused != "no" {
		t.Fatalf("round trip differs: %+v", got)
	}
	for _, bad := range [][]byte{nil, b[:10], append(slices.Clone(b), 0)} {
		if err := got.UnmarshalBinary(bad); err == nil {
			t.Fatalf("%d bytes decoded", len(bad))
		}
	}
}

func FuzzMessage(f *testing.F) {
	m := Message{Type: MsgRequest, From: 1, To: 2, Inc: 1, Req: 1, Data: []byte("d")}
	b, _ := m.MarshalBinary()
	f.Add(b)
	m = Message{Type: MsgUpdates, From: 1, To: 2, Updates: []Update{{Seq: 1, Origin: 1, Inc: 1, Req: 1}}}
	b, _ = m.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if m.UnmarshalBinary(b) != nil {
			return
		}
		out, _ := m.MarshalBinary()
		if !bytes.Equal(out, b) {
			t.Fatalf("decoded message re-encodes differently")
		}
	})
}

func FuzzBatch(f *testing.F) {
	f.Add(EncodeBatch([]Update{{Seq: 1, Origin: 1, Inc: 1, Req: 1, Data: []byte("a")}, {Seq: 2, Origin: 2, Inc: 1, Req: 1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		us, err := DecodeBatch(b)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeBatch(us), b) {
			t.Fatalf("decoded batch re-encodes differently")
		}
	})
}

func FuzzState(f *testing.F) {
	s := state{hist: 1, seq: 5, sm: []byte("sm")}
	s.marks[3] = reqMark{inc: 2, req: 7}
	f.Add(s.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		if !bytes.Equal(st.encode(), b) {
			t.Fatalf("decoded state re-encodes differently")
		}
	})
}
