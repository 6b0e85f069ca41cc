package membership

import (
	"context"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// quorumOwner polls the nodes' status until exactly one of them reports
// owning the quorum disk, and returns it.
func quorumOwner(ctx context.Context, t *testing.T, c *nscluster.Cluster, nodes []int) int {
	t.Helper()
	for {
		owners := []int{}
		for _, i := range nodes {
			st, err := c.Node(i).Status(ctx)
			if err != nil {
				t.Fatalf("node %d status: %v", i, err)
			}
			if st.QuorumOwner {
				owners = append(owners, i)
			}
		}
		if len(owners) == 1 {
			return owners[0]
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no single quorum owner among %v (owners %v): %v", nodes, owners, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestIntegrationFrozenNodeFenced: the zombie. Three nodes; the quorum
// owner is frozen (SIGSTOP) for 3 s, longer than detection and
// arbitration; the other two install a membership of themselves and one of
// them owns the disk. Thawed (SIGCONT), the old owner must find itself
// fenced (its key removed, outside the membership) and halt with status 3
// within a quorum check interval plus margin, and the survivors must not
// notice: same epoch, still members, no halt. Reference: docs/design.md,
// "Quorum arbitration" (self-fence on the quorum check); docs/membership.md
// "Partition survival: the rule implemented".
func TestIntegrationFrozenNodeFenced(t *testing.T) {
	c := newCluster(t, nscluster.Config{Nodes: 3})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	all := ids(3)
	epoch := formCluster(ctx, t, c, all)
	own, cancelO := context.WithTimeout(ctx, 10*time.Second)
	zombie := quorumOwner(own, t, c, all)
	cancelO()
	survivors := without(all, zombie)
	t.Logf("formed at epoch %s; quorum owner node %d", epoch, zombie)

	const (
		freeze = 3 * time.Second
		// QuorumCheckInterval is the daemon's default (the rig does not
		// override it); the margin covers a disk read and the exit.
		quorumCheck = time.Second
		margin      = 1500 * time.Millisecond
	)
	mark := c.Mark()
	frozenAt := time.Now()
	if err := c.Node(zombie).Stop(); err != nil {
		t.Fatal(err)
	}
	evs := waitMembership(ctx, t, c, mark, survivors, survivors)
	installed := lastInstall(evs)
	ep := evs[survivors[0]].Epoch()
	if ep.Gen() <= epoch.Gen() {
		t.Fatalf("survivors installed epoch %s, not after %s", ep, epoch)
	}
	ownS, cancelS := context.WithTimeout(ctx, 5*time.Second)
	newOwner := quorumOwner(ownS, t, c, survivors)
	cancelS()
	ownedAt := time.Now()
	if elapsed := time.Since(frozenAt); elapsed >= freeze {
		t.Fatalf("survivors took %v to install and own the disk, longer than the %v freeze", elapsed, freeze)
	}
	time.Sleep(time.Until(frozenAt.Add(freeze)))

	thaw := c.Mark()
	thawedAt := time.Now()
	if err := c.Node(zombie).Cont(); err != nil {
		t.Fatal(err)
	}
	deadline, cancelD := context.WithTimeout(ctx, quorumCheck+margin)
	e, err := c.WaitEvent(deadline, zombie, nscluster.MsgExited, nscluster.After(thaw))
	cancelD()
	if err != nil {
		t.Fatalf("node %d still running %v after the thaw (quorum check %v + margin %v): %v\n%s",
			zombie, time.Since(thawedAt).Round(time.Millisecond), quorumCheck, margin, err, recent(c, mark))
	}
	exitedAt := time.Now()
	waitHalted(ctx, t, c, zombie, thaw)
	t.Logf("freeze → survivors %v installed epoch %s: %v (node %d owns the disk at %v); thaw → node %d exited: %v (event time %v)",
		survivors, ep, installed.Sub(frozenAt).Round(time.Millisecond), newOwner, ownedAt.Sub(frozenAt).Round(time.Millisecond),
		zombie, exitedAt.Sub(thawedAt).Round(time.Millisecond), e.Time.Sub(thawedAt).Round(time.Millisecond))

	for _, e := range c.Events(zombie, "", nscluster.After(thaw)) {
		if e.Level != "DEBUG" {
			t.Logf("after thaw: %s", e.Format())
		}
	}

	// The survivors did not notice: nothing installed, nobody halted, same
	// epoch and members, the disk still owned by the same survivor.
	survives(ctx, t, c, survivors, thaw)
	if evs := c.Events(0, "", nscluster.And(nscluster.After(thaw), installs, func(e nscluster.Event) bool {
		return e.Node != zombie
	})); len(evs) > 0 {
		t.Errorf("survivors installed a membership after the thaw: %s", evs[0].Format())
	}
	for _, i := range survivors {
		st, err := c.Node(i).Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if nscluster.Epoch(st.Epoch) != ep {
			t.Errorf("node %d at epoch %s after the thaw, want %s", i, st.Epoch, ep)
		}
	}
	ownA, cancelA := context.WithTimeout(ctx, 2*time.Second)
	if after := quorumOwner(ownA, t, c, survivors); after != newOwner {
		t.Errorf("quorum owner %d after the thaw, was %d", after, newOwner)
	}
	cancelA()
}
