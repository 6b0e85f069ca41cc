package regroup

import "fmt"

// beginRegroup starts a new regroup round from a local trigger: suspicion,
// a restarted or evicted member, or a barrier that timed out.
func (n *Node) beginRegroup() {
	n.startRound(n.rg.round + 1)
}

// startRound enters Activate of round r (docs/membership.md "Regroup",
// stage 1).
func (n *Node) startRound(r uint64) {
	if n.rg.stage == StageStabilized {
		n.rg.excluded = 0 // a new regroup episode
	}
	n.abortSponsoring("regroup started")
	excluded := n.rg.excluded
	n.rg = regroupState{round: r, stage: StageActivate, since: n.now, lastSend: n.now, excluded: excluded}
	n.rg.original = n.members
	n.state = StatePaused
	n.recordOwnRow()
	n.event(Event{Kind: EventRegroupStarted, Round: r, Epoch: n.epoch, Members: n.members})
	n.broadcastStatus()
}

// hears is this node's row of the connectivity matrix: the members its
// failure detector hears, less those that restarted or that this regroup
// timed out on.
func (n *Node) hears() NodeSet {
	return (n.alive & n.members &^ n.restarted &^ n.rg.excluded).Add(n.cfg.Self) &^ n.evict.Remove(n.cfg.Self)
}

func (n *Node) recordOwnRow() {
	self := n.cfg.Self
	n.rg.rows[self] = n.hears()
	n.rg.gens[self] = n.epoch.Gen()
	n.rg.responders = n.rg.responders.Add(self)
	n.rg.evict |= n.evict
}

func (n *Node) statusMsg(stage Stage) Message {
	return Message{Type: MsgRegroup, Round: n.rg.round, Stage: stage, Hears: n.hears(), Evict: n.evict, Epoch: n.epoch, Members: n.members}
}

func (n *Node) broadcastStatus() {
	n.sendAll(n.members&^n.rg.excluded, n.statusMsg(StageActivate))
}

// expected is who Activate waits for: every member still heard.
func (n *Node) expected() NodeSet { return n.hears() }

func (n *Node) stepRegroup(m Message) {
	if !n.Member() || !n.members.Has(m.From) {
		return
	}
	if m.Type == MsgRegroup && m.Evict.Has(n.cfg.Self) {
		// An administrator evicted this node: stop at once rather than
		// contend for the disk; the others regroup it out and fence it.
		n.haltAs(fmt.Sprintf("evicted from cluster %d by an administrator (node %d's regroup round %d); it may join again once added back (cluster node add)", n.cfg.Cluster, m.From, m.Round), true)
		return
	}
	if m.Round < n.rg.round {
		// A member behind us (restarted, or it missed a round) is
		// regrouping: bring it to our round, or start one above both.
		if m.Type == MsgRegroup && m.Stage == StageActivate {
			if n.rg.stage == StageStabilized {
				n.beginRegroup()
			} else {
				st := n.statusMsg(StageActivate)
				st.To = m.From
				n.send(st)
			}
		}
		return
	}
	if m.Round > n.rg.round {
		if m.Type != MsgRegroup || m.Stage != StageActivate && m.Stage != StageClosing && m.Stage != StagePruning {
			return
		}
		n.startRound(m.Round)
	}
	if n.rg.excluded.Has(m.From) && m.Type == MsgRegroup && (m.Stage == StageActivate || m.Stage == StageClosing) {
		return
	}
	switch m.Type {
	case MsgAbandon:
		if n.rg.accepted && m.From == n.rg.leader {
			n.halt(m.Reason)
		}
	case MsgRegroupAck:
		n.stepAck(m)
	case MsgRegroup:
		switch m.Stage {
		case StageActivate, StageClosing:
			n.rg.rows[m.From] = m.Hears
			n.rg.gens[m.From] = m.Epoch.Gen()
			n.rg.evict |= m.Evict
			n.rg.responders = n.rg.responders.Add(m.From)
			if m.Stage == StageClosing && n.rg.stage == StageClosing && n.rg.leader == n.cfg.Self {
				n.rg.closing = n.rg.closing.Add(m.From)
				n.maybeDecide()
			}
			if n.rg.stage == StageActivate {
				n.maybeEndActivate()
			}
		case StagePruning:
			n.stepPrune(m)
		case StageCleanup1:
			if !n.rg.accepted || m.From != n.rg.leader {
				return
			}
			if n.rg.stage == StagePruning {
				n.rg.stage, n.rg.since = StageCleanup1, n.now
				n.install(m.Epoch, m.Members, fmt.Sprintf("regroup round %d", n.rg.round))
				n.holdKey = n.holdKey && m.Members.Has(n.cfg.Self)
			}
			n.send(Message{Type: MsgRegroupAck, To: m.From, Round: n.rg.round, Stage: StageCleanup1})
		case StageCleanup2:
			if !n.rg.accepted || m.From != n.rg.leader || n.rg.stage < StageCleanup1 {
				return
			}
			if n.rg.stage == StageCleanup1 {
				n.rg.stage, n.rg.since = StageCleanup2, n.now
				n.event(Event{Kind: EventCleanup2, Epoch: n.epoch})
			}
			n.send(Message{Type: MsgRegroupAck, To: m.From, Round: n.rg.round, Stage: StageCleanup2})
		case StageStabilized:
			if n.rg.accepted && m.From == n.rg.leader && n.rg.stage >= StageCleanup1 {
				n.stabilize()
			}
		}
	}
}

func (n *Node) maybeEndActivate() {
	if n.rg.stage != StageActivate {
		return
	}
	// Every member this node hears answers, or the wait is over: 100 ms
	// for members no longer heard, the patience for those still heard (a
	// late answer from a slow member must not get it pruned).
	if missing := n.expected() &^ n.rg.responders; missing != 0 && !n.waitOver(n.now-n.rg.since, n.cfg.ActivateTicks, 0, missing) {
		return
	}
	// Stage 2, Closing: the leader is the lowest id that answered.
	n.recordOwnRow()
	n.rg.leader = n.rg.responders.Min()
	n.rg.stage, n.rg.since = StageClosing, n.now
	if n.rg.leader == n.cfg.Self {
		n.rg.closing = n.rg.closing.Add(n.cfg.Self)
		n.maybeDecide()
		return
	}
	m := n.statusMsg(StageClosing)
	m.To = n.rg.leader
	n.send(m)
}

// maybeDecide: the leader, once every responder closed (or the barrier
// timed out), decides whether this partition may survive and prunes it to a
// fully connected set (stages 2 and 3).
func (n *Node) maybeDecide() {
	if n.rg.stage != StageClosing || n.rg.leader != n.cfg.Self {
		return
	}
	if missing := n.rg.responders &^ n.rg.closing; missing != 0 && !n.waitOver(n.now-n.rg.since, n.cfg.StageTicks, 0, missing) {
		return
	}
	n.recordOwnRow()
	cands := n.rg.closing &^ n.rg.evict.Remove(n.cfg.Self)
	adj := Matrix(cands, &n.rg.rows)
	s := MaxClique(&adj, cands, n.cfg.Self)
	n.rg.survivors = s
	n.rg.pruned = n.rg.responders &^ s
	n.rg.class = Classify(n.rg.original, s, n.tieBreaker(n.rg.original))
	n.rg.stage, n.rg.since, n.rg.lastSend = StagePruning, n.now, n.now
	n.rg.accepted = true
	n.rg.acks = NodeSet(0).Add(n.cfg.Self)
	n.log.Debug("prune", "round", n.rg.round, "survivors", s, "pruned", n.rg.pruned, "class", n.rg.class)
	n.sendAll(s|n.rg.pruned, n.pruneMsg())
	n.maybeArbitrate()
}

func (n *Node) pruneMsg() Message {
	return Message{Type: MsgRegroup, Round: n.rg.round, Stage: StagePruning, Members: n.rg.survivors, Class: n.rg.class}
}

// stepPrune: a follower accepts the first Pruning decision of the round
// from a leader no higher than any node it heard from in this round.
func (n *Node) stepPrune(m Message) {
	if n.rg.accepted {
		if m.From == n.rg.leader && n.rg.stage == StagePruning {
			n.send(Message{Type: MsgRegroupAck, To: m.From, Round: n.rg.round, Stage: StagePruning})
		}
		return
	}
	if m.From > n.rg.responders.Min() {
		return
	}
	n.rg.accepted = true
	n.rg.leader = m.From
	if !m.Members.Has(n.cfg.Self) {
		n.halt(fmt.Sprintf("pruned in regroup round %d: leader %d kept %v, not fully connected with this node", n.rg.round, m.From, m.Members))
		return
	}
	n.rg.survivors, n.rg.class = m.Members, m.Class
	n.rg.stage, n.rg.since = StagePruning, n.now
	n.send(Message{Type: MsgRegroupAck, To: m.From, Round: n.rg.round, Stage: StagePruning})
}

func (n *Node) stepAck(m Message) {
	if n.rg.leader != n.cfg.Self || m.Stage != n.rg.stage || !n.rg.survivors.Has(m.From) {
		return
	}
	n.rg.acks = n.rg.acks.Add(m.From)
	switch n.rg.stage {
	case StagePruning:
		n.maybeArbitrate()
	case StageCleanup1, StageCleanup2:
		n.maybeAdvanceCleanup()
	}
}

// maybeArbitrate: once every survivor acknowledged the decision, ask the
// arbiter to make the survivors the only registrants, unless nobody was
// lost (then nobody needs fencing and no other partition can exist).
func (n *Node) maybeArbitrate() {
	if n.rg.stage != StagePruning || n.rg.arbitrate || n.rg.survivors&^n.rg.acks != 0 {
		return
	}
	if n.rg.original&^n.rg.survivors == 0 {
		n.installAsLeader()
		return
	}
	n.rg.arbitrate = true
	n.ready.Arbitrate = &Arbitration{Round: n.rg.round, Members: n.rg.survivors, Class: n.rg.class}
}

// installAsLeader is Cleanup 1 at the leader: the new epoch is one
// generation past every survivor's.
func (n *Node) installAsLeader() {
	var gen uint64
	for _, id := range n.rg.survivors.IDs() {
		gen = max(gen, n.rg.gens[id])
	}
	gen = max(gen, n.epoch.Gen())
	e := MakeEpoch(gen+1, n.cfg.Self)
	n.rg.stage, n.rg.since, n.rg.lastSend = StageCleanup1, n.now, n.now
	n.rg.acks = NodeSet(0).Add(n.cfg.Self)
	n.install(e, n.rg.survivors, fmt.Sprintf("regroup round %d", n.rg.round))
	n.sendAll(n.rg.survivors, n.installMsg())
	n.maybeAdvanceCleanup()
}

func (n *Node) installMsg() Message {
	return Message{Type: MsgRegroup, Round: n.rg.round, Stage: StageCleanup1, Epoch: n.epoch, Members: n.members}
}

func (n *Node) maybeAdvanceCleanup() {
	done := n.rg.survivors&^n.rg.acks == 0 || n.now-n.rg.since >= int64(n.cfg.StageTicks)
	if !done {
		return
	}
	switch n.rg.stage {
	case StageCleanup1:
		n.rg.stage, n.rg.since, n.rg.lastSend = StageCleanup2, n.now, n.now
		n.rg.acks = NodeSet(0).Add(n.cfg.Self)
		n.event(Event{Kind: EventCleanup2, Epoch: n.epoch})
		n.sendAll(n.members, Message{Type: MsgRegroup, Round: n.rg.round, Stage: StageCleanup2})
		n.maybeAdvanceCleanup()
	case StageCleanup2:
		n.sendAll(n.members, Message{Type: MsgRegroup, Round: n.rg.round, Stage: StageStabilized})
		n.stabilize()
	}
}

func (n *Node) stabilize() {
	n.rg.stage = StageStabilized
	n.rg.excluded = 0
	n.state = StateUp
	n.event(Event{Kind: EventStabilized, Epoch: n.epoch, Members: n.members, Round: n.rg.round})
}

// timeout moves to a new round, leaving out the nodes this one waited for
// in vain.
func (n *Node) timeout(missing NodeSet, what string) {
	n.log.Debug("regroup barrier timed out", "round", n.rg.round, "stage", n.rg.stage, "waiting_for", missing, "what", what)
	n.rg.excluded |= missing.Remove(n.cfg.Self)
	n.beginRegroup()
}

func (n *Node) tickRegroup() {
	rg := &n.rg
	if rg.stage == StageStabilized {
		// A member the detector no longer hears, one that restarted, or an
		// eviction: regroup (docs/membership.md "Regroup": triggers).
		if n.members&n.suspected != 0 || n.restarted != 0 || n.evict != 0 {
			n.beginRegroup()
		}
		return
	}
	elapsed := n.now - rg.since
	resend := n.now-rg.lastSend >= int64(n.cfg.ResendTicks)
	if resend {
		rg.lastSend = n.now
	}
	leader := rg.leader == n.cfg.Self
	switch rg.stage {
	case StageActivate:
		if resend {
			n.recordOwnRow()
			n.broadcastStatus()
		}
		n.maybeEndActivate()
	case StageClosing:
		if leader {
			n.maybeDecide()
			return
		}
		// The leader may wait StageTicks for every Closing before it
		// decides, and up to the patience in Activate and again in Closing
		// for members it still hears.
		if n.waitOver(elapsed, 2*n.cfg.StageTicks+n.cfg.ActivateTicks, 2*n.cfg.PatienceTicks+n.cfg.StageTicks, NodeSet(0).Add(rg.leader)) {
			n.timeout(NodeSet(0).Add(rg.leader), "leader's pruning decision")
			return
		}
		if resend {
			m := n.statusMsg(StageClosing)
			m.To = rg.leader
			n.send(m)
		}
	case StagePruning:
		switch {
		case leader && rg.arbitrate:
			// The arbiter always answers.
		case leader:
			if n.waitOver(elapsed, n.cfg.StageTicks, 0, rg.survivors&^rg.acks) {
				n.timeout(rg.survivors&^rg.acks, "pruning acknowledgements")
				return
			}
			if resend {
				n.sendAll(rg.survivors&^rg.acks, n.pruneMsg())
			}
		case n.waitOver(elapsed, n.cfg.ArbitrationTicks, n.cfg.ArbitrationTicks+n.cfg.PatienceTicks, NodeSet(0).Add(rg.leader)):
			// The leader may first wait up to the patience for the other
			// survivors' acknowledgements.
			n.timeout(NodeSet(0).Add(rg.leader), "leader's arbitration and install")
		}
	case StageCleanup1, StageCleanup2:
		if !leader {
			if elapsed >= int64(n.cfg.StageTicks) {
				n.stabilize() // installed already; the leader's barrier was lost
			}
			return
		}
		if resend {
			m := n.installMsg()
			if rg.stage == StageCleanup2 {
				m = Message{Type: MsgRegroup, Round: rg.round, Stage: StageCleanup2}
			}
			n.sendAll(rg.survivors&^rg.acks, m)
		}
		n.maybeAdvanceCleanup()
	}
}
