package gup

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/internal/dbfile"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// Sizes of TestIntegrationJoinTransfer's database: 2,000 resources of
// about a kilobyte of properties each (docs/database.md: a 2.2 MB
// snapshot), in 20 groups.
const (
	jtGroups    = 20
	jtResources = 2000
	jtPerTx     = 50 // resources per transaction
	jtChanges   = 1000
	jtTail      = 200 // changes while the restarted node is down
	// jtFar is more changes than the locker keeps to send again (4,096,
	// docs/gup.md "An update"): a node down for them needs the whole state.
	jtFar = 4200
)

// localCopy reads node i's local copy of the database (internal/dbfile):
// its sequence number and the snapshot's size.
func localCopy(c *nscluster.Cluster, i int) (uint64, int, error) {
	n := c.Node(i)
	seq, snap, err := dbfile.Load(filepath.Join(n.Config.StateDir, fmt.Sprintf("%s-node%d.clusterdb", n.Config.Cluster.Name, i)))
	return seq, len(snap), err
}

// waitSeq polls node i's GET /v1/db until it applied seq; it returns when.
func waitSeq(ctx context.Context, t testing.TB, c *nscluster.Cluster, i int, seq uint64) time.Time {
	t.Helper()
	cl := clusterapi.NewClient(c.Node(i).Socket)
	defer cl.Close()
	var last clusterapi.DBInfo
	for {
		if !c.Node(i).Running() {
			t.Fatalf("node %d exited at #%d, before it reached #%d:\n%s", i, last.Seq, seq, recent(c, 0))
		}
		if in, err := cl.Info(ctx); err == nil {
			last = in
			if in.Seq >= seq {
				return time.Now()
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node %d did not reach #%d (at %+v): %v\n%s", i, seq, last, ctx.Err(), recent(c, 0))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// changes sets a new reason on n resources, one transaction each,
// through the nodes' clients in parallel; it returns the highest sequence
// number acknowledged.
func changes(ctx context.Context, t testing.TB, cls []*clusterapi.Client, n int, round string) uint64 {
	t.Helper()
	var (
		mu   sync.Mutex
		high uint64
		errs []error
		wg   sync.WaitGroup
	)
	for w, cl := range cls {
		wg.Go(func() {
			for i := w; i < n; i += len(cls) {
				tx := clusterapi.Tx{Ops: []clusterapi.Op{{Op: "set", Kind: "resource", Name: fmt.Sprintf("r%04d", i%jtResources),
					Props: map[string]any{"reason": fmt.Sprintf("%s change %d", round, i)}}}}
				r, conflict, es, _ := commit(ctx, cl, tx)
				mu.Lock()
				switch {
				case ctx.Err() != nil:
					errs = append(errs, errors.Join(es...))
				case conflict:
					errs = append(errs, fmt.Errorf("change %d: %s", i, r.Error))
				default:
					high = max(high, r.Seq)
				}
				mu.Unlock()
				if ctx.Err() != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%s changes: %v", round, errors.Join(errs...))
	}
	return high
}

// TestIntegrationJoinTransfer: a node that has never run joins a cluster
// whose database is over 2 MB and has had 1,000 changes more; it receives
// the database on the streams and reaches the latest sequence number with
// the same objects as the others. Then it stops, misses a few hundred
// changes, and comes back from its local copy: it takes only the tail.
// Reference: docs/gup.md, "Joining" and "Checkpoints, histories and the
// local copy".
func TestIntegrationJoinTransfer(t *testing.T) {
	c := newCluster(t, nscluster.Config{Nodes: 3, Deferred: []int{3}})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	waitMembership(ctx, t, c, 0, []int{1, 2}, []int{1, 2})
	lockerOf(ctx, t, c, []int{1, 2})
	cls := []*clusterapi.Client{clientOf(t, c, 1), clientOf(t, c, 2)}

	// The database, built through both nodes.
	built := time.Now()
	mustCommit(ctx, t, cls[0], clusterapi.Tx{Ops: []clusterapi.Op{
		{Op: "create", Kind: "cluster", Name: "cluster", Props: map[string]any{"description": "join transfer"}},
		{Op: "create", Kind: "resourcetype", Name: "app", Props: map[string]any{"agent": "generic_application"}},
	}})
	ops := []clusterapi.Op{}
	for g := range jtGroups {
		ops = append(ops, clusterapi.Op{Op: "create", Kind: "group", Name: fmt.Sprintf("g%02d", g),
			Props: map[string]any{"description": fmt.Sprintf("group %d", g), "failback": []string{"never", "immediate"}[g%2]}})
	}
	mustCommit(ctx, t, cls[1], clusterapi.Tx{Ops: ops})
	filler := strings.Repeat("x", 340)
	var wg sync.WaitGroup
	errc := make(chan error, jtResources/jtPerTx)
	for w := range cls {
		wg.Go(func() {
			for b := w; b < jtResources/jtPerTx; b += len(cls) {
				var ops []clusterapi.Op
				for i := b * jtPerTx; i < (b+1)*jtPerTx; i++ {
					ops = append(ops, clusterapi.Op{Op: "create", Kind: "resource", Name: fmt.Sprintf("r%04d", i), Props: map[string]any{
						"group":         fmt.Sprintf("g%02d", i%jtGroups),
						"type":          "app",
						"description":   fmt.Sprintf("resource %d of the join transfer test, %s", i, filler),
						"command":       fmt.Sprintf("/usr/local/bin/service-%04d --config /etc/service-%04d.conf --%s", i, i, filler),
						"check_command": fmt.Sprintf("test -e /run/service-%04d # %s", i, filler),
					}})
				}
				r, conflict, errs, _ := commit(ctx, cls[w], clusterapi.Tx{Ops: ops})
				if ctx.Err() != nil || conflict {
					errc <- fmt.Errorf("batch %d: %s %v", b, r.Error, errors.Join(errs...))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	info, err := cls[0].Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("database built in %v: %d objects at #%d", time.Since(built).Round(time.Millisecond), info.Objects, info.Seq)

	// Its size: node 1's local copy holds the snapshot (saved every
	// 200 ms when the database changed).
	waitCopy := func(i int, seq uint64) int {
		t.Helper()
		for {
			s, size, err := localCopy(c, i)
			if err == nil && s >= seq {
				return size
			}
			select {
			case <-ctx.Done():
				t.Fatalf("node %d's local copy does not reach #%d (at #%d, %v)", i, seq, s, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	size := waitCopy(1, info.Seq)
	t.Logf("snapshot at #%d: %d bytes (%.2f MB)", info.Seq, size, float64(size)/1e6)
	if size <= 2<<20 {
		t.Fatalf("the snapshot is %d bytes, not over 2 MiB", size)
	}

	// 1,000 changes more, node 3 still never started.
	start := time.Now()
	high := changes(ctx, t, cls, jtChanges, "first")
	target := waitConverged(ctx, t, c, []int{1, 2}, high)
	t.Logf("%d changes in %v; nodes 1 and 2 at #%d", jtChanges, time.Since(start).Round(time.Millisecond), target)

	// Node 3 starts and joins.
	mark := c.Mark()
	started := time.Now()
	if err := c.Node(3).Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitEvent(ctx, 3, msgNoCopy, nscluster.After(mark)); err != nil {
		t.Fatalf("node 3 should start without a local copy: %v", err)
	}
	joined := waitMembership(ctx, t, c, mark, []int{1, 2, 3}, []int{1, 2, 3})[3]
	caught := waitSeq(ctx, t, c, 3, target)
	how := "updates from the locker's history"
	if e := c.Events(3, msgReset, nscluster.After(mark)); len(e) > 0 {
		how = "the whole state (" + e[0].String("reason") + ")"
	}
	t.Logf("node 3 (never ran) joined %v after its start and reached #%d %v after its start (%v after the join), by %s",
		joined.Time.Sub(started).Round(time.Millisecond), target, caught.Sub(started).Round(time.Millisecond), caught.Sub(joined.Time).Round(time.Millisecond), how)
	waitConverged(ctx, t, c, []int{1, 2, 3}, target)
	ref := sameEverywhere(ctx, t, c, []int{1, 2, 3})
	if n := len(ref["resource"]); n != jtResources {
		t.Fatalf("%d resources, want %d", n, jtResources)
	}
	// A linearizable read on the new member.
	if o, err := clientOf(t, c, 3).Get(ctx, "resource", "r0999", false); err != nil || o.Object.Props["reason"] != "first change 999" {
		t.Fatalf("node 3 reads r0999: %+v %v", o, err)
	}

	// Node 3 stops, misses jtTail changes, and comes back from its local
	// copy: it needs only the tail.
	mark = c.Mark()
	if err := c.Node(3).Term(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(3).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	stopSeq, _, err := localCopy(c, 3)
	if err != nil || stopSeq != target {
		t.Fatalf("node 3's local copy after its stop: #%d, %v; want #%d", stopSeq, err, target)
	}
	waitMembership(ctx, t, c, mark, []int{1, 2}, []int{1, 2})
	high = changes(ctx, t, cls, jtTail, "second")
	target = waitConverged(ctx, t, c, []int{1, 2}, high)

	mark = c.Mark()
	started = time.Now()
	if err := c.Node(3).Start(); err != nil {
		t.Fatal(err)
	}
	le, err := c.WaitEvent(ctx, 3, msgLoaded, nscluster.After(mark))
	if err != nil {
		t.Fatalf("node 3 should come back from its local copy: %v", err)
	}
	if s, _ := le.Int("seq"); uint64(s) != stopSeq {
		t.Errorf("node 3 loaded its local copy at #%d, it stopped at #%d", s, stopSeq)
	}
	joined = waitMembership(ctx, t, c, mark, []int{1, 2, 3}, []int{1, 2, 3})[3]
	caught = waitSeq(ctx, t, c, 3, target)
	t.Logf("node 3 restarted with its copy at #%d (loaded %v after its start): joined %v after its start, reached #%d %v after its start (%v after the join)",
		stopSeq, le.Time.Sub(started).Round(time.Millisecond), joined.Time.Sub(started).Round(time.Millisecond), target,
		caught.Sub(started).Round(time.Millisecond), caught.Sub(joined.Time).Round(time.Millisecond))
	if e := c.Events(3, msgReset, nscluster.After(mark)); len(e) > 0 {
		t.Errorf("node 3 took the whole state again instead of the %d updates it lacked: %s", target-stopSeq, e[0].Format())
	}
	waitConverged(ctx, t, c, []int{1, 2, 3}, target)
	sameEverywhere(ctx, t, c, []int{1, 2, 3})

	// Node 3 stops again and misses more changes than the locker keeps:
	// it gets the whole state, over 2 MB, in one stream message.
	mark = c.Mark()
	if err := c.Node(3).Term(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Node(3).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	stopSeq, _, _ = localCopy(c, 3)
	waitMembership(ctx, t, c, mark, []int{1, 2}, []int{1, 2})
	start = time.Now()
	high = changes(ctx, t, cls, jtFar, "third")
	target = waitConverged(ctx, t, c, []int{1, 2}, high)
	t.Logf("%d changes in %v with node 3 down; nodes 1 and 2 at #%d", jtFar, time.Since(start).Round(time.Millisecond), target)
	mark = c.Mark()
	started = time.Now()
	if err := c.Node(3).Start(); err != nil {
		t.Fatal(err)
	}
	joined = waitMembership(ctx, t, c, mark, []int{1, 2, 3}, []int{1, 2, 3})[3]
	caught = waitSeq(ctx, t, c, 3, target)
	reset, err := c.WaitEvent(ctx, 3, msgReset, nscluster.After(mark))
	if err != nil || reset.String("reason") != "snapshot from the locker" {
		t.Errorf("node 3, %d updates behind, should take the whole state from the locker: %s %v", target-stopSeq, reset.Format(), err)
	}
	_, size, _ = localCopy(c, 1)
	t.Logf("node 3 restarted %d updates behind (copy at #%d): joined %v after its start, reached #%d %v after its start (%v after the join), by the whole state (%d bytes)",
		target-stopSeq, stopSeq, joined.Time.Sub(started).Round(time.Millisecond), target,
		caught.Sub(started).Round(time.Millisecond), caught.Sub(joined.Time).Round(time.Millisecond), size)
	waitConverged(ctx, t, c, []int{1, 2, 3}, target)
	sameEverywhere(ctx, t, c, []int{1, 2, 3})
}
