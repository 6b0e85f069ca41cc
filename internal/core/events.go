package core

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/wolfpack-ha/wolfpack/gup"
	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// The membership's part of the cluster-wide event log (gup/db's
// KindEvent; docs/events.md). Every member installs the same membership,
// so one of them records it: the lowest member of the new membership,
// once, in one transaction proposed through GUP right after the install:
// an event for each node that joined, left, was evicted or was lost, then
// the regroup itself (epoch, members before and after, the arbitration's
// result), whose cause is the first node event. The names are fixed by
// the epoch (resources.MembershipEventName, NodeEventName), so the
// failover manager names the regroup that removed a group's owner as the
// cause of its pull without waiting for it, and a create that another
// recorder made first (IfAbsent) only fails.

// evState is what the recorder remembers between installs.
type evState struct {
	members nodes.Set // the membership installed last here
	left    nodes.Set // members that sent ClusterExit since
	evicted nodes.Set // members this node asked to evict since (the database's evicted nodes count too)
	arb     string    // the arbitration's result since (this node's)
	wall    int64     // the wall clock, Unix ms
	txs     [][]byte  // transactions to propose
	reqs    map[uint64]bool
}

// recordMembership builds the events of the membership e installs.
func (n *Node) recordMembership(e regroup.Event) {
	s := &n.ev
	before := s.members
	if before == 0 {
		// This node was no member: it formed the cluster, or joined one
		// whose other members were there before it.
		before = e.Members.Remove(n.cfg.Self)
	}
	s.members = e.Members
	left, evicted, arb := s.left, s.evicted, s.arb
	s.left, s.evicted, s.arb = 0, 0, ""
	if e.Members.Min() != n.cfg.Self || n.fm == nil {
		return
	}
	epoch := e.Epoch.String()
	var ops []db.Op
	first := ""
	add := func(name, typ string, node nodes.ID, msg, cause string) {
		p := map[string]db.Value{
			"type": db.StringValue(typ), "time": db.IntValue(max(s.wall, 0)), "recorder": db.StringValue(n.cfg.Name),
			"message": db.StringValue(msg), "epoch": db.StringValue(epoch),
		}
		if name := n.fm.Model().NodeName[node]; name != "" {
			p["node"] = db.StringValue(name)
		}
		if cause != "" {
			p["cause"] = db.StringValue(cause)
		}
		if first == "" {
			first = name
		} else if typ == db.EventRegroup {
			p["cause_event"] = db.StringValue(first)
		}
		ops = append(ops, db.Create(db.KindEvent, name, p).IfAbsent())
	}
	for _, id := range (before &^ e.Members).IDs() {
		typ, short, cause := db.EventNodeLost, "lost", "silent on every private network (suspected by the failure detector)"
		switch {
		case evicted.Has(id) || n.fm.Model().Evicted.Has(id):
			typ, short, cause = db.EventNodeEvicted, "evicted", "an administrator evicted it (cluster node evict)"
		case left.Has(id):
			typ, short, cause = db.EventNodeLeft, "left", "it left the cluster (ClusterExit)"
		case n.DiskAlive(id):
			cause = "partitioned: silent on every private network but alive on the quorum disk; fenced (key preempted, poison pill)"
		}
		add(resources.NodeEventName(id, short, epoch), typ, id, fmt.Sprintf("node %d %s (epoch %s)", id, short, epoch), cause)
	}
	for _, id := range (e.Members &^ before).IDs() {
		cause := "joined through a sponsor"
		if before == 0 {
			cause = "formed the cluster: no member answered within the join window"
		}
		add(resources.NodeEventName(id, "joined", epoch), db.EventNodeJoined, id, fmt.Sprintf("node %d joined (epoch %s)", id, epoch), cause)
	}
	if arb == "" {
		arb = "no arbitration"
	}
	cause := ""
	if first == "" {
		cause = e.Reason
	}
	add(resources.MembershipEventName(epoch), db.EventRegroup, 0,
		fmt.Sprintf("membership %s installed: %d members%s; %s", epoch, e.Members.Len(), change(before, e.Members), arb), cause)
	reg := &ops[len(ops)-1]
	reg.Props["members"] = db.ListValue(setNames(e.Members)...)
	reg.Props["members_before"] = db.ListValue(setNames(before)...)
	data, err := (&db.Tx{Ops: ops}).MarshalBinary()
	if err != nil {
		n.logWarn("core: event log", "err", err)
		return
	}
	s.txs = append(s.txs, data)
}

// change names the nodes that came and went: " (+3 -1,2)".
func change(before, after nodes.Set) string {
	var parts []string
	if in := after &^ before; in != 0 {
		parts = append(parts, "+"+strings.Join(setNames(in), ","))
	}
	if out := before &^ after; out != 0 {
		parts = append(parts, "-"+strings.Join(setNames(out), ","))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, " ") + ")"
}

func setNames(s nodes.Set) []string {
	var out []string
	for _, id := range s.IDs() {
		out = append(out, strconv.Itoa(int(id)))
	}
	return out
}

// proposeEvents hands the recorded transactions to GUP; while GUP has
// not heard of the membership yet, they wait.
func (n *Node) proposeEvents() {
	for i, data := range n.ev.txs {
		req, err := n.gup.Propose(data)
		if errors.Is(err, gup.ErrNotMember) && n.rg.Member() && n.halted == "" {
			n.ev.txs = n.ev.txs[i:]
			return
		}
		if err != nil {
			n.logWarn("core: event log: propose", "err", err)
			continue
		}
		if n.ev.reqs == nil {
			n.ev.reqs = map[uint64]bool{}
		}
		n.ev.reqs[req] = true
	}
	n.ev.txs = nil
}

// evCompletion swallows the completion of a recorded transaction; it
// reports whether it was one.
func (n *Node) evCompletion(req uint64, errText string) bool {
	if !n.ev.reqs[req] {
		return false
	}
	delete(n.ev.reqs, req)
	if errText != "" {
		n.logDebug("core: event log: not recorded", "err", errText)
	}
	return true
}
