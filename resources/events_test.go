package resources

import (
	"slices"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// why walks the event log from group g's last event back through each
// cause_event, as `cluster why` does, and returns "type: cause" of each.
func (c *cluster) why(g string) []string {
	var out []string
	name := c.groupProp(g, "event").Str
	for name != "" && len(out) < 50 {
		o, ok := c.db.Get(db.KindEvent, name)
		if !ok {
			out = append(out, "("+name+" not recorded)")
			break
		}
		out = append(out, o.Props["type"].Str+": "+o.Props["cause"].Str)
		name = o.Props["cause_event"].Str
	}
	return out
}

func (c *cluster) eventTypes() []string {
	evs := c.db.List(db.KindEvent)
	slices.SortFunc(evs, func(a, b db.Object) int { return int(a.Props["seq"].Int - b.Props["seq"].Int) })
	var out []string
	for _, o := range evs {
		out = append(out, o.Props["type"].Str)
	}
	return out
}

// TestEventsOfAPull: a crashed owner's group is pulled by the survivor
// the database chooses and comes online there; the events ride in the
// manager's own transactions and link up to the regroup that removed the
// owner (the node core records that one under the name the manager
// computes).
func TestEventsOfAPull(t *testing.T) {
	c := newCluster(t, 3)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", "n3", "n2")})
	c.tick(1)
	if got := c.why("g"); !slices.Equal(got, []string{"group-online: ", "group-placed: the group had no owner"}) {
		t.Fatalf("why g after placement: %q", got)
	}
	for _, m := range c.mgr {
		m.SetEpoch("7.2")
	}
	c.crash(1)
	for range DefaultLeaseTicks + DefaultWaitSlackTicks + reconcileTicks {
		c.tick(1)
	}
	want := []string{"group-online: ", "group-pulled: ", "(regroup-7.2 not recorded)"}
	if got := c.why("g"); !slices.Equal(got, want) {
		t.Fatalf("why g after the crash of its owner:\n got %q\nwant %q\nlog %q", got, want, c.eventTypes())
	}
	o, _ := c.db.Get(db.KindEvent, c.groupProp("g", "event").Str)
	if o.Props["node"].Str != "n3" || o.Props["recorder"].Str != "n3" || o.Props["group"].Str != "g" {
		t.Errorf("online event %v, want node and recorder n3, group g", o.Props)
	}
}

// TestEventsOfAPush: restarts in place are recorded as resource failures
// that say so; the failure past the threshold is the cause of the push,
// the push of the hand-over, the hand-over of the group online on the
// other node.
func TestEventsOfAPush(t *testing.T) {
	c := newCluster(t, 2)
	c.nodeObjects()
	web(c, "g", map[string]db.Value{"preferred_owners": db.ListValue("n1", "n2")})
	c.tick(1)
	c.fail(1, "g-app")
	c.tick(1)
	restarts := 0
	for _, o := range c.db.List(db.KindEvent) {
		if o.Props["type"].Str == db.EventResFailed && strings.Contains(o.Props["message"].Str, "restart in place, 1 of 3") {
			restarts++
		}
	}
	if restarts != 1 {
		t.Fatalf("%d resource-failed events saying restart in place 1 of 3; log %q", restarts, c.eventTypes())
	}
	for range DefaultRestartThreshold {
		c.fail(1, "g-app")
		c.tick(1)
	}
	c.tick(2)
	if w := c.where("g-app"); w != 2 {
		t.Fatalf("g-app on %d, want 2", w)
	}
	got := c.why("g")
	wantTypes := []string{"group-online", "group-moved", "group-pushed", "resource-failed"}
	if len(got) < len(wantTypes) {
		t.Fatalf("why g: %q", got)
	}
	for i, w := range wantTypes {
		if !strings.HasPrefix(got[i], w+":") {
			t.Fatalf("why g: %q, want %q first", got, wantTypes)
		}
	}
	if !strings.Contains(got[3], "soft failure: check failed") {
		t.Errorf("the failure's cause %q does not name its class and reason", got[3])
	}
}
