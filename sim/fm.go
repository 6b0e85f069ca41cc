package sim

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/core"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// The failover manager's workload. Each node's core runs the failover
// manager (resources.Manager) on the node's own database; a simulated
// resmon per node executes its commands with random delays, holds the
// resources under the lease the node's disk heartbeat renews, and reports
// their states back. A few groups are created at the start by a setup
// transaction through a random node; during the faults, resources fail,
// resmons crash and an administrator moves groups. The checks use the
// truth of the simulated resmons and of the committed database:
//
//   - no resource is held (online, or on its way on or off) on two nodes at
//     the same virtual instant, and no group has resources held on two
//     nodes at once (after every change of a resmon's state);
//   - an orphaned group is claimed by the node the database and the
//     claimer's membership choose (every survivor computes the same owner);
//   - restarts in place stay within restart_threshold in restart_period_s,
//     pushes within failover_threshold in failover_period_s, a group failed
//     for its failover threshold had that many pushes, and a failback (a
//     move that is not an administrator's and not a push) happens only
//     when the group's policy allows it, to a more preferred node;
//   - at the end, once every fault is healed, every group that wants to be
//     online and may run on a live node is online on exactly one node, the
//     database's owner (or failed there, past its thresholds).

// Virtual wall clock: Unix ms at virtual time 0; the local hour of day
// runs fast (Config.HourLen a virtual hour) so failback windows open and
// close within a run.
const wallBase = 1_767_225_600_000 // 2026-01-01T00:00:00Z

const rmPendingTimeout = 2 * Second

func (s *Sim) wallMs() int64 { return wallBase + s.now/Millisecond }

func (s *Sim) hour() int { return int((int64(s.fm.hour0) + s.now/s.fm.hourLen) % 24) }

// FMStats counts what the failover manager's workload did in a run.
type FMStats struct {
	Groups, Resources                        int
	Failovers, LeaseWaits, Pushes, Failbacks int
	AdminMoves, Restarts                     int
	ResourceFailures, ResmonCrashes          int
	HardFailures, FatalFailures              int // of ResourceFailures
	Orphans                                  int // resources that outlived a crashed resmon
	WatchdogResets                           int // machines reset because no resmon enforced the lease on orphans
	// At the end: groups online, failed past their thresholds, and with
	// no live possible owner.
	Online, Failed, NoOwner int
}

func (a *FMStats) add(b FMStats) {
	a.Groups += b.Groups
	a.Resources += b.Resources
	a.Failovers += b.Failovers
	a.LeaseWaits += b.LeaseWaits
	a.Pushes += b.Pushes
	a.Failbacks += b.Failbacks
	a.AdminMoves += b.AdminMoves
	a.Restarts += b.Restarts
	a.ResourceFailures += b.ResourceFailures
	a.ResmonCrashes += b.ResmonCrashes
	a.HardFailures += b.HardFailures
	a.FatalFailures += b.FatalFailures
	a.Orphans += b.Orphans
	a.WatchdogResets += b.WatchdogResets
	a.Online += b.Online
	a.Failed += b.Failed
	a.NoOwner += b.NoOwner
}

func (a FMStats) String() string {
	return fmt.Sprintf("%d groups, %d resources; %d failovers after an owner was lost (%d lease waits), %d pushes, %d failbacks, "+
		"%d administrator moves, %d restarts in place; %d resource failures (%d hard, %d fatal) and %d resmon crashes (%d resources outlived theirs; %d watchdog resets) injected; "+
		"at the end %d online, %d failed past a threshold or fatally, %d without a live possible owner",
		a.Groups, a.Resources, a.Failovers, a.LeaseWaits, a.Pushes, a.Failbacks, a.AdminMoves, a.Restarts,
		a.ResourceFailures, a.HardFailures, a.FatalFailures, a.ResmonCrashes, a.Orphans, a.WatchdogResets, a.Online, a.Failed, a.NoOwner)
}

// GroupSpec is a group of the workload and its resources, in the order
// they are created.
type GroupSpec struct {
	Name      string
	Props     map[string]db.Value
	Resources []ResourceSpec
}

// ResourceSpec is one resource of a GroupSpec.
type ResourceSpec struct {
	Name  string
	Props map[string]db.Value
}

type fmState struct {
	on      bool
	groups  []GroupSpec
	resGrp  map[string]string // resource -> group
	hour0   int
	hourLen int64
	// truth is the committed database: every update as first applied
	// anywhere.
	truth *db.DB
	// holders: the nodes whose resmon holds each resource.
	holders map[string]nodes.Set
	// epoch counts each group's ownership changes (owner, owner_inc) and
	// moves (moving_to set): a restart in place is within one epoch.
	epoch     map[string]uint64
	admin     map[string]bool    // administrators' moves (transaction bytes)
	pushes    map[string][]int64 // group -> wall ms of each committed push
	failbacks map[string][]fbRec // group -> failbacks decided, not yet seen committed
	fails     map[failKey]failRec
	restarts  map[restartKey][]int64
	reqs      map[opKey]string // setup and admin requests: what
	setupDone bool
	setupAt   int64          // an attempt in flight since (-1: none)
	rt        []groupRuntime // each group's runtime properties, as committed
	stats     FMStats
	// leaseWaits: every EventLeaseWait (node, group, time, ticks), for
	// the lease-cost scenario.
	leaseWaits []leaseWait
}

type leaseWait struct {
	node  nodes.ID
	group string
	at    int64
	ticks int64
}

type fbRec struct {
	to string
	at int64
}

type failKey struct {
	node     nodes.ID
	resource string
}

type failRec struct {
	at    int64
	epoch uint64
	class resources.FailureClass
}

type restartKey struct {
	node     nodes.ID
	resource string
	epoch    uint64
}

// rmRes is one resource in a simulated resmon.
type rmRes struct {
	state   resources.State
	op      uint64 // bumped by every change: a timer of an older op is stale
	timeout int64  // pending timeout (virtual)
}

// resmon is one node's simulated resource monitor: a separate process
// that goes on while its node is frozen, and dies with the machine.
type resmon struct {
	gen      uint64 // bumped when it dies or is replaced: its timers stop
	up       bool
	res      map[string]*rmRes
	deadline int64 // the lease runs out at this virtual time (0: no lease)
	chanAt   int64 // the command channel's last delivery (ordered)
	// slow and stuck: probabilities that an online is slow and an
	// offline stuck (per seed).
	slow, stuck float64
}

func (rm *resmon) get(name string) *rmRes {
	x := rm.res[name]
	if x == nil {
		x = &rmRes{timeout: rmPendingTimeout}
		rm.res[name] = x
	}
	return x
}

func held(st resources.State) bool { return st != resources.Offline && st != resources.Failed }

// ---- setup ----

// genGroups draws the seed's groups: 1..max groups of 1..3 resources (an
// address, a name and an application depending on it), random preferred
// owners, possible owners, failback policies and thresholds.
func (s *Sim) genGroups(max int) []GroupSpec {
	k := s.cfg.Nodes
	name := func(id int) string { return fmt.Sprintf("n%d", id) }
	randNodes := func(lo, hi int) []string {
		perm := s.rng.Perm(k)
		n := lo + s.rng.IntN(hi-lo+1)
		out := make([]string, 0, n)
		for _, i := range perm[:min(n, k)] {
			out = append(out, name(i+1))
		}
		return out
	}
	var gs []GroupSpec
	for gi := range 1 + s.rng.IntN(max) {
		g := GroupSpec{Name: fmt.Sprintf("g%d", gi), Props: map[string]db.Value{}}
		if pref := randNodes(0, min(k, 4)); len(pref) > 0 {
			g.Props["preferred_owners"] = db.ListValue(pref...)
		}
		switch s.rng.IntN(3) {
		case 1:
			g.Props["failback"] = db.StringValue("immediate")
		case 2:
			g.Props["failback"] = db.StringValue("window")
			a := s.rng.IntN(24)
			b := (a + 1 + s.rng.IntN(23)) % 24
			g.Props["failback_window_start"] = db.IntValue(int64(a))
			g.Props["failback_window_end"] = db.IntValue(int64(b))
		}
		if s.rng.IntN(2) == 0 {
			g.Props["failover_threshold"] = db.IntValue(int64(1 + s.rng.IntN(10)))
			g.Props["failover_period_s"] = db.IntValue(int64(1 + s.rng.IntN(20)))
		}
		n := 1 + s.rng.IntN(3)
		ip := g.Name + "-ip"
		add := func(r, ty string, props map[string]db.Value) {
			props["group"] = db.StringValue(g.Name)
			props["type"] = db.StringValue(ty)
			props["pending_timeout_ms"] = db.IntValue(rmPendingTimeout / Millisecond)
			if s.rng.IntN(2) == 0 {
				props["restart_threshold"] = db.IntValue(int64(s.rng.IntN(4)))
				props["restart_period_s"] = db.IntValue(int64(1 + s.rng.IntN(10)))
			}
			switch s.rng.IntN(10) {
			case 0:
				props["restart_action"] = db.StringValue("restart")
			case 1:
				props["restart_action"] = db.StringValue("none")
			}
			if s.rng.IntN(5) == 0 {
				props["possible_owners"] = db.ListValue(randNodes(1, k)...)
			}
			g.Resources = append(g.Resources, ResourceSpec{Name: r, Props: props})
		}
		if n >= 2 {
			add(ip, "ip_address", map[string]db.Value{"address": db.StringValue(fmt.Sprintf("10.0.%d.10", gi)), "interface": db.StringValue("eth0")})
		}
		if n == 3 {
			add(g.Name+"-name", "network_name", map[string]db.Value{"name": db.StringValue(g.Name),
				"depends_on": db.ListValue(ip)})
		}
		app := map[string]db.Value{"command": db.StringValue("/usr/bin/server " + g.Name)}
		if n >= 2 && s.rng.IntN(4) > 0 {
			app["depends_on"] = db.ListValue(ip)
		}
		add(g.Name+"-app", "generic_application", app)
		gs = append(gs, g)
	}
	return gs
}

// startGroups creates groups through a random member, retrying until
// the setup is committed, as the GUP clients' setup does.
func (s *Sim) startGroups(groups []GroupSpec) {
	f := &s.fm
	f.on = true
	f.groups = groups
	f.rt = make([]groupRuntime, len(groups))
	for _, g := range groups {
		f.stats.Groups++
		for _, r := range g.Resources {
			f.resGrp[r.Name] = g.Name
			f.stats.Resources++
		}
	}
	f.setupAt = -1
	var try func()
	try = func() {
		if f.setupDone = s.groupsCreated(); f.setupDone {
			s.tracef(0, "groups created")
			return
		}
		s.after(20*Millisecond, try)
		if f.setupAt >= 0 && s.now-f.setupAt < Second {
			return
		}
		n := s.nodes[s.randNode()]
		if !n.running || n.frozen || !n.core.Member() {
			return
		}
		// The built-in types, for a database that does not know them
		// (its outcome does not matter), then the groups.
		var types db.Tx
		for _, ty := range []string{"generic_application", "ip_address", "network_name"} {
			types.Ops = append(types.Ops, db.Create(db.KindResourceType, ty, map[string]db.Value{"agent": db.StringValue(ty)}))
		}
		if _, err := n.core.Propose(mustMarshal(types)); err != nil {
			return
		}
		// An event log that fits the simulator's small checkpoint area
		// (docs/events.md).
		logSize := db.Tx{Ops: []db.Op{db.Create(db.KindCluster, db.ClusterObject, map[string]db.Value{"event_log_size": db.IntValue(simEventLogSize)})}}
		if _, err := n.core.Propose(mustMarshal(logSize)); err != nil {
			return
		}
		req, err := n.core.Propose(mustMarshal(s.setupGroupsTx(n)))
		if err != nil {
			return
		}
		f.reqs[opKey{n.id, n.inc, req}] = "setup"
		f.setupAt = s.now
		s.tracef(n.id, "propose the groups' setup")
		s.flush(n)
	}
	s.after(150*Millisecond, try)
}

// simEventLogSize is the event log's size in the simulator.
const simEventLogSize = 4

func (s *Sim) groupsCreated() bool {
	for _, g := range s.fm.groups {
		if _, ok := s.fm.truth.Get(db.KindGroup, g.Name); !ok {
			return false
		}
	}
	return true
}

// setupGroupsTx creates the node objects node n's database lacks (the
// preferred owners must exist), the groups and their resources.
func (s *Sim) setupGroupsTx(n *node) db.Tx {
	var tx db.Tx
	for id := 1; id <= s.cfg.Nodes; id++ {
		name := fmt.Sprintf("n%d", id)
		if _, ok := n.state.db.Get(db.KindNode, name); !ok {
			tx.Ops = append(tx.Ops, db.Create(db.KindNode, name, map[string]db.Value{"id": db.IntValue(int64(id))}))
		}
	}
	for _, g := range s.fm.groups {
		tx.Ops = append(tx.Ops, db.Create(db.KindGroup, g.Name, g.Props))
	}
	for _, g := range s.fm.groups {
		for _, r := range g.Resources {
			tx.Ops = append(tx.Ops, db.Create(db.KindResource, r.Name, r.Props))
		}
	}
	return tx
}

func mustMarshal(tx db.Tx) []byte {
	b, err := tx.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// fmCompletion takes a completion of a setup or administrator's request.
func (s *Sim) fmCompletion(n *node, req uint64, errText string) bool {
	k := opKey{n.id, n.inc, req}
	what, ok := s.fm.reqs[k]
	if !ok {
		return false
	}
	delete(s.fm.reqs, k)
	if what == "setup" {
		s.fm.setupAt = -1 // committed or refused: the next try looks
		if errText != "" {
			s.tracef(n.id, "groups' setup refused: %s", errText)
		}
	}
	return true
}

// ---- the fault phase ----

// scheduleFMFaults draws the failover manager's faults between
// FaultStart and FaultEnd: resource failures, resmon crashes and
// administrators' moves.
func (s *Sim) scheduleFMFaults() []string {
	var plan []string
	for t := s.cfg.FaultStart + s.randDur(0, 300*Millisecond); t < s.cfg.FaultEnd; t += s.randDur(100*Millisecond, 700*Millisecond) {
		kind := s.rng.IntN(100)
		var desc string
		var do func()
		switch {
		case kind < 70:
			gi := s.rng.IntN(len(s.fm.groups))
			pick := s.rng.Uint64()
			desc = fmt.Sprintf("a resource of group %s fails", s.fm.groups[gi].Name)
			do = func() { s.failResource(gi, pick) }
		case kind < 85:
			a := s.randNode()
			d := s.randDur(100*Millisecond, 500*Millisecond)
			orphans := s.rng.IntN(2) == 0
			desc = fmt.Sprintf("resmon of node %d crashes (its resources survive: %v), restarts after %s", a, orphans, fmtDur(d))
			do = func() { s.crashResmon(s.nodes[a], d, orphans) }
		default:
			g := s.fm.groups[s.rng.IntN(len(s.fm.groups))].Name
			to := s.randNode()
			via := s.randNode()
			desc = fmt.Sprintf("administrator moves group %s to node %d (through node %d)", g, to, via)
			do = func() { s.adminMove(g, to, via) }
		}
		at := t
		plan = append(plan, fmt.Sprintf("%s: %s", fmtDur(at), desc))
		s.after(at, func() { s.tracef(0, "FAULT %s", desc); do(); s.dirty = true })
	}
	return plan
}

// failResource fails a resource of group gi that some resmon holds
// online: resmon's check found it dead, terminates it, reports Failed.
func (s *Sim) failResource(gi int, pick uint64) {
	type cand struct {
		n *node
		r string
	}
	var cs []cand
	for _, n := range s.nodes[1:] {
		for _, r := range s.fm.groups[gi].Resources {
			if x := n.rm.res[r.Name]; x != nil && n.rm.up && x.state == resources.Online {
				cs = append(cs, cand{n, r.Name})
			}
		}
	}
	if len(cs) == 0 {
		return
	}
	c := cs[pick%uint64(len(cs))]
	// One failure in ten is hard (it cannot run on this node), one in
	// twenty fatal (nowhere): neither may be restarted in place.
	class := resources.FailSoft
	switch (pick >> 32) % 20 {
	case 0, 1:
		class = resources.FailHard
		s.fm.stats.HardFailures++
	case 2:
		class = resources.FailFatal
		s.fm.stats.FatalFailures++
	}
	s.tracef(c.n.id, "resmon: %s fails (%v)", c.r, class)
	s.fm.stats.ResourceFailures++
	s.rmSet(c.n, c.r, resources.Offline)
	s.rmReport(c.n, resources.Status{Resource: c.r, State: resources.Failed, Reason: "check failed (simulated " + class.String() + ")", Class: class})
}

// crashResmon kills node n's resmon. Half the time its resources die
// with it (a generic application's process dies with its parent); else
// they outlive it (an address, a systemd unit, an OCF agent's daemon)
// until the next resmon terminates them: it finds them in its
// predecessor's records. The node learns of the crash at once, and a new
// resmon starts after d.
func (s *Sim) crashResmon(n *node, d int64, orphans bool) {
	if !n.running || !n.rm.up {
		return
	}
	s.fm.stats.ResmonCrashes++
	if orphans {
		n.rm.gen++ // its timers stop; what it held stays held
		dead, deadline := n.rm.gen, n.rm.deadline
		n.rm.deadline = 0
		for _, name := range sortedKeys(n.rm.res) {
			if x := n.rm.res[name]; held(x.state) {
				s.fm.stats.Orphans++
				s.rmSet(n, name, resources.Online)
			}
		}
		// Nothing enforces the lease on the orphans now but the
		// machine's watchdog, which the dead resmon petted only while
		// its lease was valid: if no new resmon runs (its clusterd is
		// frozen or gone) when that lease ends, the machine resets (an
		// ideal watchdog: docs/resources.md).
		s.after(max(deadline-s.now, 0), func() {
			if n.rm.gen != dead || n.rm.up {
				return
			}
			for _, x := range n.rm.res {
				if held(x.state) {
					s.fm.stats.WatchdogResets++
					s.tracef(n.id, "watchdog: resmon dead, its lease over, orphans held: the machine resets")
					if n.running {
						s.Crash(n.id, s.randDur(200*Millisecond, Second))
					} else {
						s.killResmon(n)
					}
					return
				}
			}
		})
	} else {
		s.killResmon(n)
	}
	n.rm.up = false
	s.toNode(n, func(c *core.Node) { c.ResmonDown("killed (simulated)") })
	gen := n.rm.gen
	s.after(d, func() { s.restartResmon(n, gen) })
}

// restartResmon has clusterd start node n's new resmon, unless gen's was
// replaced meanwhile (a boot starts a fresh one); not while clusterd's
// process is frozen or gone. Before its hello the new resmon terminates
// what its predecessor recorded, as the real one does.
func (s *Sim) restartResmon(n *node, gen uint64) {
	if n.rm.gen != gen || n.rm.up || !n.running {
		return
	}
	if n.frozen {
		s.after(Millisecond, func() { s.restartResmon(n, gen) })
		return
	}
	for _, name := range sortedKeys(n.rm.res) {
		if held(n.rm.res[name].state) {
			s.tracef(n.id, "resmon: the new resmon terminates %s, its predecessor's", name)
			s.rmSet(n, name, resources.Offline)
		}
	}
	n.rm.gen++
	n.rm.up = true
	// The new resmon gets the node's current lease when it connects.
	n.rm.deadline = 0
	if n.lease > 0 {
		s.rmLease(n, n.lease)
	}
	s.tracef(n.id, "resmon restarted")
	s.toNode(n, func(c *core.Node) { c.ResmonUp() })
}

// killResmon takes everything resmon holds offline at once, without a
// report, and stops its timers.
func (s *Sim) killResmon(n *node) {
	n.rm.gen++
	for _, name := range sortedKeys(n.rm.res) {
		if held(n.rm.res[name].state) {
			s.rmSet(n, name, resources.Offline)
		}
	}
	n.rm.res = map[string]*rmRes{}
	n.rm.deadline = 0
}

func (s *Sim) adminMove(g string, to, via nodes.ID) {
	n := s.nodes[via]
	if !n.running || n.frozen || !n.core.Member() {
		return
	}
	b := mustMarshal(db.Tx{Ops: []db.Op{db.Set(db.KindGroup, g, map[string]db.Value{"moving_to": db.StringValue(fmt.Sprintf("n%d", to))})}})
	req, err := n.core.Propose(b)
	if err != nil {
		return
	}
	s.fm.admin[string(b)] = true
	s.fm.reqs[opKey{n.id, n.inc, req}] = "admin"
	s.flush(n)
}

// ---- resmon ----

// newResmon replaces node n's resmon with a fresh one (a boot): whatever
// the previous one held goes with it.
func (s *Sim) newResmon(n *node) {
	if n.rm == nil {
		n.rm = &resmon{res: map[string]*rmRes{}}
		n.rm.slow = []float64{0, 0.02, 0.1}[s.rng.IntN(3)]
		n.rm.stuck = []float64{0, 0.02, 0.1}[s.rng.IntN(3)]
	}
	s.killResmon(n)
	n.rm.up = true
	n.lease = 0
	n.stQ = nil
}

// toResmon carries fn to node n's resmon over the local channel:
// lossless, ordered, a small delay; nothing reaches a dead resmon.
func (s *Sim) toResmon(n *node, fn func()) {
	rm := n.rm
	at := max(rm.chanAt, s.now+20*Microsecond+s.rng.Int64N(200*Microsecond))
	rm.chanAt = at
	gen := rm.gen
	s.after(at-s.now, func() {
		if rm.gen == gen && rm.up {
			fn()
		}
	})
}

// toNode carries fn (a report, ResmonDown, ResmonUp) to node n's core:
// ordered, held while the node is frozen, dropped if its process ends.
func (s *Sim) toNode(n *node, fn func(*core.Node)) {
	inc := n.inc
	at := max(n.stAt, s.now+20*Microsecond+s.rng.Int64N(200*Microsecond))
	n.stAt = at
	s.after(at-s.now, func() {
		if n.inc != inc || !n.running {
			return
		}
		n.stQ = append(n.stQ, fn)
		s.drainToNode(n)
	})
}

func (s *Sim) drainToNode(n *node) {
	for len(n.stQ) > 0 && n.running && !n.frozen {
		fn := n.stQ[0]
		n.stQ = n.stQ[1:]
		fn(n.core)
		s.flush(n)
	}
	if len(n.stQ) > 0 && n.running && !n.stPoll {
		n.stPoll = true
		inc := n.inc
		s.after(Millisecond, func() {
			if n.inc == inc {
				n.stPoll = false
				s.drainToNode(n)
			}
		})
	}
}

func (s *Sim) rmReport(n *node, st resources.Status) {
	s.toNode(n, func(c *core.Node) { c.StepResource(st) })
}

// rmLease sets resmon's deadline (virtual time) and its timer.
func (s *Sim) rmLease(n *node, deadline int64) {
	rm := n.rm
	rm.deadline = deadline
	gen := rm.gen
	s.after(deadline-s.now, func() {
		if rm.gen != gen || rm.deadline != deadline || !rm.up {
			return
		}
		s.tracef(n.id, "resmon: lease ran out")
		s.rmTerminateAll(n, "lease expired")
		rm.deadline = 0
	})
}

// rmTerminateAll terminates everything resmon holds: an online resource
// is reported Failed (why), one going offline Offline.
func (s *Sim) rmTerminateAll(n *node, why string) {
	for _, name := range sortedKeys(n.rm.res) {
		x := n.rm.res[name]
		if !held(x.state) {
			continue
		}
		prev := x.state
		s.rmSet(n, name, resources.Offline)
		if prev == resources.OfflinePending || why == "" {
			s.rmReport(n, resources.Status{Resource: name, State: resources.Offline})
		} else {
			s.rmReport(n, resources.Status{Resource: name, State: resources.Failed, Reason: why})
		}
	}
}

// leaseFromNode takes a Ready.Lease: From is a tick of the node's
// clock, converted with the virtual time at which the node processed it.
func (s *Sim) leaseFromNode(n *node, l core.Lease) {
	if l.Revoke {
		n.lease = 0
		s.toResmon(n, func() {
			s.tracef(n.id, "resmon: lease revoked")
			n.rm.deadline = 0
			s.rmTerminateAll(n, "")
		})
		return
	}
	if l.From < 0 || l.From >= int64(len(n.tickAt)) {
		s.violate("node %d: lease from tick %d, which it has not processed (now tick %d)", n.id, l.From, len(n.tickAt)-1)
		return
	}
	deadline := n.tickAt[l.From] + int64(l.Ticks)*s.cfg.Tick
	n.lease = deadline
	s.toResmon(n, func() { s.rmLease(n, deadline) })
}

// rmCommand executes one of the failover manager's commands.
func (s *Sim) rmCommand(n *node, c resources.Command) {
	rm := n.rm
	x := rm.get(c.Resource)
	switch c.Op {
	case resources.CmdOnline:
		if c.PendingTimeoutMs > 0 {
			x.timeout = c.PendingTimeoutMs * Millisecond
		}
		switch x.state {
		case resources.Online:
			s.rmReport(n, resources.Status{Resource: c.Resource, State: resources.Online})
			return
		case resources.OnlinePending:
			return
		case resources.OfflinePending:
			s.rmSet(n, c.Resource, resources.Offline)
		}
		if rm.deadline == 0 || s.now >= rm.deadline {
			s.rmReport(n, resources.Status{Resource: c.Resource, State: resources.Failed, Reason: "no lease"})
			return
		}
		s.noteOnline(n, c.Resource)
		s.rmSet(n, c.Resource, resources.OnlinePending)
		op := x.op
		d := s.randDur(Millisecond, 50*Millisecond)
		if s.rng.Float64() < rm.slow {
			d = s.randDur(50*Millisecond, x.timeout+x.timeout/4)
		}
		if d <= x.timeout {
			s.rmAfter(n, x, op, d, func() {
				s.rmSet(n, c.Resource, resources.Online)
				s.rmReport(n, resources.Status{Resource: c.Resource, State: resources.Online})
			})
		} else {
			s.rmAfter(n, x, op, x.timeout, func() {
				s.rmSet(n, c.Resource, resources.Offline)
				s.rmReport(n, resources.Status{Resource: c.Resource, State: resources.Failed, Reason: "online: pending timeout"})
			})
		}
	case resources.CmdOffline:
		switch x.state {
		case resources.Offline, resources.Failed:
			s.rmReport(n, resources.Status{Resource: c.Resource, State: resources.Offline})
			return
		case resources.OfflinePending:
			return
		}
		s.rmSet(n, c.Resource, resources.OfflinePending)
		d := s.randDur(Millisecond, 50*Millisecond)
		if s.rng.Float64() < rm.stuck {
			d = x.timeout // stuck: terminated at the pending timeout
		}
		s.rmAfter(n, x, x.op, d, func() {
			s.rmSet(n, c.Resource, resources.Offline)
			s.rmReport(n, resources.Status{Resource: c.Resource, State: resources.Offline})
		})
	case resources.CmdTerminate:
		s.rmSet(n, c.Resource, resources.Offline)
		s.rmReport(n, resources.Status{Resource: c.Resource, State: resources.Offline})
	}
}

// rmAfter runs fn after d unless resource x changed meanwhile or resmon
// died.
func (s *Sim) rmAfter(n *node, x *rmRes, op uint64, d int64, fn func()) {
	gen := n.rm.gen
	s.after(d, func() {
		if n.rm.gen == gen && x.op == op {
			fn()
		}
	})
}

// rmSet changes a resource's state in node n's resmon and checks that
// no resource, and no group, is held on two nodes.
func (s *Sim) rmSet(n *node, name string, st resources.State) {
	x := n.rm.get(name)
	x.op++
	if x.state == st {
		return
	}
	x.state = st
	s.tracef(n.id, "resmon: %s %v", name, st)
	h := s.fm.holders[name]
	if held(st) {
		h = h.Add(n.id)
	} else {
		h = h.Remove(n.id)
	}
	s.fm.holders[name] = h
	if !held(st) {
		return
	}
	if h.Len() > 1 {
		s.violate("resource %s is held on nodes %v at once:\n%s", name, h, s.describeResource(name))
		return
	}
	g := s.fm.resGrp[name]
	var gh nodes.Set
	for _, r := range s.groupSpec(g).Resources {
		gh |= s.fm.holders[r.Name]
	}
	if gh.Len() > 1 {
		s.violate("group %s has resources held on nodes %v at once:\n%s", g, gh, s.describeGroup(g))
	}
}

func (s *Sim) groupSpec(name string) *GroupSpec {
	for i := range s.fm.groups {
		if s.fm.groups[i].Name == name {
			return &s.fm.groups[i]
		}
	}
	return &GroupSpec{}
}

// ---- what the nodes do ----

// fmReady takes the failover manager's part of node n's Ready: the lease
// and the commands go to resmon, in order; the events are checked.
func (s *Sim) fmReady(n *node, rd *core.Ready) {
	if rd.Lease != nil {
		s.tracef(n.id, "lease %+v", *rd.Lease)
		s.leaseFromNode(n, *rd.Lease)
	}
	for _, c := range rd.Resources {
		s.tracef(n.id, "resmon command: %v", c)
		s.toResmon(n, func() { s.rmCommand(n, c) })
	}
	for _, e := range rd.Failover {
		s.tracef(n.id, "failover: %v", e)
		s.fmEvent(n, e)
	}
	_, n.fmMembers = n.core.Membership()
}

func (s *Sim) fmEvent(n *node, e resources.Event) {
	f := &s.fm
	if !f.on {
		return
	}
	switch e.Kind {
	case resources.EventClaim:
		if e.Node != n.id {
			if e.Node != 0 {
				f.stats.Failovers++
			}
			s.checkChoice(n, e.Group)
		}
	case resources.EventLeaseWait:
		f.stats.LeaseWaits++
		f.leaseWaits = append(f.leaseWaits, leaseWait{n.id, e.Group, s.now, e.Ticks})
	case resources.EventResourceFailed:
		class := resources.FailSoft
		for _, c := range []resources.FailureClass{resources.FailHard, resources.FailFatal} {
			if strings.HasSuffix(e.Reason, "(simulated "+c.String()+")") {
				class = c
			}
		}
		f.fails[failKey{n.id, e.Resource}] = failRec{at: s.now, epoch: f.epoch[e.Group], class: class}
	case resources.EventFailback:
		s.checkFailback(n, e)
	case resources.EventGroupFailed:
		if strings.Contains(e.Reason, "failover threshold") {
			s.checkFailedForThreshold(n, e.Group)
		}
	}
}

// simChoose is the owner the database and a membership choose for group
// g, computed here from the rule (docs/resources.md): the preferred
// owners in order, then every node by id; the first that is a member,
// not paused, and a possible owner of every resource.
func simChoose(m *resources.Model, g *resources.Group, members nodes.Set) nodes.ID {
	possible := func(id nodes.ID) bool {
		name, ok := m.NodeName[id]
		if !ok || !members.Has(id) || m.Paused.Has(id) {
			return false
		}
		for _, r := range g.Resources {
			if len(r.PossibleOwners) > 0 && !slices.Contains(r.PossibleOwners, name) {
				return false
			}
		}
		return true
	}
	for _, p := range g.Preferred {
		if id, ok := m.NodeID[p]; ok && possible(id) {
			return id
		}
	}
	for id := nodes.ID(1); id <= nodes.Max; id++ {
		if possible(id) {
			return id
		}
	}
	return 0
}

// checkChoice: a node that claims an orphaned group is the one the
// database and its membership choose (so every survivor agrees).
func (s *Sim) checkChoice(n *node, group string) {
	m := n.core.Failover().Model()
	g := m.Group(group)
	if g == nil {
		return
	}
	_, now := n.core.Membership()
	for _, members := range []nodes.Set{now, n.fmMembers} {
		if simChoose(m, g, members) == n.id {
			return
		}
	}
	s.violate("choice: node %d claimed group %s (preferred %v), but the database and its membership %v choose node %d",
		n.id, group, g.Preferred, now, simChoose(m, g, now))
}

func inWindow(h, start, end int) bool {
	if start <= end {
		return h >= start && h < end
	}
	return h >= start || h < end
}

// checkFailback: a failback is allowed by the group's policy at the
// node's local hour, and goes to a more preferred node.
func (s *Sim) checkFailback(n *node, e resources.Event) {
	s.fm.stats.Failbacks++
	g := n.core.Failover().Model().Group(e.Group)
	if g == nil {
		return
	}
	o, _ := n.state.db.Get(db.KindGroup, e.Group)
	p := resources.Props(o.Props)
	to := fmt.Sprintf("n%d", e.Node)
	switch p.Str("failback", "never") {
	case "never":
		s.violate("failback: node %d moves group %s back to %s, but its failback policy is never", n.id, e.Group, to)
	case "window":
		a, b := int(p.Int("failback_window_start", 0)), int(p.Int("failback_window_end", 0))
		if !inWindow(n.hour, a, b) {
			s.violate("failback: node %d moves group %s back to %s at local hour %d, outside its window [%d, %d)", n.id, e.Group, to, n.hour, a, b)
		}
	}
	pref := p.List("preferred_owners")
	i, j := slices.Index(pref, to), slices.Index(pref, fmt.Sprintf("n%d", n.id))
	if i < 0 || (j >= 0 && j < i) {
		s.violate("failback: node %d moves group %s to %s, not more preferred (preferred owners %v)", n.id, e.Group, to, pref)
	}
	s.fm.failbacks[e.Group] = append(s.fm.failbacks[e.Group], fbRec{to: to, at: s.now})
}

// checkFailedForThreshold: a group left failed for its failover
// threshold had that many pushes committed within the period.
func (s *Sim) checkFailedForThreshold(n *node, group string) {
	o, _ := n.state.db.Get(db.KindGroup, group)
	p := resources.Props(o.Props)
	th := p.Int("failover_threshold", resources.DefaultFailoverThreshold)
	period := p.Int("failover_period_s", resources.DefaultFailoverPeriodS) * 1000
	c := 0
	for _, w := range s.fm.pushes[group] {
		if n.wall-w < period {
			c++
		}
	}
	if int64(c) < th {
		s.violate("failover threshold: node %d left group %s failed for its failover threshold %d in %ds, but %d pushes were committed in the period",
			n.id, group, th, period/1000, c)
	}
}

// noteOnline: resmon starts an online. After a failure on the same node
// within the same ownership, it is a restart in place: count them.
func (s *Sim) noteOnline(n *node, r string) {
	f := &s.fm
	k := failKey{n.id, r}
	fr, ok := f.fails[k]
	if !ok {
		return
	}
	delete(f.fails, k)
	g := f.resGrp[r]
	if f.epoch[g] != fr.epoch {
		return
	}
	f.stats.Restarts++
	if fr.class != resources.FailSoft {
		s.violate("restart: node %d restarts resource %s in place after a %v failure", n.id, r, fr.class)
	}
	rk := restartKey{n.id, r, fr.epoch}
	f.restarts[rk] = append(f.restarts[rk], fr.at)
	o, _ := f.truth.Get(db.KindResource, r)
	p := resources.Props(o.Props)
	allowed := p.Int("restart_threshold", resources.DefaultRestartThreshold)
	if p.Str("restart_action", "failover") == "none" {
		allowed = 0
	}
	// The manager counts in its node's ticks; a tick less here covers
	// the rounding.
	window := p.Int("restart_period_s", resources.DefaultRestartPeriodS)*Second - s.cfg.Tick
	c := 0
	for _, t := range f.restarts[rk] {
		if fr.at-t < window {
			c++
		}
	}
	if int64(c) > allowed {
		s.violate("restart threshold: resource %s restarted in place on node %d %d times within %ds, threshold %d (failures at %v)",
			r, n.id, c, window/Second+1, allowed, fmtTimes(f.restarts[rk]))
	}
}

func fmtTimes(ts []int64) string {
	var b []string
	for _, t := range ts {
		b = append(b, fmtDur(t))
	}
	return strings.Join(b, " ")
}

// ---- the committed database ----

type groupRuntime struct {
	owner    string
	ownerInc int64
	movingTo string
	fo       []string
}

func runtimeOf(d *db.DB, g string) (groupRuntime, bool) {
	o, ok := d.Get(db.KindGroup, g)
	if !ok {
		return groupRuntime{}, false
	}
	p := resources.Props(o.Props)
	return groupRuntime{owner: p.Str("owner", ""), ownerInc: p.Int("owner_inc", 0), movingTo: p.Str("moving_to", ""), fo: p.List("failovers")}, true
}

// fmApply applies an update to the truth, the first time any node
// applies it, and classifies what it did to the groups.
func (s *Sim) fmApply(seq uint64, data []byte) {
	f := &s.fm
	if f.truth == nil || seq <= f.truth.Seq() {
		return
	}
	// Each group's runtime properties before (kept since they last
	// changed).
	before := slices.Clone(f.rt)
	err := f.truth.Apply(seq, data)
	f.truth.TakeChanges()
	if err != nil || !f.on || f.truth.KindSeq(db.KindGroup) != seq {
		return // no group changed
	}
	for i, g := range f.groups {
		a, ok := runtimeOf(f.truth, g.Name)
		if !ok {
			continue
		}
		f.rt[i] = a
		b := before[i]
		if a.owner != b.owner || a.ownerInc != b.ownerInc {
			f.epoch[g.Name]++
		}
		if a.movingTo == "" || a.movingTo == b.movingTo {
			continue
		}
		f.epoch[g.Name]++
		switch {
		case f.admin[string(data)]:
			f.stats.AdminMoves++
		case !slices.Equal(a.fo, b.fo):
			s.notePush(g.Name, a)
		default:
			// A failback: one must have been decided.
			fb := f.failbacks[g.Name]
			i := slices.IndexFunc(fb, func(r fbRec) bool { return r.to == a.movingTo && s.now-r.at < 5*Second })
			if i < 0 {
				s.violate("group %s: moving_to %s committed, but it is no administrator's move, no push and no failback", g.Name, a.movingTo)
				continue
			}
			f.failbacks[g.Name] = slices.Delete(fb, i, i+1)
		}
	}
}

// notePush checks a committed push against the group's failover
// threshold: the pushes within the period, this one included.
func (s *Sim) notePush(group string, a groupRuntime) {
	f := &s.fm
	f.stats.Pushes++
	if len(a.fo) == 0 {
		s.violate("group %s: a push committed without its time in failovers", group)
		return
	}
	w, err := strconv.ParseInt(a.fo[len(a.fo)-1], 10, 64)
	if err != nil || w > s.wallMs() || w < s.wallMs()-10_000 {
		s.violate("group %s: a push committed with time %q in failovers (now %d)", group, a.fo[len(a.fo)-1], s.wallMs())
		return
	}
	f.pushes[group] = append(f.pushes[group], w)
	o, _ := f.truth.Get(db.KindGroup, group)
	p := resources.Props(o.Props)
	th := p.Int("failover_threshold", resources.DefaultFailoverThreshold)
	period := p.Int("failover_period_s", resources.DefaultFailoverPeriodS) * 1000
	c := 0
	for _, t := range f.pushes[group] {
		if t <= w && w-t < period {
			c++
		}
	}
	if int64(c) > th {
		s.violate("failover threshold: group %s pushed %d times within %ds, threshold %d", group, c, period/1000, th)
	}
}

// ---- the end ----

// groupOK reports whether group g is where it must be at the end: online
// on exactly one node, the database's owner; or failed there past its
// thresholds; or with no live possible owner. why says what is wrong.
func (s *Sim) groupOK(g *GroupSpec) (ok bool, why string, st *FMStats) {
	f := &s.fm
	var end FMStats
	o, exists := f.truth.Get(db.KindGroup, g.Name)
	if !exists {
		return false, "not in the database", &end
	}
	p := resources.Props(o.Props)
	if p.Str("target_state", "online") == "offline" {
		return true, "", &end
	}
	live := false
	for _, n := range s.nodes[1:] {
		if n.running && n.core.Member() && s.possibleOwner(g, fmt.Sprintf("n%d", n.id)) {
			live = true
		}
	}
	if !live {
		end.NoOwner++
		return true, "", &end
	}
	owner := p.Str("owner", "")
	oo, _ := f.truth.Get(db.KindNode, owner)
	id := nodes.ID(resources.Props(oo.Props).Int("id", 0))
	if !id.Valid() {
		return false, fmt.Sprintf("the database's owner %q is not a node", owner), &end
	}
	on := s.nodes[id]
	if !on.running || !on.core.Member() {
		return false, fmt.Sprintf("the database's owner %s is not a live member", owner), &end
	}
	for _, r := range g.Resources {
		if _, hard := on.core.Failover().Local(r.Name); hard {
			end.Failed++
			return true, "", &end
		}
	}
	for _, r := range g.Resources {
		if h := f.holders[r.Name]; h != nodes.SetOf(id) {
			return false, fmt.Sprintf("resource %s is held on %v, want %s only", r.Name, h, owner), &end
		}
		if x := on.rm.res[r.Name]; x == nil || x.state != resources.Online {
			return false, fmt.Sprintf("resource %s is not online on %s", r.Name, owner), &end
		}
	}
	end.Online++
	return true, "", &end
}

func (s *Sim) possibleOwner(g *GroupSpec, name string) bool {
	for _, r := range g.Resources {
		o, _ := s.fm.truth.Get(db.KindResource, r.Name)
		if l := resources.Props(o.Props).List("possible_owners"); len(l) > 0 && !slices.Contains(l, name) {
			return false
		}
	}
	return true
}

// checkGroups runs until every group is where it must be (at most
// bound), then reports the ones that are not.
func (s *Sim) checkGroups(bound int64) {
	f := &s.fm
	if !f.on {
		return
	}
	if !f.setupDone {
		s.violate("the groups' setup was not committed")
		return
	}
	all := func() bool {
		for i := range f.groups {
			if ok, _, _ := s.groupOK(&f.groups[i]); !ok {
				return false
			}
		}
		return true
	}
	// Looked at every 10 ms, not after every event.
	for end := s.now + bound; s.now < end && !all(); {
		s.RunUntil(min(end, s.now+10*Millisecond), nil)
	}
	for i := range f.groups {
		g := &f.groups[i]
		ok, why, st := s.groupOK(g)
		f.stats.add(FMStats{Online: st.Online, Failed: st.Failed, NoOwner: st.NoOwner})
		if !ok {
			s.violate("group %s not settled %s after the faults were healed: %s\n%s", g.Name, fmtDur(bound), why, s.describeGroup(g.Name))
		}
	}
}

// ---- descriptions ----

func (s *Sim) describeResource(r string) string {
	var b strings.Builder
	for _, n := range s.nodes[1:] {
		st := "-"
		if x := n.rm.res[r]; x != nil {
			st = x.state.String()
		}
		fm := "-"
		if n.running && n.core.Failover() != nil {
			l, hard := n.core.Failover().Local(r)
			fm = l.String()
			if hard {
				fm += " (hard)"
			}
		}
		lease := "none"
		if n.rm.deadline > 0 {
			lease = fmt.Sprintf("until %s", fmtDur(n.rm.deadline))
		}
		_, m := n.core.Membership()
		fmt.Fprintf(&b, "    n%d: resmon %s (up %v, lease %s), manager %s; node running %v frozen %v member %v %v\n",
			n.id, st, n.rm.up, lease, fm, n.running, n.frozen, n.running && n.core.Member(), m)
	}
	return b.String()
}

func (s *Sim) describeGroup(g string) string {
	var b strings.Builder
	if o, ok := s.fm.truth.Get(db.KindGroup, g); ok {
		fmt.Fprintf(&b, "  group %s in the database: %v\n", g, o.Props)
	}
	for _, r := range s.groupSpec(g).Resources {
		fmt.Fprintf(&b, "  resource %s:\n%s", r.Name, s.describeResource(r.Name))
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
