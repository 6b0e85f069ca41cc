package gup

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationPartitionInTime: node 1 alone forms the cluster, changes
// the database and stops; node 2, which never ran and so has no copy of
// anything, then starts alone and must have node 1's changes: it forms
// from the recovery log on the quorum disk. Reference: docs/gup.md (the
// "partition in time" of the introduction; Roles: a node that becomes
// the holder replays the log first); MSCS (Vogels et al., FTCS 1998),
// "Quorum Resource". Node 1 then comes back from its local copy, joins,
// and both agree.
func TestIntegrationPartitionInTime(t *testing.T) {
	c := newCluster(t, nscluster.Config{Nodes: 2, Deferred: []int{2}})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	waitMembership(ctx, t, c, 0, []int{1}, []int{1})
	if _, err := c.WaitEvent(ctx, 1, msgLocker, nil); err != nil {
		t.Fatal(err)
	}

	// Node 1's changes: the cluster object, a resource type, a group and
	// resources, several transactions, then one more change of the
	// cluster object.
	cl1 := clientOf(t, c, 1)
	mustCommit(ctx, t, cl1, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "create", Kind: "cluster", Name: "cluster", Props: map[string]any{"description": "formed by node 1"}}}})
	mustCommit(ctx, t, cl1, clusterapi.Tx{Ops: []clusterapi.Op{
		{Op: "create", Kind: "resourcetype", Name: "ip", Props: map[string]any{"agent": "ip_address"}},
		{Op: "create", Kind: "group", Name: "web", Props: map[string]any{"description": "made while node 2 was down"}},
	}})
	for i := range 10 {
		mustCommit(ctx, t, cl1, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "create", Kind: "resource", Name: fmt.Sprintf("vip%d", i),
			Props: map[string]any{"group": "web", "type": "ip", "address": fmt.Sprintf("10.0.0.%d", i+1)}}}})
	}
	last := mustCommit(ctx, t, cl1, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "set", Kind: "cluster", Name: "cluster", Props: map[string]any{"description": "last word of node 1"}}}})
	want, at := dumpOf(ctx, t, cl1, false)
	if at != last {
		t.Fatalf("node 1 reads at #%d after its last write at #%d", at, last)
	}
	t.Logf("node 1 alone: %d objects, last change #%d", want.objects(), last)

	// Node 1 stops (a planned stop: it keeps its reservation key).
	mark := c.Mark()
	if err := c.Node(1).Term(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(1).Wait(ctx); err != nil {
		t.Fatal(err)
	}

	// Node 2 starts alone, with no copy of anything.
	started := time.Now()
	if err := c.Node(2).Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitEvent(ctx, 2, msgNoCopy, nscluster.After(mark)); err != nil {
		t.Fatalf("node 2 should start without a local copy: %v\n%s", err, recent(c, mark))
	}
	if e := c.Events(2, msgLoaded, nil); len(e) > 0 {
		t.Fatalf("node 2 loaded a local copy: %s", e[0].Format())
	}
	formed := waitMembership(ctx, t, c, mark, []int{2}, []int{2})[2]
	lk, err := c.WaitEvent(ctx, 2, msgLocker, nscluster.After(mark))
	if err != nil {
		t.Fatalf("%v\n%s", err, recent(c, mark))
	}
	seq, _ := lk.Int("seq")
	recs, _ := lk.Int("records")
	t.Logf("node 2 started alone: formed after %v, the locker after %v (term %s, #%d, %d update records replayed)",
		formed.Time.Sub(started).Round(time.Millisecond), lk.Time.Sub(started).Round(time.Millisecond), lk.String("term"), seq, recs)
	if uint64(seq) != last {
		t.Errorf("node 2 took over at #%d, node 1's last change was #%d", seq, last)
	}
	if recs == 0 {
		t.Logf("note: node 2 found no update records after the checkpoint (a checkpoint covered them)")
	}
	cl2 := clientOf(t, c, 2)
	got, at := dumpOf(ctx, t, cl2, false)
	if at != last {
		t.Errorf("node 2 reads at #%d, want #%d", at, last)
	}
	if d := want.diff(got); d != "" {
		t.Fatalf("node 2's database is not node 1's:\n%s", d)
	}
	o, err := cl2.Get(ctx, "cluster", "cluster", false)
	if err != nil || o.Object.Props["description"] != "last word of node 1" {
		t.Fatalf("node 2 reads the cluster object %+v, %v", o, err)
	}

	// Node 2 changes something on its own; then node 1 comes back from
	// its local copy (behind now) and joins.
	after := mustCommit(ctx, t, cl2, clusterapi.Tx{Ops: []clusterapi.Op{
		{Op: "set", Kind: "cluster", Name: "cluster", Props: map[string]any{"description": "node 2 ran alone"}},
		{Op: "delete", Kind: "resource", Name: "vip9"},
	}})
	mark = c.Mark()
	if err := c.Node(1).Start(); err != nil {
		t.Fatal(err)
	}
	le, err := c.WaitEvent(ctx, 1, msgLoaded, nscluster.After(mark))
	if err != nil {
		t.Fatalf("node 1 should come back from its local copy: %v\n%s", err, recent(c, mark))
	}
	if s, _ := le.Int("seq"); uint64(s) != last {
		t.Errorf("node 1's local copy is at #%d, its last change was #%d", s, last)
	}
	waitMembership(ctx, t, c, mark, []int{1, 2}, []int{1, 2})
	final := waitConverged(ctx, t, c, []int{1, 2}, after)
	if e := c.Events(1, msgReset, nscluster.After(mark)); len(e) > 0 {
		t.Errorf("node 1 replaced its copy instead of taking the tail: %s", e[0].Format())
	}
	sameEverywhere(ctx, t, c, []int{1, 2})
	o, err = clientOf(t, c, 1).Get(ctx, "cluster", "cluster", false)
	if err != nil || o.Object.Props["description"] != "node 2 ran alone" {
		t.Fatalf("node 1 reads the cluster object %+v, %v", o, err)
	}
	if _, err := clientOf(t, c, 1).Get(ctx, "resource", "vip9", false); err == nil {
		t.Errorf("node 1 still has resource vip9, deleted by node 2 at #%d", after)
	}
	t.Logf("node 1 rejoined: both at #%d", final)
}
