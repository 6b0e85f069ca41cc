package resources

import (
	"errors"
	"fmt"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// The failover manager's part of the cluster-wide event log (gup/db's
// KindEvent; docs/events.md). Each decision it commits carries the event
// that records it in the same transaction, with its cause: the earlier
// event that led to it (cause_event, by name) or the condition (cause).
// The transaction also sets the group's property event to the new
// event's name, so the next event about the group, on whatever node,
// names it as its cause, and `cluster why` starts from it.
//
// Membership events are recorded by the node core (internal/core) under
// the names MembershipEventName and NodeEventName give, which the manager
// computes too: a group pulled from a lost node names the regroup that
// removed it.

// MembershipEventName is the name of the event that records the
// installation of epoch.
func MembershipEventName(epoch string) string { return "regroup-" + epoch }

// NodeEventName is the name of the event typ ("lost", "left", "joined",
// "evicted") of node id at epoch.
func NodeEventName(id nodes.ID, typ, epoch string) string {
	return fmt.Sprintf("node%d-%s-%s", id, typ, epoch)
}

// eventRec is an event the manager records.
type eventRec struct {
	typ, group, resource string
	node                 nodes.ID
	msg                  string
	cause, causeEvent    string
}

// eventOp returns the name of a new event and the operation that creates
// it.
func (m *Manager) eventOp(e eventRec) (string, db.Op) {
	m.evCount++
	name := fmt.Sprintf("n%d.%d.%d", m.cfg.Self, m.cfg.Incarnation%1_000_000_000, m.evCount)
	p := map[string]db.Value{
		"type": db.StringValue(e.typ), "time": db.IntValue(max(m.wall, 0)),
		"recorder": db.StringValue(m.cfg.Name), "message": db.StringValue(trim(e.msg)),
	}
	str := func(k, v string) {
		if v != "" {
			p[k] = db.StringValue(v)
		}
	}
	str("group", e.group)
	str("resource", e.resource)
	str("node", m.model.NodeName[e.node])
	str("cause", trim(e.cause))
	str("cause_event", e.causeEvent)
	return name, db.Create(db.KindEvent, name, p)
}

// withEvent adds to ops, a transaction about group g, the group's
// recorded facts waiting for a transaction (resource failures), then e
// if it has a type, and sets the group's event to the last of them. It
// remembers how many facts rode along, so that a commit forgets them.
func (m *Manager) withEvent(g *Group, lg *localGroup, ops []db.Op, e eventRec) ([]db.Op, string) {
	last := ""
	for _, f := range lg.facts {
		ops = append(ops, f.op)
		last = f.name
	}
	if e.typ != "" {
		if e.causeEvent == "" && e.cause == "" {
			e.causeEvent = g.Event
			if last != "" {
				e.causeEvent = last
			}
		}
		name, op := m.eventOp(e)
		ops = append(ops, op)
		last = name
	}
	lg.prop.facts = len(lg.facts)
	if last != "" {
		ops = append(ops, db.Set(db.KindGroup, g.Name, map[string]db.Value{"event": db.StringValue(last)}))
	}
	return ops, last
}

// fact is an event that waits for the next transaction about its group.
type fact struct {
	name string
	op   db.Op
}

// recordFact queues an event about group g that no decision of its own
// commits (a resource's failure); it rides in the group's next
// transaction, or in one of its own (proposeFacts).
func (m *Manager) recordFact(g *Group, e eventRec) string {
	lg := m.group(g.Name)
	if e.causeEvent == "" && e.cause == "" {
		e.causeEvent = g.Event
	}
	name, op := m.eventOp(e)
	lg.facts = append(lg.facts, fact{name, op})
	return name
}

// proposeFacts commits the facts of g when no other transaction of the
// group is under way.
func (m *Manager) proposeFacts(g *Group, lg *localGroup) {
	if len(lg.facts) == 0 || lg.prop.inflight || m.now < lg.prop.retryAt {
		return
	}
	ops, _ := m.withEvent(g, lg, nil, eventRec{})
	m.propose(&lg.prop, g.Name, db.Tx{Ops: ops}, "record events of "+g.Name)
}

// factsDone forgets the facts a proposal carried once it committed, and
// all of them when it failed for another reason than a changed group (the
// group is gone, or the transaction cannot commit).
func (lg *localGroup) factsDone(err error) {
	n := min(lg.prop.facts, len(lg.facts))
	lg.prop.facts = 0
	switch {
	case err == nil:
		lg.facts = lg.facts[n:]
	case !errors.Is(err, db.ErrPrecondition):
		lg.facts = nil
	}
}

// SetEpoch names the membership the next SetMembership(..., installed)
// installs, so that the events of the groups it moves name it.
func (m *Manager) SetEpoch(epoch string) { m.epoch = epoch }

// drainCause is a drain's cause, for the events of the groups it moves.
func (m *Manager) drainCause() string {
	return fmt.Sprintf("node %s is being drained (a planned stop)", m.cfg.Name)
}
