package regroup

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Join, form and leave (docs/membership.md "Join (through a sponsor)").

type joinPhase uint8

const (
	joinProbe       joinPhase = iota // JoinRequest sent, no sponsor chosen
	joinAuthSent                     // JoinAuth sent to the sponsor
	joinRegistering                  // database restored; registering the key before JoinStateAck
	joinRestored                     // key registered, JoinStateAck sent; waiting for Welcome
)

type joinState struct {
	phase     joinPhase
	started   int64 // this Start
	attempt   int64 // this attempt
	lastProbe int64
	contact   int64 // last answer from a member or a forming node
	nonce     uint64
	sponsor   NodeID
	target    NodeID // redirect: where to probe
	formRound uint64
	heldOff   bool // logged that a live cluster is heard, so no form
	lower     lowerState
}

// lowerState is what a joining node knows of the nodes with lower ids that
// are starting too (heard, members of no cluster): the lowest of them forms
// and the others join it (docs/membership.md, "Join"). It lasts for the
// whole Start, across join attempts and lost forms, so that a lower node
// that cannot form holds this one off once, for a bounded time.
type lowerState struct {
	since   [65]int64 // tick each was first heard starting (0: not heard starting now)
	heldFor NodeSet   // logged holding off for these
	gaveUp  NodeSet   // logged forming though these are starting
}

type sponsorPhase uint8

const (
	spIdle      sponsorPhase = iota
	spChallenge              // Challenge sent, waiting for JoinAuth
	spAnnounce               // Announce sent, waiting for every member's AnnounceAck
	spState                  // JoinState sent, waiting for JoinStateAck
	spHeartbeat              // waiting for the joiner's heartbeat
	spCommit                 // JoinCommit sent, waiting for every member's ack
	spWelcome                // Welcome sent, waiting for WelcomeAck
)

type sponsorState struct {
	phase    sponsorPhase
	joiner   NodeID
	inc      uint64
	jnonce   uint64
	nonce    uint64
	counter  uint64
	since    int64
	lastSend int64
	epoch    Epoch
	members  NodeSet
	acks     NodeSet
	heard    NodeSet     // members that said they hear the joiner (AnnounceAck)
	queue    [65]Message // latest JoinRequest per waiting joiner
	waiting  NodeSet
}

// Proofs: HMAC-SHA256 under the cluster secret over a label, the cluster,
// both ids, the joiner's incarnation and both nonces. Each side proves it
// knows the secret without sending it; the nonces make every proof fresh.
func (n *Node) proof(label string, sponsor, joiner NodeID, inc, jnonce, snonce uint64) []byte {
	mac := hmac.New(sha256.New, n.cfg.Secret)
	var b []byte
	b = append(b, label...)
	b = binary.BigEndian.AppendUint32(b, n.cfg.Cluster)
	b = binary.BigEndian.AppendUint32(b, uint32(sponsor))
	b = binary.BigEndian.AppendUint32(b, uint32(joiner))
	b = binary.BigEndian.AppendUint64(b, inc)
	b = binary.BigEndian.AppendUint64(b, jnonce)
	b = binary.BigEndian.AppendUint64(b, snonce)
	mac.Write(b)
	return mac.Sum(nil)
}

// Start begins joining: probe every configured node for a sponsor, and
// form the cluster if no member answers within the form timeout.
func (n *Node) Start() {
	if n.state != StateDown {
		return
	}
	n.state = StateJoining
	n.jn = joinState{started: n.now, contact: n.now, lastProbe: n.now - int64(n.cfg.JoinRetryTicks)}
	n.tickJoinProbe()
}

// Form forms a new cluster at once (the administrator's "cluster create"),
// without looking for a sponsor. It still has to win the quorum disk.
func (n *Node) Form() {
	if n.state != StateDown && n.state != StateJoining {
		return
	}
	n.form()
}

func (n *Node) form() {
	n.state = StateForming
	n.jn.formRound++
	n.log.Info("forming the cluster")
	n.ready.Arbitrate = &Arbitration{Round: n.jn.formRound, Members: NodeSet(0).Add(n.cfg.Self), Class: ClassForm}
}

func (n *Node) formDone(round uint64, won bool, reason string) {
	if round != n.jn.formRound {
		return
	}
	if !won {
		n.state = StateJoining
		n.jn = joinState{started: n.now, contact: n.now, formRound: n.jn.formRound, lower: n.jn.lower}
		n.event(Event{Kind: EventJoinFailed, Reason: "form: lost the quorum disk (a live cluster defends it): " + reason})
		return
	}
	n.holdKey = true
	n.rg.stage = StageStabilized
	n.install(MakeEpoch(n.epoch.Gen()+1, n.cfg.Self), NodeSet(0).Add(n.cfg.Self), "formed")
	n.event(Event{Kind: EventFormed, Epoch: n.epoch})
	n.event(Event{Kind: EventStabilized, Epoch: n.epoch, Members: n.members})
}

// Leave is a planned shutdown: ClusterExit to every member, no regroup
// follows; the arbiter removes this node's key.
func (n *Node) Leave() error {
	if n.state != StateUp || n.rg.stage != StageStabilized {
		return fmt.Errorf("regroup: leave: node %d is %v (stage %v), not a stable member", n.cfg.Self, n.state, n.rg.stage)
	}
	n.abortSponsoring("sponsor leaving")
	n.sendAll(n.members, Message{Type: MsgExit, Epoch: n.epoch, Members: n.members})
	n.state = StateLeft
	n.ready.Unregister = true
	n.holdKey = false
	n.event(Event{Kind: EventLeft, Epoch: n.epoch})
	return nil
}

func (n *Node) stepExit(m Message) {
	if !n.Member() || !n.members.Has(m.From) {
		return
	}
	if n.rg.stage != StageStabilized || m.Epoch != n.epoch {
		// Not in step: let the regroup (already running, or triggered when
		// the detector loses it) take it out.
		n.rg.excluded = n.rg.excluded.Add(m.From)
		return
	}
	// Every member applies the same change to the same epoch, so all
	// arrive at the same next one: generation+1, installed by the leaver.
	n.abortSponsoring("member left")
	n.install(MakeEpoch(n.epoch.Gen()+1, m.From), n.members.Remove(m.From), fmt.Sprintf("node %d left", m.From))
	n.event(Event{Kind: EventNodeLeft, Node: m.From, Epoch: n.epoch})
}

// ---- joiner side ----

func (n *Node) tickJoin() {
	jn := &n.jn
	n.trackLower()
	formAfter := int64(n.cfg.FormTicks + int(n.cfg.Self-1)*n.cfg.FormStaggerTicks)
	if jn.phase == joinProbe {
		if n.now-max(jn.contact, jn.started) >= formAfter {
			// A node forms only when it can find no cluster: one whose
			// members it hears (their heartbeats carry an epoch) is
			// alive, its owner would have to defend the disk against
			// this node, and on a slow machine it may not in time (the
			// QEMU fault matrix: a restarted node preempted the live
			// owner). Keep asking to join.
			if live := n.inCluster & n.alive; live != 0 {
				if !jn.heldOff {
					n.log.Info("not forming: members of a live cluster are heard; asking to join again", "members", live.IDs())
					jn.heldOff = true
				}
				jn.contact = n.now
			} else if wait := n.lowerWaitedFor(); wait != 0 {
				// Nodes starting together: the lowest forms, the others
				// join it, rather than all of them contending for the
				// disk (the appliance boot: the loser waited out the form
				// delay, then joined). Keep asking to join, for a bounded
				// time per lower node.
				if p := wait &^ jn.lower.heldFor; p != 0 {
					var left int64
					for _, id := range wait.IDs() {
						left = max(left, n.lowerBound(id)-(n.now-jn.lower.since[id]))
					}
					n.log.Info("not forming: a node with a lower id is starting too; it forms first, this node joins it",
						"peers", p.IDs(), "at_most_ticks", left)
					jn.lower.heldFor |= p
				}
			} else {
				if p := n.startingLower() &^ jn.lower.gaveUp; p != 0 {
					n.log.Info("forming: the nodes with lower ids starting too have not formed in time", "peers", p.IDs())
					jn.lower.gaveUp |= p
				}
				n.form()
				return
			}
		}
		n.tickJoinProbe()
		return
	}
	// One attempt may take two join spans while its sponsor is heard: the
	// sponsor waits up to one span at each of its steps.
	if n.waitOver(n.now-jn.attempt, n.cfg.JoinTicks, 2*n.joinSpan(), NodeSet(0).Add(jn.sponsor)) {
		n.send(Message{Type: MsgJoinAbort, To: jn.sponsor, Joiner: n.cfg.Self, Reason: "joiner timed out"})
		n.joinFailed(fmt.Sprintf("join through sponsor %d timed out", jn.sponsor), false)
	}
}

// startingLower is the set of peers with a lower id that the detector
// hears and that are members of no cluster (their heartbeats carry epoch
// 0): they are joining or forming too.
func (n *Node) startingLower() NodeSet {
	below := NodeSet(1)<<(n.cfg.Self-1) - 1
	return n.alive &^ n.inCluster & below & n.cfg.Nodes
}

// trackLower notes when each lower node was first heard starting; one no
// longer heard, or heard as a member, is forgotten.
func (n *Node) trackLower() {
	s := n.startingLower()
	l := &n.jn.lower
	for id := NodeID(1); id < n.cfg.Self; id++ {
		switch {
		case !s.Has(id):
			l.since[id] = 0
			l.heldFor, l.gaveUp = l.heldFor.Remove(id), l.gaveUp.Remove(id)
		case l.since[id] == 0:
			l.since[id] = max(n.now, 1)
		}
	}
}

// lowerBound is how long a joining node waits for lower node p, heard
// starting, to form: p's own join window and then the time its form
// arbitration may take. A node that cannot form (no disk path) holds
// the others off no longer than this.
func (n *Node) lowerBound(p NodeID) int64 {
	return int64(n.cfg.FormTicks + int(p-1)*n.cfg.FormStaggerTicks + n.cfg.ArbitrationTicks)
}

// lowerWaiting reports whether this node still waits for lower node p to
// form: p is heard starting, and has been for less than lowerBound(p).
func (n *Node) lowerWaiting(p NodeID) bool {
	t := n.jn.lower.since[p]
	return p < n.cfg.Self && t != 0 && n.now-t < n.lowerBound(p)
}

// lowerWaitedFor is the set of lower nodes this node still waits for.
func (n *Node) lowerWaitedFor() NodeSet {
	var s NodeSet
	for _, p := range n.startingLower().IDs() {
		if n.lowerWaiting(p) {
			s = s.Add(p)
		}
	}
	return s
}

func (n *Node) tickJoinProbe() {
	jn := &n.jn
	if n.now-jn.lastProbe < int64(n.cfg.JoinRetryTicks) {
		return
	}
	jn.lastProbe = n.now
	if jn.nonce == 0 { // one nonce per attempt: a Challenge may answer any probe of it
		jn.nonce = n.cfg.Incarnation<<20 ^ uint64(n.now) | 1
	}
	m := Message{Type: MsgJoinRequest, Incarnation: n.cfg.Incarnation, Nonce: jn.nonce}
	if jn.target != 0 {
		m.To = jn.target
		n.send(m)
		jn.target = 0 // one try; then everyone again
		return
	}
	n.sendAll(n.cfg.Nodes, m)
}

func (n *Node) joinFailed(reason string, fatal bool) { n.joinFailedAs(reason, fatal, false) }

func (n *Node) joinFailedAs(reason string, fatal, evicted bool) {
	n.holdKey = false // a key registered for the attempt: the owner removes it
	n.event(Event{Kind: EventJoinFailed, Reason: reason, Fatal: fatal, Evicted: evicted})
	if fatal {
		n.state = StateDown
		return
	}
	n.jn = joinState{started: n.jn.started, contact: n.now, lastProbe: n.now, formRound: n.jn.formRound, lower: n.jn.lower}
}

func (n *Node) stepJoin(m Message) {
	switch m.Type {
	case MsgJoinRequest, MsgJoinAuth, MsgJoinStateAck, MsgJoinCommitAck, MsgWelcomeAck, MsgAnnounceAck:
		n.stepSponsor(m)
		return
	case MsgAnnounce, MsgJoinCommit:
		n.stepMember(m)
		return
	case MsgJoinAbort:
		if n.state == StateJoining {
			if m.From == n.jn.sponsor && n.jn.phase != joinProbe {
				n.joinFailed(fmt.Sprintf("sponsor %d aborted the join: %s", m.From, m.Reason), false)
			}
			return
		}
		n.stepSponsor(m)
		return
	}
	if n.state != StateJoining {
		return
	}
	jn := &n.jn
	switch m.Type {
	case MsgJoinRedirect:
		jn.contact = n.now
		if jn.phase == joinProbe && m.Leader.Valid() && jn.target != m.Leader {
			jn.target = m.Leader
			jn.lastProbe = n.now - int64(n.cfg.JoinRetryTicks) // probe the leader now
			n.tickJoinProbe()
		}
	case MsgJoinRefused:
		// A refusal says a cluster is there or being formed: wait a whole
		// window again. Not for a lower node starting too whose wait is
		// over: one that cannot form would refuse while it tries, again
		// and again, and keep this node from ever forming.
		if p := m.From; p > n.cfg.Self || n.jn.lower.since[p] == 0 || n.lowerWaiting(p) {
			jn.contact = n.now
		}
		// A refusal that is not fatal answers a JoinRequest, and only a
		// probing node sends those: past the Challenge it is stale (the
		// sponsor refused an earlier probe, "busy; queued", then took
		// this node from its queue; the refusal came in after the
		// Challenge), and failing the attempt for it left the sponsor
		// waiting for an attempt the joiner had given up, until its
		// timeout. A sponsor that gives up sends JoinAbort.
		if m.Fatal {
			n.joinFailedAs(fmt.Sprintf("join refused by node %d: %s", m.From, m.Reason), true, m.Evict.Has(n.cfg.Self))
		}
	case MsgChallenge:
		jn.contact = n.now
		if jn.phase != joinProbe || m.Nonce != jn.nonce {
			return
		}
		want := n.proof("wolfpack join sponsor", m.From, n.cfg.Self, n.cfg.Incarnation, m.Nonce, m.Nonce2)
		if !hmac.Equal(want, m.Proof) {
			// Mutual authentication failed: this node's secret is not the
			// cluster's (or the sponsor is an impostor). Retrying cannot help.
			n.joinFailed(fmt.Sprintf("join refused: sponsor %d's proof does not verify: this node's cluster secret differs from cluster %d's", m.From, n.cfg.Cluster), true)
			return
		}
		jn.phase, jn.sponsor, jn.attempt = joinAuthSent, m.From, n.now
		n.send(Message{Type: MsgJoinAuth, To: m.From, Nonce: jn.nonce, Nonce2: m.Nonce2,
			Proof: n.proof("wolfpack join joiner", m.From, n.cfg.Self, n.cfg.Incarnation, jn.nonce, m.Nonce2)})
	case MsgJoinState:
		if m.From != jn.sponsor || jn.phase != joinAuthSent {
			if m.From == jn.sponsor && jn.phase == joinRestored {
				n.send(Message{Type: MsgJoinStateAck, To: m.From})
			}
			return
		}
		// The key goes on the disk before the join commits, not after:
		// a REGISTER that lands late must land before any member counts
		// this node in, so that every later regroup that leaves it out
		// finds its key and fences it. DiskRegistered sends the ack.
		jn.phase = joinRegistering
		n.ready.Register = true
		n.ready.RegisterFor = m.Members.Add(n.cfg.Self)
	case MsgWelcome:
		if m.From != jn.sponsor || jn.phase != joinRestored || !m.Members.Has(n.cfg.Self) {
			return
		}
		n.rg = regroupState{round: max(n.rg.round, m.Round)}
		n.install(m.Epoch, m.Members, fmt.Sprintf("joined through sponsor %d", m.From))
		n.send(Message{Type: MsgWelcomeAck, To: m.From})
		n.event(Event{Kind: EventJoined, Epoch: m.Epoch, Members: m.Members})
	}
}

// ---- member side ----

func (n *Node) stepMember(m Message) {
	if !n.Member() || !n.members.Has(m.From) {
		return
	}
	switch m.Type {
	case MsgAnnounce:
		// Tell the sponsor once this node hears the joiner: the sponsor
		// commits only a joiner every member hears (MSCS: the joiner must
		// be reachable by all), else the node would be regrouped out at
		// once, rejoin, and flap.
		n.log.Debug("join announced", "joiner", m.Joiner, "sponsor", m.From)
		if m.Joiner.Valid() {
			n.announced[m.Joiner] = max(n.now, 1)
		}
		if m.Joiner.Valid() && n.alive.Has(m.Joiner) && n.mayAck(m.Joiner) {
			n.send(Message{Type: MsgAnnounceAck, To: m.From, Joiner: m.Joiner})
		}
	case MsgJoinCommit:
		if n.rg.stage != StageStabilized {
			return // regrouping: the sponsor's regroup aborts the join
		}
		if m.Epoch != n.epoch {
			if m.Epoch.Gen() <= n.epoch.Gen() || m.Members&n.members != n.members {
				return
			}
			if m.Joiner.Valid() {
				n.memberInc[m.Joiner] = m.Incarnation
			}
			n.install(m.Epoch, m.Members, fmt.Sprintf("node %d joined through sponsor %d", m.Joiner, m.From))
			n.event(Event{Kind: EventNodeUp, Node: m.Joiner, Epoch: m.Epoch})
		}
		n.send(Message{Type: MsgJoinCommitAck, To: m.From, Epoch: m.Epoch})
	}
}

// ---- sponsor side: the leader (lowest member) sponsors one join at a time ----

func (n *Node) stepSponsor(m Message) {
	sp := &n.sp
	switch m.Type {
	case MsgJoinRequest:
		switch {
		case n.state == StateForming:
			n.send(Message{Type: MsgJoinRefused, To: m.From, Reason: fmt.Sprintf("node %d is forming the cluster; retry", n.cfg.Self)})
		case !n.Member():
		case n.banned.Has(m.From):
			n.send(Message{Type: MsgJoinRefused, To: m.From, Fatal: true, Evict: NodeSet(0).Add(m.From),
				Reason: fmt.Sprintf("node %d is evicted from cluster %d: an administrator must add it back (cluster node add) before it may join", m.From, n.cfg.Cluster)})
		case n.members.Has(m.From):
			// Its old incarnation is still a member: regroup it out first.
			n.restarted = n.restarted.Add(m.From)
			n.send(Message{Type: MsgJoinRefused, To: m.From, Reason: "still a member under an old incarnation; regrouping it out"})
		case n.members.Min() != n.cfg.Self:
			n.send(Message{Type: MsgJoinRedirect, To: m.From, Leader: n.members.Min()})
		case n.rg.stage != StageStabilized || sp.phase != spIdle && sp.joiner != m.From:
			sp.queue[m.From] = m
			sp.waiting = sp.waiting.Add(m.From)
			n.send(Message{Type: MsgJoinRefused, To: m.From, Reason: "busy; queued"})
		case sp.phase == spIdle || sp.phase == spChallenge && sp.joiner == m.From && sp.jnonce != m.Nonce:
			n.sponsor(m) // a new attempt by the same joiner restarts the challenge
		}
	case MsgJoinAuth:
		if sp.phase != spChallenge || m.From != sp.joiner || m.Nonce2 != sp.nonce {
			return
		}
		want := n.proof("wolfpack join joiner", n.cfg.Self, m.From, sp.inc, sp.jnonce, sp.nonce)
		if !hmac.Equal(want, m.Proof) {
			n.log.Warn("join refused: authentication failed", "joiner", m.From)
			n.send(Message{Type: MsgJoinRefused, To: m.From, Fatal: true,
				Reason: fmt.Sprintf("authentication failed: node %d does not know the cluster secret of cluster %d", m.From, n.cfg.Cluster)})
			n.sponsorDone()
			return
		}
		// Announce the joiner; once every member knows it (and so spares
		// its key in the quorum owner's defence), send it the membership:
		// it registers its key when it gets it. Sending both at once let
		// an owner that had not heard the announcement yet preempt a key
		// registered a moment before (the simulator: seeds 5367 and 5548
		// of 10,000).
		n.sendAll(n.members, Message{Type: MsgAnnounce, Joiner: m.From, Epoch: n.epoch})
		sp.phase, sp.since, sp.lastSend = spAnnounce, n.now, n.now
		n.tickSponsor()
	case MsgJoinStateAck:
		if sp.phase == spState && m.From == sp.joiner {
			sp.phase, sp.since = spHeartbeat, n.now
			n.tickSponsor()
		}
	case MsgAnnounceAck:
		if (sp.phase == spAnnounce || sp.phase == spState || sp.phase == spHeartbeat) && m.Joiner == sp.joiner && n.members.Has(m.From) {
			sp.heard = sp.heard.Add(m.From)
			n.tickSponsor()
		}
	case MsgJoinCommitAck:
		if sp.phase == spCommit && m.Epoch == sp.epoch {
			sp.acks = sp.acks.Add(m.From)
			n.tickSponsor()
		}
	case MsgWelcomeAck:
		if sp.phase == spWelcome && m.From == sp.joiner {
			n.event(Event{Kind: EventNodeUp, Node: sp.joiner, Epoch: n.epoch})
			n.sponsorDone()
		}
	case MsgJoinAbort:
		if sp.phase != spIdle && m.From == sp.joiner {
			n.abortSponsoring("joiner aborted: " + m.Reason)
		}
	}
}

func (n *Node) mayAck(joiner NodeID) bool { return n.cfg.MayAck == nil || n.cfg.MayAck(joiner) }

func (n *Node) sponsor(m Message) {
	sp := &n.sp
	sp.counter++
	sp.phase, sp.joiner, sp.inc, sp.jnonce = spChallenge, m.From, m.Incarnation, m.Nonce
	sp.heard = 0
	n.announced[m.From] = max(n.now, 1) // Joining: the sponsor spares it too, across attempts
	sp.nonce = n.cfg.Incarnation<<20 ^ sp.counter
	sp.since, sp.lastSend = n.now, n.now
	sp.waiting = sp.waiting.Remove(m.From)
	n.send(Message{Type: MsgChallenge, To: m.From, Nonce: m.Nonce, Nonce2: sp.nonce,
		Proof: n.proof("wolfpack join sponsor", n.cfg.Self, m.From, m.Incarnation, m.Nonce, sp.nonce)})
}

func (n *Node) sponsorDone() {
	n.sp.phase = spIdle
	n.sp.joiner = 0
	// Serve the next queued joiner, lowest id first.
	for n.sp.waiting != 0 && n.rg.stage == StageStabilized && n.Member() && n.members.Min() == n.cfg.Self {
		id := n.sp.waiting.Min()
		n.sp.waiting = n.sp.waiting.Remove(id)
		if !n.members.Has(id) && n.alive.Has(id) {
			n.sponsor(n.sp.queue[id])
			return
		}
	}
}

// abortSponsoring ends a join in progress: before the commit nothing is
// left to undo but telling the joiner; after it, the regroup that follows
// (or has begun) takes the joiner out unless it completed.
func (n *Node) abortSponsoring(reason string) {
	sp := &n.sp
	if sp.phase == spIdle {
		return
	}
	// Committed at some members but not welcomed: the joiner has not
	// installed, so the regroup that follows takes it out. After the
	// Welcome went out it may have (only its WelcomeAck is late or
	// lost): every member counts it in, and marking it restarted here
	// would make the sponsor alone stop hearing it, so that a regroup led
	// by the joiner (the lowest id after a rolling restart) pruned the
	// sponsor (the QEMU fault matrix). A joiner that never installed asks
	// to join again, which regroups it out, or goes silent.
	if sp.phase == spCommit {
		n.restarted = n.restarted.Add(sp.joiner)
	}
	n.send(Message{Type: MsgJoinAbort, To: sp.joiner, Joiner: sp.joiner, Reason: reason})
	n.log.Debug("join aborted", "joiner", sp.joiner, "reason", reason)
	n.sp.phase, n.sp.joiner = spIdle, 0
}

func (n *Node) tickSponsor() {
	sp := &n.sp
	if sp.phase == spIdle {
		if sp.waiting != 0 && n.rg.stage == StageStabilized {
			n.sponsorDone()
		}
		return
	}
	if n.waitOver(n.now-sp.since, n.cfg.JoinTicks, n.joinSpan(), NodeSet(0).Add(sp.joiner)) {
		n.abortSponsoring("sponsor timed out")
		if n.rg.stage == StageStabilized && n.restarted != 0 {
			n.beginRegroup()
		}
		return
	}
	resend := n.now-sp.lastSend >= int64(n.cfg.ResendTicks)
	if resend {
		sp.lastSend = n.now
	}
	switch sp.phase {
	case spAnnounce:
		if missing := n.members.Remove(n.cfg.Self) &^ sp.heard; missing != 0 {
			if resend {
				n.sendAll(missing, Message{Type: MsgAnnounce, Joiner: sp.joiner, Epoch: n.epoch})
			}
			return
		}
		if !n.mayAck(sp.joiner) {
			return // this node's own PREEMPT of the joiner's key is in flight
		}
		// The cluster database is not in the join: the locker sends it on
		// the streams once the joiner is a member (docs/gup.md, "Joining").
		sp.phase, sp.lastSend = spState, n.now
		sp.queue[0] = Message{Type: MsgJoinState, To: sp.joiner, Epoch: n.epoch, Members: n.members}
		n.send(sp.queue[0])
	case spState:
		if resend {
			n.send(sp.queue[0])
		}
	case spHeartbeat:
		// Wait for the joiner's first heartbeat, and for every other
		// member to say it hears the joiner too, before committing.
		if !n.alive.Has(sp.joiner) {
			return
		}
		if missing := n.members.Remove(n.cfg.Self) &^ sp.heard; missing != 0 {
			if resend {
				n.sendAll(missing, Message{Type: MsgAnnounce, Joiner: sp.joiner, Epoch: n.epoch})
			}
			return
		}
		sp.epoch = MakeEpoch(n.epoch.Gen()+1, n.cfg.Self)
		sp.members = n.members.Add(sp.joiner)
		sp.phase, sp.since, sp.lastSend = spCommit, n.now, n.now
		sp.acks = NodeSet(0).Add(n.cfg.Self).Add(sp.joiner)
		joiner := sp.joiner
		n.memberInc[joiner] = sp.inc
		n.install(sp.epoch, sp.members, fmt.Sprintf("node %d joined through this sponsor", joiner))
		n.sendAll(sp.members.Remove(joiner), Message{Type: MsgJoinCommit, Joiner: joiner, Incarnation: sp.inc, Epoch: sp.epoch, Members: sp.members})
		n.tickSponsor()
	case spCommit:
		if sp.members&^sp.acks == 0 {
			sp.phase, sp.since, sp.lastSend = spWelcome, n.now, n.now
			n.send(Message{Type: MsgWelcome, To: sp.joiner, Epoch: sp.epoch, Members: sp.members, Round: n.rg.round})
			return
		}
		if resend {
			n.sendAll(sp.members&^sp.acks, Message{Type: MsgJoinCommit, Joiner: sp.joiner, Incarnation: sp.inc, Epoch: sp.epoch, Members: sp.members})
		}
	case spWelcome:
		if resend {
			n.send(Message{Type: MsgWelcome, To: sp.joiner, Epoch: sp.epoch, Members: sp.members, Round: n.rg.round})
		}
	}
}
