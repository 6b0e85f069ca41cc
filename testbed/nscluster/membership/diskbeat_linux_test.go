package membership

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

const (
	msgPillSent = "poison pill sent"
	msgPillRead = "poison pill read"
)

// diskBeatBound is the documented bound (docs/design.md, "The disk as the
// last heartbeat path") from the survivors' install to the partitioned
// node's halt when its disk path works: it reads its mailbox after every
// slot write, one disk beat (100 ms) apart, so two beats plus a few
// commands and the exit; the margin covers process exit and the rig's
// event delivery.
const diskBeatBound = 2*100*time.Millisecond + 50*time.Millisecond + 450*time.Millisecond

// TestIntegrationDiskHeartbeat: every private network of one node is cut
// while its iSCSI path to the quorum LUN works. The others regroup it out;
// it still beats on the disk, so the new membership's leader tells it
// apart from a dead node and writes the poison pill into its mailbox; it
// reads the pill (or finds its key gone) and halts within the bound; its
// key is gone from the LUN, read by a reader independent of clusterd.
// Reference: MSCS paper (Vogels et al.), sections "Quorum Resource" and
// "Node Manager": the quorum disk as
// the last path that tells a partitioned node from a dead one.
func TestIntegrationDiskHeartbeat(t *testing.T) {
	c := newCluster(t, nscluster.Config{Nodes: 3})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	all := ids(3)
	epoch := formCluster(ctx, t, c, all)

	const victim = 3
	survivors := without(all, victim)
	mark := c.Mark()
	cutAt := time.Now()
	for _, nw := range []nscluster.Net{nscluster.Priv1, nscluster.Priv2} {
		if err := c.Cut(victim, nw); err != nil {
			t.Fatal(err)
		}
	}
	evs := waitMembership(ctx, t, c, mark, survivors, survivors)
	installed := lastInstall(evs)
	if ep := evs[survivors[0]].Epoch(); ep.Gen() <= epoch.Gen() {
		t.Fatalf("survivors installed epoch %s, not after %s", ep, epoch)
	}
	sent, err := c.WaitEvent(ctx, 0, msgPillSent, nscluster.And(nscluster.After(mark), func(e nscluster.Event) bool {
		p, _ := e.Int("peer")
		return p == victim
	}))
	if err != nil {
		t.Fatalf("no poison pill sent to node %d (it still beats on the disk): %v\n%s", victim, err, recent(c, mark))
	}
	if !slices.Contains(survivors, sent.Node) {
		t.Fatalf("node %d sent the pill, not a survivor", sent.Node)
	}
	waitHalted(ctx, t, c, victim, mark)
	exit, _ := c.WaitEvent(ctx, victim, nscluster.MsgExited, nscluster.After(mark))
	// The node's event stream is complete once it exited.
	how := "found its key gone before it read the pill (its slot write refused, or its own arbitration)"
	if read := c.Events(victim, msgPillRead, nscluster.After(mark)); len(read) > 0 {
		how = "read the pill: " + read[0].String("reason")
	}
	sinceInstall, sinceCut := exit.Time.Sub(installed), exit.Time.Sub(cutAt)
	t.Logf("cut → survivors %v installed: %v; install → pill sent by node %d: %v; install → node %d exited: %v (cut → exit %v); it %s",
		survivors, installed.Sub(cutAt).Round(time.Millisecond), sent.Node, sent.Time.Sub(installed).Round(time.Millisecond),
		victim, sinceInstall.Round(time.Millisecond), sinceCut.Round(time.Millisecond), how)
	if sinceInstall > diskBeatBound {
		t.Errorf("node %d exited %v after the survivors installed, more than the bound %v", victim, sinceInstall, diskBeatBound)
	}

	keys, err := c.DiskKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(keys, nscluster.NodeKey(victim)) {
		t.Fatalf("node %d's key %#x is still on the LUN: %x", victim, nscluster.NodeKey(victim), keys)
	}
	for _, i := range survivors {
		if !slices.Contains(keys, nscluster.NodeKey(i)) {
			t.Errorf("survivor %d's key %#x is not on the LUN: %x", i, nscluster.NodeKey(i), keys)
		}
	}
	survives(ctx, t, c, survivors, mark)
}
