package core

import (
	"slices"

	"github.com/wolfpack-ha/wolfpack/gup"
)

// The Global Update Protocol runs inside the node core: its locker is the
// node that holds the quorum reservation, its log commands are disk
// commands on the quorum LUN, and regroup's installs tell it who the
// members are (docs/gup.md).

// GUPConfig holds GUP's timings (ticks) and bounds; zero takes gup's
// defaults.
type GUPConfig struct {
	RetransmitTicks int
	RequestTicks    int
	History         int
	MaxBatchBytes   int
	MaxUpdateBytes  int
}

// emptyState is the state of a node that replicates nothing (cluster
// quorum hold): it ignores every update.
type emptyState struct{}

func (emptyState) Apply(uint64, []byte) error { return nil }
func (emptyState) Snapshot() []byte           { return nil }
func (emptyState) Restore([]byte) error       { return nil }

func (n *Node) newGUP() (*gup.Node, error) {
	st := n.cfg.State
	if st == nil {
		st = emptyState{}
	}
	c := n.cfg.GUP
	return gup.New(gup.Config{
		Self: n.cfg.Self, Incarnation: n.cfg.Incarnation, State: st,
		Issue: n.issueLog, Fence: n.quorumLost,
		RetransmitTicks: c.RetransmitTicks, RequestTicks: c.RequestTicks, History: c.History,
		MaxBatchBytes: c.MaxBatchBytes, MaxUpdateBytes: c.MaxUpdateBytes,
		Logger: n.log.With("core", "gup"),
	})
}

// issueLog turns a GUP log command into a disk command.
func (n *Node) issueLog(c gup.LogCommand) uint64 {
	var d DiskCommand
	switch c.Op {
	case gup.LogReplay:
		d = DiskCommand{Op: DiskReplayLog, Key: n.arb.key}
	case gup.LogAppend:
		d = DiskCommand{Op: DiskAppendLog, GUPSeq: c.GUPSeq, Payload: c.Payload}
	case gup.LogCheckpoint:
		d = DiskCommand{Op: DiskCheckpoint, GUPSeq: c.GUPSeq, Payload: c.Payload}
	case gup.LogBarrier:
		d = DiskCommand{Op: DiskReadKeys}
	}
	id := n.issueDisk(d)
	n.gupCmds[id] = c.Op
	return id
}

// gupResult hands GUP the result of one of its commands.
func (n *Node) gupResult(r DiskResult) bool {
	op, ok := n.gupCmds[r.ID]
	if !ok {
		return false
	}
	delete(n.gupCmds, r.ID)
	n.gup.LogDone(gup.LogResult{
		ID: r.ID, Op: op, OK: r.Outcome == OK, Conflict: r.Outcome == Conflict, Full: r.LogFull, Err: r.errString(),
		Snapshot: r.Checkpoint, Records: r.Records, Term: r.OwnerLSN, FormatID: r.FormatID,
		Free: r.LogFree, Size: r.LogSize, MaxPayload: r.MaxPayload,
		KeyPresent: op == gup.LogBarrier && slices.Contains(r.Keys, n.arb.key),
	})
	return true
}

// syncGUP tells GUP the membership and the reservation, and moves its
// output into Ready.
func (n *Node) syncGUP() {
	if n.cfg.NoGUP {
		return
	}
	_, m := n.rg.Membership()
	member := n.rg.Member() && n.rg.Registered() && n.halted == ""
	n.gup.SetMembership(member, m, n.arb.owner && member, n.installed)
	n.installed = false
	n.drainGUP()
}

func (n *Node) drainGUP() {
	if !n.gup.HasReady() {
		return
	}
	r := n.gup.Ready()
	g := &n.ready.GUP
	g.Messages = append(g.Messages, r.Messages...)
	for _, c := range r.Completions {
		if n.evCompletion(c.Req, c.Err) {
			continue
		}
		if n.fm == nil || !n.fmCompletion(c.Req, c.Err) {
			g.Completions = append(g.Completions, c)
		}
	}
	g.Reads = append(g.Reads, r.Reads...)
	g.Events = append(g.Events, r.Events...)
}

// StepGUP takes a GUP message from a peer.
func (n *Node) StepGUP(m gup.Message) {
	n.gup.Step(m)
	n.process()
}

// Propose hands data (a database transaction) to GUP and returns its
// request number; a Completion with it comes in Ready once it is applied
// on this node.
func (n *Node) Propose(data []byte) (uint64, error) {
	req, err := n.gup.Propose(data)
	n.process()
	return req, err
}

// Read starts a linearizable read; a ReadDone with its id comes in Ready
// once the local state may serve it.
func (n *Node) Read() (uint64, error) {
	id, err := n.gup.Read()
	n.process()
	return id, err
}

// CancelRead forgets a read the driver gave up on.
func (n *Node) CancelRead(id uint64) { n.gup.CancelRead(id) }

// GUP is the node's GUP state, for status and the local copy (read only).
func (n *Node) GUP() *gup.Node { return n.gup }
