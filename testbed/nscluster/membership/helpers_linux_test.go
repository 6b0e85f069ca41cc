package membership

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed"
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

// newCluster starts a rig of real clusterd processes, or skips t with a
// hint (not root, tools missing, no cmd/clusterd in this tree).
func newCluster(t testing.TB, cfg nscluster.Config) *nscluster.Cluster {
	t.Helper()
	nscluster.Require(t)
	if cfg.Binary == "" {
		root, err := testbed.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := filepath.Glob(filepath.Join(root, "cmd", "clusterd", "*.go")); len(m) == 0 {
			t.Skip("cmd/clusterd is not in this tree yet")
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return nscluster.New(t, cfg)
}

// ids returns 1..n.
func ids(n int) []int {
	l := make([]int, n)
	for i := range l {
		l[i] = i + 1
	}
	return l
}

func without(l []int, x ...int) []int {
	return slices.DeleteFunc(slices.Clone(l), func(v int) bool { return slices.Contains(x, v) })
}

func sameSet(a, b []int) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// installs reports whether e installs a membership (the contract logs
// "membership installed" at every install, "formed"/"joined" once).
func installs(e nscluster.Event) bool {
	switch e.Msg {
	case msgInstalled, msgFormed, msgJoined:
		return true
	}
	return false
}

// waitMembership waits until every node in nodes has installed, after
// mark, a membership of exactly members, and returns each node's install
// event. The installs must agree on the epoch.
func waitMembership(ctx context.Context, t testing.TB, c *nscluster.Cluster, mark int, nodes, members []int) map[int]nscluster.Event {
	t.Helper()
	out := map[int]nscluster.Event{}
	for _, i := range nodes {
		e, err := c.WaitEvent(ctx, i, "", nscluster.And(nscluster.After(mark), installs, func(e nscluster.Event) bool {
			return sameSet(e.Ints("members"), members)
		}))
		if err != nil {
			t.Fatalf("membership %v on node %d: %v\n%s", members, i, err, recent(c, mark))
		}
		out[i] = e
	}
	epoch := out[nodes[0]].Epoch()
	for i, e := range out {
		if ep := e.Epoch(); ep != epoch {
			t.Fatalf("node %d installed %v at epoch %s, node %d at epoch %s", i, members, ep, nodes[0], epoch)
		}
	}
	return out
}

// recent renders the membership-related events since mark, for failures.
func recent(c *nscluster.Cluster, mark int) string {
	var b strings.Builder
	for _, e := range c.Events(0, "", nscluster.After(mark)) {
		if e.Level == "DEBUG" {
			continue
		}
		b.WriteString(e.Format())
		b.WriteByte('\n')
	}
	s := b.String()
	if len(s) > 20000 {
		s = "...\n" + s[len(s)-20000:]
	}
	return s
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
