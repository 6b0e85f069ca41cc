package resources

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// cluster is a small harness: managers on one database that applies
// their proposals in order (GUP, reduced to its outcome), and a resmon
// per node that does what it is told at once unless a test says
// otherwise.
type cluster struct {
	t       *testing.T
	db      *db.DB
	seq     uint64
	now     int64
	members nodes.Set
	mgr     map[nodes.ID]*Manager
	online  map[nodes.ID]map[string]bool // what runs where: resmon's truth
	// failOnline makes the next onlines of a resource fail.
	failOnline map[string]int
	// hold keeps a node's commands from completing (a stuck resmon).
	hold   map[nodes.ID]bool
	events []string
	log    []string // commands in order, "n1 online app"
}

func newCluster(t *testing.T, n int) *cluster {
	c := &cluster{t: t, db: db.New(), mgr: map[nodes.ID]*Manager{}, online: map[nodes.ID]map[string]bool{},
		failOnline: map[string]int{}, hold: map[nodes.ID]bool{}}
	for i := 1; i <= n; i++ {
		id := nodes.ID(i)
		m, err := New(Config{Self: id, Name: fmt.Sprintf("n%d", i), Incarnation: uint64(100 + i), DB: c.db})
		if err != nil {
			t.Fatal(err)
		}
		c.mgr[id] = m
		c.online[id] = map[string]bool{}
		m.SetLease(true)
		m.SetClock(1_000_000, 12)
		c.members = c.members.Add(id)
	}
	c.install(c.members)
	return c
}

func (c *cluster) commit(ops ...db.Op) {
	c.t.Helper()
	if err := c.apply(db.Tx{Ops: ops}); err != nil {
		c.t.Fatal(err)
	}
	for _, id := range c.ids() {
		c.mgr[id].DBChanged()
	}
	c.settle()
}

func (c *cluster) apply(tx db.Tx) error {
	b, err := tx.MarshalBinary()
	if err != nil {
		return err
	}
	c.seq++
	return c.db.Apply(c.seq, b)
}

// install installs members on every member and stops the others (as a
// regroup would: a node left out halts).
func (c *cluster) install(members nodes.Set) {
	c.members = members
	for id, m := range c.mgr {
		m.SetMembership(members.Has(id), members, true)
	}
	c.settle()
}

// settle runs every manager until nothing more happens at this tick.
func (c *cluster) settle() {
	c.t.Helper()
	for range 1000 {
		busy := false
		for _, id := range c.ids() {
			m := c.mgr[id]
			if !m.HasReady() {
				continue
			}
			busy = true
			r := m.Ready()
			for _, e := range r.Events {
				c.events = append(c.events, fmt.Sprintf("t%d n%d %v", c.now, id, e))
			}
			for _, cmd := range r.Commands {
				c.exec(id, cmd)
			}
			for _, p := range r.Proposals {
				var tx db.Tx
				if err := tx.UnmarshalBinary(p.Data); err != nil {
					c.t.Fatal(err)
				}
				err := c.apply(tx)
				for _, o := range c.ids() {
					c.mgr[o].DBChanged()
				}
				m.ProposalDone(p.Key, err)
			}
		}
		c.check()
		if !busy {
			return
		}
	}
	c.t.Fatal("no quiescence")
}

func (c *cluster) exec(id nodes.ID, cmd Command) {
	c.log = append(c.log, fmt.Sprintf("n%d %v %s", id, cmd.Op, cmd.Resource))
	if c.hold[id] {
		return
	}
	m := c.mgr[id]
	switch cmd.Op {
	case CmdOnline:
		if c.failOnline[cmd.Resource] > 0 {
			c.failOnline[cmd.Resource]--
			m.StepStatus(Status{Resource: cmd.Resource, State: Failed, Reason: "online failed"})
			return
		}
		c.online[id][cmd.Resource] = true
		m.StepStatus(Status{Resource: cmd.Resource, State: Online})
	default:
		delete(c.online[id], cmd.Resource)
		m.StepStatus(Status{Resource: cmd.Resource, State: Offline})
	}
}

// fail makes resource r fail where it runs (resmon's check found it).
func (c *cluster) fail(id nodes.ID, r string) { c.failClass(id, r, FailSoft) }

func (c *cluster) failClass(id nodes.ID, r string, class FailureClass) {
	delete(c.online[id], r)
	c.mgr[id].StepStatus(Status{Resource: r, State: Failed, Reason: "check failed", Class: class})
	c.settle()
}

func (c *cluster) tick(n int) {
	for range n {
		c.now++
		for _, id := range c.ids() {
			c.mgr[id].Tick(c.now)
		}
		c.settle()
	}
}

func (c *cluster) ids() []nodes.ID {
	ids := make([]nodes.ID, 0, len(c.mgr))
	for id := range c.mgr {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// check: no resource online on two nodes.
func (c *cluster) check() {
	c.t.Helper()
	where := map[string]nodes.ID{}
	for _, id := range c.ids() {
		for r := range c.online[id] {
			if o, ok := where[r]; ok {
				c.t.Fatalf("t%d: %s online on nodes %d and %d\nevents:\n%s", c.now, r, o, id, strings.Join(c.events, "\n"))
			}
			where[r] = id
		}
	}
}

// where returns the node r is online on (0: none).
func (c *cluster) where(r string) nodes.ID {
	for _, id := range c.ids() {
		if c.online[id][r] {
			return id
		}
	}
	return 0
}

func (c *cluster) groupProp(g, p string) db.Value {
	o, _ := c.db.Get(db.KindGroup, g)
	return o.Props[p]
}

func (c *cluster) crash(id nodes.ID) {
	c.online[id] = map[string]bool{} // a crash takes it all down
	c.hold[id] = true
	c.install(c.members.Remove(id))
}

// web: a group with an address, a name and an application.
func web(c *cluster, group string, props map[string]db.Value) {
	if props == nil {
		props = map[string]db.Value{}
	}
	c.commit(db.Create(db.KindGroup, group, props))
	c.commit(
		db.Create(db.KindResource, group+"-ip", map[string]db.Value{"group": db.StringValue(group), "type": db.StringValue("ip_address"),
			"address": db.StringValue("10.0.0.10")}),
		db.Create(db.KindResource, group+"-name", map[string]db.Value{"group": db.StringValue(group), "type": db.StringValue("network_name"),
			"name": db.StringValue("web"), "depends_on": db.ListValue(group + "-ip"), "interface": db.StringValue("eth0")}),
		db.Create(db.KindResource, group+"-app", map[string]db.Value{"group": db.StringValue(group), "type": db.StringValue("generic_application"),
			"command": db.StringValue("server"), "depends_on": db.ListValue(group + "-ip")}),
	)
}

func (c *cluster) nodeObjects() {
	c.tick(1)
	if got := len(c.db.List(db.KindNode)); got != len(c.mgr) {
		c.t.Fatalf("%d node objects, want %d (each member creates its own)", got, len(c.mgr))
	}
}

func TestNodesRegisterThemselves(t *testing.T) {
	c := newCluster(t, 3)
	c.nodeObjects()
	o, _ := c.db.Get(db.KindNode, "n2")
	if o.Props["id"].Int != 2 {
		t.Fatalf("node n2 has id %v", o.Props["id"])
	}
}

func TestOnlineInDependencyOrder(t *testing.T) {
	c := newCluster(t, 2)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n2", "n1")})
	c.tick(1)
	for _, r := range []string{"g-ip", "g-name", "g-app"} {
		if w := c.where(r); w != 2 {
			t.Fatalf("%s online on %d, want 2 (the preferred owner)", r, w)
		}
	}
	want := []string{"n2 online g-ip", "n2 online g-app", "n2 online g-name"}
	if !slices.Equal(c.log, want) {
		t.Fatalf("commands %q, want %q", c.log, want)
	}
	if s := c.groupProp("g", "state").Str; s != "online" {
		t.Fatalf("group state %q in the database, want online", s)
	}
	o, _ := c.db.Get(db.KindResource, "g-app")
	if o.Props["state"].Str != "online" || o.Props["state_node"].Str != "n2" {
		t.Fatalf("g-app's runtime properties %v", o.Props)
	}
}

// Reference: MSCS paper, "Failover": on a node failure each survivor
// computes the new owner from the database, and the new owner waits out
// the old owner's lease (docs/resources.md).
func TestFailoverWaitsOutTheLease(t *testing.T) {
	c := newCluster(t, 3)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", "n3", "n2")})
	c.tick(1)
	if c.where("g-app") != 1 {
		t.Fatalf("g-app on %d", c.where("g-app"))
	}
	c.crash(1)
	lost := c.now
	if o := c.groupProp("g", "owner").Str; o != "n3" {
		t.Fatalf("owner %q after node 1 crashed, want n3 (next preferred)", o)
	}
	wait := int64(DefaultLeaseTicks + DefaultWaitSlackTicks)
	for c.where("g-app") == 0 {
		if c.now-lost > wait+5 {
			t.Fatal("not online again")
		}
		c.tick(1)
	}
	if got := c.now - lost; got < wait {
		t.Fatalf("online %d ticks after the install that removed the owner, want >= %d (the lease)", got, wait)
	}
	if c.where("g-app") != 3 || c.where("g-ip") != 3 {
		t.Fatalf("not on node 3")
	}
}

// A move (an administrator's, here) committed while the new owner
// still waits out the lost owner's lease: the node it hands the group to
// claims it with no wait (owner_inc 0), so the hand-over itself must wait
// (found by the simulator: seed 57 at 14 nodes, the owner on the wrong
// side of a partition).
func TestMoveWaitsOutTheLease(t *testing.T) {
	c := newCluster(t, 3)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2", "n3")})
	c.tick(1)
	if c.where("g-app") != 1 {
		t.Fatalf("g-app on %d", c.where("g-app"))
	}
	// Node 1 is cut off, not dead: its resmon holds the resources until
	// its lease runs out.
	c.hold[1] = true
	c.install(c.members.Remove(1))
	lost := c.now
	if o := c.groupProp("g", "owner").Str; o != "n2" {
		t.Fatalf("owner %q, want n2", o)
	}
	c.commit(db.Set(db.KindGroup, "g", map[string]db.Value{"moving_to": db.StringValue("n3")}))
	wait := int64(DefaultLeaseTicks + DefaultWaitSlackTicks)
	for c.now-lost <= wait+reconcileTicks {
		if c.now-lost == DefaultLeaseTicks {
			c.online[1] = map[string]bool{} // node 1's lease ran out
		}
		c.tick(1) // c.check: nothing online on two nodes
	}
	if w := c.where("g-app"); w != 3 {
		t.Fatalf("g-app on %d after the move, want 3\n%s", w, strings.Join(c.events, "\n"))
	}
}

func TestRestartThenPush(t *testing.T) {
	c := newCluster(t, 2)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2")})
	c.tick(1)
	for i := 1; i <= DefaultRestartThreshold; i++ {
		c.fail(1, "g-app")
		c.tick(1)
		if w := c.where("g-app"); w != 1 {
			t.Fatalf("failure %d: g-app on %d, want restarted on 1", i, w)
		}
	}
	if c.where("g-ip") != 1 {
		t.Fatal("the address moved on a restart")
	}
	c.fail(1, "g-app")
	c.tick(2)
	for _, r := range []string{"g-ip", "g-app", "g-name"} {
		if w := c.where(r); w != 2 {
			t.Fatalf("after the 4th failure %s is on %d, want 2\n%s", r, w, strings.Join(c.events, "\n"))
		}
	}
	if f := c.groupProp("g", "failovers").List; len(f) != 1 {
		t.Fatalf("failovers %q", f)
	}
}

// A resmon that dies may leave its resources running (an address, a
// unit): a push past the threshold waits until a new resmon has
// terminated them here, then moves the group.
func TestOrphansOfADeadResmonHoldTheGroup(t *testing.T) {
	c := newCluster(t, 2)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2")})
	c.commit(db.Set(db.KindResource, "g-ip", map[string]db.Value{"restart_threshold": db.IntValue(0)}))
	c.tick(1)
	m := c.mgr[1]
	m.ResmonDown("killed") // c.online[1] keeps them: they outlived it
	c.settle()
	c.tick(reconcileTicks)
	if w := c.where("g-ip"); w != 1 || c.groupProp("g", "owner").Str != "n1" {
		t.Fatalf("with no resmon to terminate the orphans, the group moved: g-ip on %d, owner %v\n%s", w, c.groupProp("g", "owner"), strings.Join(c.log, "\n"))
	}
	for _, r := range []string{"g-ip", "g-app", "g-name"} {
		if c.where(r) == 2 {
			t.Fatalf("%s online on node 2 while node 1's orphan may run", r)
		}
	}
	m.ResmonUp() // terminates the orphans, then the push goes on
	c.settle()
	c.tick(reconcileTicks)
	for _, r := range []string{"g-ip", "g-app", "g-name"} {
		if w := c.where(r); w != 2 {
			t.Fatalf("after the new resmon terminated the orphans, %s is on %d, want 2\n%s", r, w, strings.Join(c.events, "\n"))
		}
	}
}

// appFailedOnN1 is a two-node cluster running the virtual server g on n1
// (preferred owners n1, n2) whose g-app has just failed there with class.
func appFailedOnN1(t *testing.T, class FailureClass) *cluster {
	c := newCluster(t, 2)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2")})
	c.tick(1)
	c.failClass(1, "g-app", class)
	return c
}

// A hard failure (an OCF agent's "not installed") moves the group at
// once: no restart on a node where the resource cannot run.
func TestHardFailureMovesAtOnce(t *testing.T) {
	c := appFailedOnN1(t, FailHard)
	c.tick(2)
	for _, r := range []string{"g-ip", "g-app", "g-name"} {
		if w := c.where(r); w != 2 {
			t.Fatalf("after a hard failure %s is on %d, want 2\n%s", r, w, strings.Join(c.events, "\n"))
		}
	}
	if f := c.groupProp("g", "failovers").List; len(f) != 1 {
		t.Fatalf("failovers %q", f)
	}
}

// A fatal failure (an OCF agent's "not configured") leaves the resource
// failed where it is: it would fail on every node alike.
func TestFatalFailureStaysFailed(t *testing.T) {
	c := appFailedOnN1(t, FailFatal)
	c.tick(reconcileTicks)
	if st, hard := c.mgr[1].Local("g-app"); c.where("g-app") != 0 || !hard {
		t.Fatalf("g-app on %d, state %v hard %v: want failed, neither restarted nor moved\n%s", c.where("g-app"), st, hard, strings.Join(c.events, "\n"))
	}
	if c.where("g-ip") != 1 || c.groupProp("g", "owner").Str != "n1" {
		t.Fatalf("the group moved: g-ip on %d, owner %v", c.where("g-ip"), c.groupProp("g", "owner"))
	}
}

// Resources that fail past their thresholds together (resmon died) and
// cannot be pushed (no other node) all stay failed; only the last one
// did, and the others were restarted in place past their threshold
// (simulator seed 3090, 2 nodes).
func TestFailedTogetherPastThresholdStayFailed(t *testing.T) {
	c := newCluster(t, 1)
	c.nodeObjects()
	web(c, "g", nil)
	for _, r := range []string{"g-ip", "g-name", "g-app"} {
		c.commit(db.Set(db.KindResource, r, map[string]db.Value{"restart_threshold": db.IntValue(0)}))
	}
	c.tick(1)
	m := c.mgr[1]
	c.online[1] = map[string]bool{}
	m.ResmonDown("killed")
	m.ResmonUp()
	c.settle()
	c.tick(reconcileTicks)
	for _, r := range []string{"g-ip", "g-name", "g-app"} {
		if st, hard := m.Local(r); c.where(r) != 0 || !hard {
			t.Errorf("%s: on node %d, state %v hard %v: want failed past its threshold", r, c.where(r), st, hard)
		}
	}
}

func TestFailoverThreshold(t *testing.T) {
	c := newCluster(t, 2)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2"), "failover_threshold": db.IntValue(1)})
	c.commit(db.Set(db.KindResource, "g-app", map[string]db.Value{"restart_threshold": db.IntValue(0)}))
	c.tick(1)
	c.fail(1, "g-app")
	c.tick(2)
	if c.where("g-app") != 2 {
		t.Fatalf("first failure: not pushed to 2")
	}
	c.fail(2, "g-app")
	c.tick(5)
	if w := c.where("g-app"); w != 0 {
		t.Fatalf("second failure past the failover threshold: g-app on %d, want failed", w)
	}
	if c.where("g-ip") != 2 {
		t.Fatalf("the group moved past its failover threshold")
	}
	if s := c.groupProp("g", "state").Str; s != "failed" {
		t.Fatalf("group state %q, want failed", s)
	}
}

func TestPlannedMove(t *testing.T) {
	c := newCluster(t, 2)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2")})
	c.tick(1)
	c.log = nil
	c.commit(db.Set(db.KindGroup, "g", map[string]db.Value{"moving_to": db.StringValue("n2")}))
	c.tick(1)
	want := []string{"n1 offline g-name", "n1 offline g-app", "n1 offline g-ip", "n2 online g-ip", "n2 online g-app", "n2 online g-name"}
	if !slices.Equal(c.log, want) {
		t.Fatalf("commands %q\nwant %q", c.log, want)
	}
	if _, ok := c.db.Get(db.KindGroup, "g"); !ok || c.groupProp("g", "moving_to").Str != "" {
		t.Fatal("moving_to left set")
	}
}

// A resource that failed past its threshold stays failed while the
// group stays; once the group has left, it comes back online with it
// (it stayed Failed here, never to be brought online again, and the
// group pending forever: simulator seed 47 at 4 nodes).
func TestFailedResourceComesBackWithItsGroup(t *testing.T) {
	c := newCluster(t, 2)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2")})
	c.commit(db.Set(db.KindResource, "g-app", map[string]db.Value{"restart_action": db.StringValue("none")}))
	c.tick(1)
	c.fail(1, "g-app")
	c.tick(1)
	if s := c.groupProp("g", "state").Str; s != "failed" || c.where("g-app") != 0 {
		t.Fatalf("group state %q, g-app on %d: want failed, nowhere", s, c.where("g-app"))
	}
	for _, to := range []nodes.ID{2, 1} {
		c.commit(db.Set(db.KindGroup, "g", map[string]db.Value{"moving_to": db.StringValue(fmt.Sprintf("n%d", to))}))
		c.tick(2)
		if w := c.where("g-app"); w != to {
			t.Fatalf("moved to %d: g-app on %d\n%s", to, w, strings.Join(c.events, "\n"))
		}
	}
}

func TestMoveToAbsentNodeIsCancelled(t *testing.T) {
	c := newCluster(t, 3)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1")})
	c.tick(1)
	c.crash(3)
	c.commit(db.Set(db.KindGroup, "g", map[string]db.Value{"moving_to": db.StringValue("n3")}))
	c.tick(2)
	if c.where("g-app") != 1 || c.groupProp("g", "moving_to").Str != "" {
		t.Fatalf("g-app on %d, moving_to %q: want the move cancelled", c.where("g-app"), c.groupProp("g", "moving_to").Str)
	}
	if got, want := c.groupProp("g", "move_error").Str, "move to n3 cancelled: node n3 is not a member of the cluster"; got != want {
		t.Fatalf("move_error %q, want %q", got, want)
	}
}

// Every move the manager cancels says why in move_error; the next move
// that it makes clears it.
func TestCancelledMoveSaysWhy(t *testing.T) {
	c := newCluster(t, 3)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1")})
	c.commit(db.Set(db.KindResource, "g-app", map[string]db.Value{"possible_owners": db.ListValue("n1", "n2")}))
	c.tick(1)
	c.commit(db.Set(db.KindNode, "n2", map[string]db.Value{"paused": db.BoolValue(true)}))
	for _, tc := range []struct{ to, why string }{
		{"n1", "node n1 already owns it"},
		{"n2", "node n2 is paused"},
		{"n3", "node n3 is not a possible owner of resource g-app"},
	} {
		c.commit(db.Set(db.KindGroup, "g", map[string]db.Value{"moving_to": db.StringValue(tc.to)}))
		c.tick(1)
		if got, want := c.groupProp("g", "move_error").Str, "move to "+tc.to+" cancelled: "+tc.why; got != want || c.where("g-app") != 1 {
			t.Fatalf("move to %s: move_error %q, g-app on %d; want %q, on 1", tc.to, got, c.where("g-app"), want)
		}
	}
	c.commit(db.Set(db.KindNode, "n3", map[string]db.Value{"evicted": db.BoolValue(true)}))
	c.commit(db.Set(db.KindGroup, "g", map[string]db.Value{"moving_to": db.StringValue("n3")}))
	c.tick(1)
	if got := c.groupProp("g", "move_error").Str; got != "move to n3 cancelled: node n3 is evicted" {
		t.Fatalf("move to an evicted node: move_error %q", got)
	}
	c.commit(db.Set(db.KindNode, "n2", map[string]db.Value{"paused": db.BoolValue(false)}))
	c.mgr[1].Drain()
	c.settle()
	c.tick(1)
	if c.where("g-app") != 2 || c.groupProp("g", "move_error").Str != "" {
		t.Fatalf("after the drain: g-app on %d, move_error %q; want on 2, cleared", c.where("g-app"), c.groupProp("g", "move_error").Str)
	}
}

func TestFailback(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props map[string]db.Value
		hour  int
		back  bool
	}{
		{"never", nil, 12, false},
		{"immediate", map[string]db.Value{"failback": db.StringValue("immediate")}, 12, true},
		{"inside the window", map[string]db.Value{"failback": db.StringValue("window"),
			"failback_window_start": db.IntValue(22), "failback_window_end": db.IntValue(4)}, 1, true},
		{"outside the window", map[string]db.Value{"failback": db.StringValue("window"),
			"failback_window_start": db.IntValue(22), "failback_window_end": db.IntValue(4)}, 12, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 2)
			c.nodeObjects()
			p := map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2")}
			for k, v := range tc.props {
				p[k] = v
			}
			web(c, "g", p)
			c.tick(1)
			c.crash(1)
			c.tick(DefaultLeaseTicks + DefaultWaitSlackTicks + 1)
			if c.where("g-app") != 2 {
				t.Fatal("no failover")
			}
			for _, m := range c.mgr {
				m.SetClock(2_000_000, tc.hour)
			}
			// Node 1 comes back as a new incarnation.
			m, _ := New(Config{Self: 1, Name: "n1", Incarnation: 201, DB: c.db})
			m.SetLease(true)
			m.SetClock(2_000_000, tc.hour)
			c.mgr[1], c.hold[1] = m, false
			c.install(c.members.Add(1))
			c.tick(reconcileTicks + 1)
			want := nodes.ID(2)
			if tc.back {
				want = 1
			}
			if w := c.where("g-app"); w != want {
				t.Fatalf("g-app on %d, want %d", w, want)
			}
		})
	}
}

// Every survivor computes the same owner: the choice depends on the
// database and the membership only.
func TestChooseIsDeterministic(t *testing.T) {
	c := newCluster(t, 4)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n3", "n1")})
	c.commit(db.Set(db.KindResource, "g-app", map[string]db.Value{"possible_owners": db.ListValue("n1", "n2", "n4")}))
	m := Load(c.db)
	g := m.Group("g")
	for _, tc := range []struct {
		members nodes.Set
		except  nodes.ID
		want    nodes.ID
	}{
		{nodes.SetOf(1, 2, 3, 4), 0, 1}, // n3 is preferred but not a possible owner of g-app
		{nodes.SetOf(2, 3, 4), 0, 2},
		{nodes.SetOf(1, 2, 4), 1, 2},
		{nodes.SetOf(3), 0, 0},
	} {
		if got := m.Choose(g, tc.members, tc.except); got != tc.want {
			t.Errorf("Choose(%v, except %d) = %d, want %d", tc.members, tc.except, got, tc.want)
		}
	}
}

// A claim races a claim: the group's version decides, and only one node
// owns it.
func TestConcurrentClaims(t *testing.T) {
	c := newCluster(t, 2)
	c.nodeObjects()
	web(c, "g", nil)
	g := Load(c.db).Group("g")
	claim := func(name string, inc int64) error {
		return c.apply(db.Tx{Ops: []db.Op{db.Check(db.KindGroup, "g").IfVersion(g.Version),
			db.Set(db.KindGroup, "g", map[string]db.Value{"owner": db.StringValue(name), "owner_inc": db.IntValue(inc)})}})
	}
	if err := claim("n2", 102); err != nil {
		t.Fatal(err)
	}
	if err := claim("n1", 999); !errors.Is(err, db.ErrPrecondition) {
		t.Fatalf("second claim: %v, want a failed precondition", err)
	}
}

func TestResmonCrashCountsAsFailure(t *testing.T) {
	c := newCluster(t, 2)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2")})
	c.tick(1)
	m := c.mgr[1]
	m.ResmonDown("exit status 2")
	c.settle()
	if st, _ := m.Local("g-app"); st == Online {
		t.Fatal("still online after resmon died")
	}
	c.log = nil
	m.ResmonUp()
	c.settle()
	c.tick(1)
	if !slices.Contains(c.log, "n1 terminate g-ip") || c.where("g-app") != 1 {
		t.Fatalf("after resmon came back: commands %q, g-app on %d", c.log, c.where("g-app"))
	}
}

func TestNotMemberTerminatesEverything(t *testing.T) {
	c := newCluster(t, 2)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1")})
	c.tick(1)
	c.mgr[1].SetMembership(false, c.members, false)
	c.settle()
	if w := c.where("g-app"); w == 1 {
		t.Fatal("a node that is no longer a member kept g-app online")
	}
}

// drainFixture: n nodes, group g on n1 (then next), group h that only n1
// may host.
func drainFixture(t *testing.T, n int, next string) *cluster {
	c := newCluster(t, n)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", next)})
	web(c, "h", map[string]db.Value{"preferred_owners": db.ListValue("n1")})
	c.commit(db.Set(db.KindResource, "h-app", map[string]db.Value{"possible_owners": db.ListValue("n1")}))
	c.tick(1)
	return c
}

func TestDrain(t *testing.T) {
	c := drainFixture(t, 2, "n2")
	c.mgr[1].Drain()
	c.settle()
	c.tick(1)
	if c.where("g-app") != 2 {
		t.Fatalf("g-app on %d after node 1 drained, want 2", c.where("g-app"))
	}
	if w := c.where("h-app"); w != 0 {
		t.Fatalf("h-app (only node 1 may host it) on %d after the drain, want offline", w)
	}
	if !c.mgr[1].Drained() {
		t.Fatal("not drained")
	}
}

// An administrator's drain of another node, through the database: its
// groups move away as in a planned stop, and a group that no other node
// may host stays online there with the reason in move_error.
func TestDrainThroughTheDatabase(t *testing.T) {
	c := drainFixture(t, 3, "n3")
	c.commit(db.Set(db.KindNode, "n1", map[string]db.Value{"draining": db.BoolValue(true)}))
	c.tick(2)
	if c.where("g-app") != 3 {
		t.Fatalf("g-app on %d after node 1 was drained, want 3 (its next preferred owner)\n%s", c.where("g-app"), strings.Join(c.events, "\n"))
	}
	if w, why := c.where("h-app"), c.groupProp("h", "move_error").Str; w != 1 || why != "drain of n1: no other member may host it" {
		t.Fatalf("h-app on %d, move_error %q: want it left on 1 with the reason", w, why)
	}
	// A drained node takes nothing: node 3 fails, g goes to 2, not to 1.
	c.crash(3)
	c.tick(c.mgr[2].cfg.WaitTicks + 2)
	if c.where("g-app") != 2 {
		t.Fatalf("g-app on %d after node 3 failed, want 2 (node 1 is drained)", c.where("g-app"))
	}
	// Evicted is drained too.
	c2 := newCluster(t, 2)
	c2.nodeObjects()
	web(c2, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1")})
	c2.tick(1)
	c2.commit(db.Set(db.KindNode, "n1", map[string]db.Value{"evicted": db.BoolValue(true)}))
	c2.tick(2)
	if c2.where("g-app") != 2 {
		t.Fatalf("g-app on %d after node 1 was evicted, want 2", c2.where("g-app"))
	}
}

// A slot read issued after the install that removed the old owner saw
// every write of it the target accepted: the wait ends a lease after the
// read that first saw its last slot value, if that is sooner.
func TestLeaseWaitShortenedByTheDisk(t *testing.T) {
	wait := int64(DefaultLeaseTicks + DefaultWaitSlackTicks)
	for _, tc := range []struct {
		name     string
		readAt   int64 // issue tick of the read, relative to the install
		lastSeen int64 // when node 1's last slot value was first read, relative to the install
		want     int64 // online after the install
	}{
		{"crashed long before", 1, -40, 1},
		{"crashed just before", 1, -10, wait - 10},
		{"wrote until preempted", 1, 2, wait},
		{"read issued at the install", 0, -40, wait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 2)
			c.tick(50)
			c.nodeObjects()
			web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2")})
			c.tick(1)
			c.crash(1)
			lost := c.now
			var seen [nodes.Max + 1]int64
			for i := range seen {
				seen[i] = -1
			}
			seen[1] = lost + tc.lastSeen
			c.mgr[2].DiskRead(lost+tc.readAt, &seen)
			for c.where("g-app") == 0 && c.now-lost < 2*wait {
				c.tick(1)
			}
			if got := c.now - lost; got != max(tc.want, 1) {
				t.Fatalf("online %d ticks after the install, want %d", got, tc.want)
			}
		})
	}
}

// An update to objects the model does not read (a network, here) does not
// reload it: every node loads the model again only when a node, a type, a
// resource or a group changed.
func TestUnrelatedUpdateKeepsTheModel(t *testing.T) {
	c := newCluster(t, 2)
	c.nodeObjects()
	web(c, "g", nil)
	m := c.mgr[1].Model()
	c.commit(db.Create(db.KindNetwork, "k0", map[string]db.Value{"v": db.StringValue("x")}))
	if c.mgr[1].Model() != m || m.Seq != c.db.Seq() {
		t.Fatal("a network's update reloaded the model")
	}
	c.commit(db.Set(db.KindGroup, "g", map[string]db.Value{"description": db.StringValue("x")}))
	if c.mgr[1].Model() == m {
		t.Fatal("a group's update did not reload the model")
	}
}

// A fatal failure survives a move that took the group offline here and
// was then cancelled (its target became unfit before the hand-over): the
// group stays here and the resource stays failed. Taking the group
// offline for the move forgot the failure, and the resource came online
// again in place (simulator seed 6444, 11 nodes).
func TestFatalFailureSurvivesACancelledMove(t *testing.T) {
	c := appFailedOnN1(t, FailFatal)
	c.tick(reconcileTicks)
	// The administrator moves g to n2; n1's commands are held so that the
	// hand-over can be caught before it is committed.
	c.hold[1] = true
	c.commit(db.Set(db.KindGroup, "g", map[string]db.Value{"moving_to": db.StringValue("n2")}))
	m := c.mgr[1]
	var handover *Proposal
	for range 20 {
		for _, name := range []string{"g-app", "g-name", "g-ip"} {
			if st, _ := m.Local(name); st == OfflinePending {
				delete(c.online[1], name)
				m.StepStatus(Status{Resource: name, State: Offline})
			}
		}
		if r := m.Ready(); len(r.Proposals) > 0 {
			handover = &r.Proposals[0]
			break
		}
	}
	if handover == nil {
		t.Fatalf("no hand-over proposed\n%s", strings.Join(c.events, "\n"))
	}
	c.hold[1] = false
	// n2 is paused before the hand-over commits: it fails, and the move is
	// cancelled.
	c.commit(db.Set(db.KindNode, "n2", map[string]db.Value{"paused": db.BoolValue(true)}))
	m.ProposalDone(handover.Key, errors.Join(db.ErrPrecondition, errors.New("the group changed")))
	c.tick(reconcileTicks)
	if got := c.groupProp("g", "move_error").Str; !strings.Contains(got, "paused") {
		t.Fatalf("move_error %q, want the move cancelled for the pause", got)
	}
	if st, hard := m.Local("g-app"); c.where("g-app") != 0 || !hard {
		t.Fatalf("g-app on %d, state %v hard %v: want it still failed after the cancelled move\n%s", c.where("g-app"), st, hard, strings.Join(c.log, "\n"))
	}
	if c.where("g-ip") != 1 || c.groupProp("g", "owner").Str != "n1" {
		t.Fatalf("g-ip on %d, owner %v: want the group back online on n1", c.where("g-ip"), c.groupProp("g", "owner"))
	}
}
