package membership

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// Log messages of the clusterd contract (docs/clusterd.md).
const (
	msgInstalled  = "membership installed"
	msgSuspected  = "peer suspected"
	msgNetDown    = "network down"
	msgNetUp      = "network up"
	msgRegroup    = "regroup started"
	msgJoined     = "joined"
	msgFormed     = "formed"
	msgHalt       = "halt"
	msgLostQuorum = "lost quorum"
	msgStabilized = "stabilized"
	// msgArbitrationDone carries "won" (bool).
	msgArbitrationDone = "arbitration done"
)

// haltStatus is clusterd's exit status after a halt or lost quorum.
const haltStatus = 3

// The rig's shared helpers (testbed/nscluster/helpers_linux.go), by the
// names the tests here use.
func newCluster(t testing.TB, cfg nscluster.Config) *nscluster.Cluster {
	return nscluster.Start(t, cfg)
}
func ids(n int) []int                              { return nscluster.IDs(n) }
func without(l []int, x ...int) []int              { return nscluster.Without(l, x...) }
func sameSet(a, b []int) bool                      { return nscluster.SameSet(a, b) }
func recent(c *nscluster.Cluster, mark int) string { return c.Recent(mark) }
func installs(e nscluster.Event) bool              { return nscluster.Installs(e) }
func waitMembership(ctx context.Context, t testing.TB, c *nscluster.Cluster, mark int, nodes, members []int) map[int]nscluster.Event {
	return c.WaitMembership(ctx, t, mark, nodes, members)
}

// formCluster starts nothing (New did) and waits until every node in
// nodes is in one membership of all of them.
func formCluster(ctx context.Context, t testing.TB, c *nscluster.Cluster, nodes []int) nscluster.Epoch {
	t.Helper()
	ev := waitMembership(ctx, t, c, 0, nodes, nodes)
	ep := ev[nodes[0]].Epoch()
	return ep
}

// lastInstall returns the latest of the events' times.
func lastInstall(evs map[int]nscluster.Event) time.Time {
	var last time.Time
	for _, e := range evs {
		if e.Time.After(last) {
			last = e.Time
		}
	}
	return last
}

// noEvent fails t if an event matching msg and pred (on any of nodes, all
// if empty) arrives before ctx ends; it returns when ctx ends.
func noEvent(ctx context.Context, t testing.TB, c *nscluster.Cluster, nodes []int, msg string, pred func(nscluster.Event) bool) {
	t.Helper()
	e, err := c.WaitEvent(ctx, 0, msg, nscluster.And(pred, func(e nscluster.Event) bool {
		return len(nodes) == 0 || slices.Contains(nodes, e.Node)
	}))
	if err == nil {
		t.Fatalf("unexpected event: %s", e.Format())
	}
}

// stats is a set of durations.
type stats []time.Duration

func (s stats) quantile(q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	i := int(q*float64(len(c)) + 0.5)
	if i >= len(c) {
		i = len(c) - 1
	}
	if q == 0.5 && len(c)%2 == 0 {
		return (c[len(c)/2-1] + c[len(c)/2]) / 2
	}
	if q == 0.5 {
		return c[len(c)/2]
	}
	return c[i]
}

func (s stats) String() string {
	if len(s) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d / %d ms (n=%d, min %d, max %d)", ms(s.quantile(0.5)), ms(s.quantile(0.95)), len(s), ms(slices.Min(s)), ms(slices.Max(s)))
}

func ms(d time.Duration) int64 { return d.Round(time.Millisecond).Milliseconds() }
