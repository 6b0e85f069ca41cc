package nscluster

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/testbed"
)

// Helpers the rig's test packages share.

// Start is New for a test package: it skips t with a hint when the rig
// cannot run (not root, tools missing, no cmd/clusterd in this tree) and
// logs the rig's warnings to t.
func Start(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	Require(t)
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
	return New(t, cfg)
}

// IDs returns 1..n.
func IDs(n int) []int {
	l := make([]int, n)
	for i := range l {
		l[i] = i + 1
	}
	return l
}

// Without returns l without x.
func Without(l []int, x ...int) []int {
	return slices.DeleteFunc(slices.Clone(l), func(v int) bool { return slices.Contains(x, v) })
}

// SameSet reports whether a and b hold the same ids.
func SameSet(a, b []int) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Installs reports whether e installs a membership (the contract logs
// "membership installed" at every install, "formed"/"joined" once).
func Installs(e Event) bool {
	switch e.Msg {
	case "membership installed", "formed", "joined":
		return true
	}
	return false
}

// WaitMembership waits until every node in nodes has installed, after
// mark, a membership of exactly members, and returns each node's install
// event. The installs must agree on the epoch.
func (c *Cluster) WaitMembership(ctx context.Context, t testing.TB, mark int, nodes, members []int) map[int]Event {
	t.Helper()
	out := map[int]Event{}
	for _, i := range nodes {
		e, err := c.WaitEvent(ctx, i, "", And(After(mark), Installs, func(e Event) bool {
			return SameSet(e.Ints("members"), members)
		}))
		if err != nil {
			t.Fatalf("membership %v on node %d: %v\n%s", members, i, err, c.Recent(mark))
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

// Recent renders the events since mark (not DEBUG), for failures: the
// last 20,000 bytes.
func (c *Cluster) Recent(mark int) string {
	var b strings.Builder
	for _, e := range c.Events(0, "", After(mark)) {
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
