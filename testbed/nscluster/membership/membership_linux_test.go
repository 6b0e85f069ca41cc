package membership

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/config"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationNodeCrash: five nodes form one membership; SIGKILL one;
// the other four install the same new membership (same epoch, same four
// members). Reference: docs/membership.md "Regroup"; MSCS paper (Vogels et
// al.), section "Regroup".
func TestIntegrationNodeCrash(t *testing.T) {
	c := newCluster(t, nscluster.Config{Nodes: 5})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	all := ids(5)
	epoch := formCluster(ctx, t, c, all)
	t.Logf("formed: 5 members at epoch %s", epoch)

	const victim = 4
	mark := c.Mark()
	killed := time.Now()
	if err := c.Node(victim).Kill(); err != nil {
		t.Fatal(err)
	}
	survivors := without(all, victim)
	evs := waitMembership(ctx, t, c, mark, survivors, survivors)
	ep := evs[survivors[0]].Epoch()
	if ep.Gen() <= epoch.Gen() {
		t.Fatalf("new membership at epoch %s, not after %s", ep, epoch)
	}
	first, err := c.WaitEvent(ctx, 0, msgSuspected, nscluster.After(mark))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kill → first suspicion (node %d): %v; kill → last install of %v at epoch %s: %v",
		first.Node, first.Time.Sub(killed).Round(time.Millisecond), survivors, ep, lastInstall(evs).Sub(killed).Round(time.Millisecond))
	for _, i := range survivors {
		st, err := c.Node(i).Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if nscluster.Epoch(st.Epoch) != ep || !sameSet(st.Members, survivors) {
			t.Errorf("node %d status: epoch %s members %v, want %s %v", i, st.Epoch, st.Members, ep, survivors)
		}
	}
}

// TestIntegrationOneNetworkDown: with one of two private networks cut for
// a node, its peers report "network down" within 3 s and nobody regroups
// (heartbeats still arrive on the other network); restored, "network up".
// Reference: docs/membership.md (suspicion needs silence on every network).
func TestIntegrationOneNetworkDown(t *testing.T) {
	c := newCluster(t, nscluster.Config{Nodes: 3})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	all := ids(3)
	epoch := formCluster(ctx, t, c, all)

	const cut = 2
	net := nscluster.Priv1
	mark := c.Mark()
	cutAt := time.Now()
	if err := c.Cut(cut, net); err != nil {
		t.Fatal(err)
	}
	isNet := func(peer int) func(nscluster.Event) bool {
		return func(e nscluster.Event) bool {
			p, _ := e.Int("peer")
			return p == peer && e.String("network") == string(net)
		}
	}
	within, cancelW := context.WithTimeout(ctx, 3*time.Second)
	for _, i := range without(all, cut) {
		e, err := c.WaitEvent(within, i, msgNetDown, nscluster.And(nscluster.After(mark), isNet(cut)))
		if err != nil {
			t.Fatalf("%v\n%s", err, recent(c, mark))
		}
		t.Logf("node %d: network %s down for node %d after %v", i, net, cut, e.Time.Sub(cutAt).Round(time.Millisecond))
	}
	cancelW()
	// The cut node sees the others go down on that network too.
	if _, err := c.WaitEvent(ctx, cut, msgNetDown, nscluster.After(mark)); err != nil {
		t.Fatal(err)
	}
	// No regroup, no suspicion, while the network stays cut.
	quiet, cancelQ := context.WithTimeout(ctx, 5*time.Second)
	noEvent(quiet, t, c, nil, "", nscluster.And(nscluster.After(mark), func(e nscluster.Event) bool {
		return e.Msg == msgRegroup || e.Msg == msgSuspected || e.Msg == msgInstalled || e.Msg == nscluster.MsgExited
	}))
	cancelQ()
	for _, i := range all {
		st, err := c.Node(i).Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if nscluster.Epoch(st.Epoch) != epoch || !sameSet(st.Members, all) {
			t.Errorf("node %d: epoch %s members %v, want %s %v", i, st.Epoch, st.Members, epoch, all)
		}
	}

	mark = c.Mark()
	if err := c.Restore(cut, net); err != nil {
		t.Fatal(err)
	}
	for _, i := range without(all, cut) {
		if _, err := c.WaitEvent(ctx, i, msgNetUp, nscluster.And(nscluster.After(mark), isNet(cut))); err != nil {
			t.Fatalf("%v\n%s", err, recent(c, mark))
		}
	}
}

// TestIntegrationPartition cuts both private networks between groups; the
// storage network stays up, so the quorum disk arbitrates. Reference:
// docs/membership.md "Partition survival".
func TestIntegrationPartition(t *testing.T) {
	t.Run("2+3", func(t *testing.T) {
		c := newCluster(t, nscluster.Config{Nodes: 5})
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		all := ids(5)
		formCluster(ctx, t, c, all)
		minority, majority := []int{1, 2}, []int{3, 4, 5}
		mark := c.Mark()
		cut := time.Now()
		if err := c.Partition(minority, majority); err != nil {
			t.Fatal(err)
		}
		evs := waitMembership(ctx, t, c, mark, majority, majority)
		t.Logf("partition → %v installed at epoch %s: %v", majority, evs[3].Epoch(), lastInstall(evs).Sub(cut).Round(time.Millisecond))
		for _, i := range minority {
			waitHalted(ctx, t, c, i, mark)
		}
		lostCleanly(ctx, t, c, minority, majority, mark)
		survives(ctx, t, c, majority, mark)
	})
	t.Run("1+1", func(t *testing.T) {
		c := newCluster(t, nscluster.Config{Nodes: 2})
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		formCluster(ctx, t, c, ids(2))
		mark := c.Mark()
		if err := c.Partition([]int{1}, []int{2}); err != nil {
			t.Fatal(err)
		}
		// Exactly one survives: the first to halt is the loser.
		e, err := c.WaitEvent(ctx, 0, nscluster.MsgExited, nscluster.After(mark))
		if err != nil {
			t.Fatalf("%v\n%s", err, recent(c, mark))
		}
		loser := e.Node
		winner := 3 - loser
		waitHalted(ctx, t, c, loser, mark)
		waitMembership(ctx, t, c, mark, []int{winner}, []int{winner})
		lostCleanly(ctx, t, c, []int{loser}, []int{winner}, mark)
		survives(ctx, t, c, []int{winner}, mark)
		t.Logf("node %d survived, node %d halted", winner, loser)
	})
}

// waitHalted waits for node i to exit with the halt status after mark.
func waitHalted(ctx context.Context, t *testing.T, c *nscluster.Cluster, i, mark int) {
	t.Helper()
	e, err := c.WaitEvent(ctx, i, nscluster.MsgExited, nscluster.After(mark))
	if err != nil {
		t.Fatalf("%v\n%s", err, recent(c, mark))
	}
	if st, _ := e.Int("status"); st != haltStatus {
		t.Fatalf("node %d exited with status %d, want %d (halt)\n%s", i, st, haltStatus, recent(c, mark))
	}
	h, err := c.WaitEvent(ctx, i, "", nscluster.And(nscluster.After(mark), func(e nscluster.Event) bool {
		return e.Msg == msgHalt || e.Msg == msgLostQuorum
	}))
	if err != nil {
		t.Fatalf("node %d exited %d without logging halt: %v", i, haltStatus, err)
	}
	t.Logf("node %d halted: %s", i, h.Format())
}

// lostCleanly checks the losers of a partition after they halted and the
// winners installed their membership: (a) no loser installed a membership
// of its own after mark, nor won an arbitration (a loser logs "regroup
// started", maybe "arbitration started" and "arbitration done" with
// won=false or "lost quorum", then "halt"; the stream of a node that has
// exited is complete); (b) the losers' keys are gone from the quorum LUN
// and the winners' are there, read by a reader independent of clusterd
// (Cluster.DiskKeys).
func lostCleanly(ctx context.Context, t *testing.T, c *nscluster.Cluster, losers, winners []int, mark int) {
	t.Helper()
	all := append(slices.Clone(losers), winners...)
	for _, i := range losers {
		if _, err := c.WaitEvent(ctx, i, nscluster.MsgExited, nscluster.After(mark)); err != nil {
			t.Fatal(err)
		}
		own := c.Events(i, "", nscluster.And(nscluster.After(mark), func(e nscluster.Event) bool {
			won, _ := e.Attrs["won"].(bool)
			// A late record of the membership from before the partition
			// ("joined" or "stabilized" read just after the mark) is not
			// one of its own.
			own := !sameSet(e.Ints("members"), all)
			return (installs(e) || e.Msg == msgStabilized) && own || (e.Msg == msgArbitrationDone && won)
		}))
		for _, e := range own {
			t.Errorf("loser node %d: %s", i, e.Format())
		}
	}
	keys, err := c.DiskKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range losers {
		if slices.Contains(keys, nscluster.NodeKey(i)) {
			t.Errorf("loser node %d: its key %#x is still registered (keys %#x)", i, nscluster.NodeKey(i), keys)
		}
	}
	for _, i := range winners {
		if !slices.Contains(keys, nscluster.NodeKey(i)) {
			t.Errorf("winner node %d: its key %#x is not registered (keys %#x)", i, nscluster.NodeKey(i), keys)
		}
	}
	t.Logf("losers %v installed nothing; keys on the LUN (libiscsi): %#x", losers, keys)
}

// survives checks that the nodes stay up and members of each other for
// three quorum checks (1 s each by default) after they installed their
// membership: a fenced partition would have found its key gone by then.
func survives(ctx context.Context, t *testing.T, c *nscluster.Cluster, nodes []int, mark int) {
	t.Helper()
	quiet, cancel := context.WithTimeout(ctx, 3500*time.Millisecond)
	defer cancel()
	noEvent(quiet, t, c, nodes, "", nscluster.And(nscluster.After(mark), func(e nscluster.Event) bool {
		return e.Msg == nscluster.MsgExited || e.Msg == msgHalt || e.Msg == msgLostQuorum
	}))
	for _, i := range nodes {
		st, err := c.Node(i).Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !sameSet(st.Members, nodes) {
			t.Errorf("node %d: members %v, want %v", i, st.Members, nodes)
		}
	}
}

// TestIntegrationWrongSecret: a sixth node configured with a different
// cluster secret is refused (its heartbeats and join requests do not
// authenticate: the members drop them as bad MACs) with a clear error in
// its log, and the membership does not change. Reference:
// docs/membership.md "Join" (a proof that does not verify ends the join
// with a fatal, explicit reason).
func TestIntegrationWrongSecret(t *testing.T) {
	c := newCluster(t, nscluster.Config{Nodes: 6, Deferred: []int{6}})
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	members := ids(5)
	epoch := formCluster(ctx, t, c, members)
	before := map[int]map[string]map[string]uint64{}
	for _, i := range members {
		before[i] = dropCounters(ctx, t, c, i)
	}

	wrong := filepath.Join(c.Dir, "wrong.key")
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 7)
	}
	if err := os.WriteFile(wrong, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	mark := c.Mark()
	if err := c.Node(6).Start(func(cfg *config.File) { cfg.Cluster.KeyFile = wrong }); err != nil {
		t.Fatal(err)
	}
	// The refusal names the secret (or the authentication) in node 6's
	// log, within a few join attempts.
	refusal, cancelR := context.WithTimeout(ctx, 15*time.Second)
	e, err := c.WaitEvent(refusal, 6, "", nscluster.And(nscluster.After(mark), func(e nscluster.Event) bool {
		s := strings.ToLower(e.Format())
		return strings.Contains(s, "secret") || strings.Contains(s, "authenticat")
	}))
	cancelR()
	if err != nil {
		t.Errorf("no refusal naming the cluster secret in node 6's log: %v\nnode 6 log:\n%s", err, c.LogTail(6, 12))
	} else {
		t.Logf("node 6: %s", e.Format())
	}
	if ev := c.Events(6, "", nscluster.And(nscluster.After(mark), installs)); len(ev) > 0 {
		t.Fatalf("node 6 installed a membership: %s", ev[0].Format())
	}
	// It stops (exit status 1: a refusal is not a halt) without ever
	// contending for the quorum disk (docs/clusterd.md, Contract).
	exit, cancelE := context.WithTimeout(ctx, 10*time.Second)
	if e, err := c.WaitEvent(exit, 6, nscluster.MsgExited, nscluster.After(mark)); err != nil {
		t.Errorf("node 6 keeps running after the refusal: %v", err)
	} else if st, _ := e.Int("status"); st != 1 {
		t.Errorf("node 6 exited with status %d, want 1", st)
	}
	cancelE()
	if ev := c.Events(6, "arbitration started", nscluster.After(mark)); len(ev) > 0 {
		t.Errorf("node 6 contended for the quorum disk: %s", ev[0].Format())
	}
	// Whatever node 6 tried (joins, forming on the disk), the membership
	// is what it was: no regroup, no suspicion, same epoch.
	quiet, cancelQ := context.WithTimeout(ctx, 3*time.Second)
	noEvent(quiet, t, c, members, "", nscluster.And(nscluster.After(mark), func(e nscluster.Event) bool {
		return e.Msg == msgRegroup || e.Msg == msgInstalled || e.Msg == msgSuspected || e.Msg == nscluster.MsgExited
	}))
	cancelQ()
	for _, i := range members {
		st, err := c.Node(i).Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if nscluster.Epoch(st.Epoch) != epoch || !sameSet(st.Members, members) {
			t.Errorf("node %d: epoch %s members %v, want %s %v", i, st.Epoch, st.Members, epoch, members)
		}
		// Every member heard node 6 and dropped what it sent.
		after := dropCounters(ctx, t, c, i)
		hb := after["heartbeat_dropped"]["bad MAC"] - before[i]["heartbeat_dropped"]["bad MAC"]
		var rg uint64
		for k, v := range after["regroup_dropped"] {
			if k != "duplicate" { // copies sent on the other network: normal
				rg += v - before[i]["regroup_dropped"][k]
			}
		}
		t.Logf("node %d dropped %d heartbeats (bad MAC) and %d regroup messages %v", i, hb, rg, after["regroup_dropped"])
		if hb == 0 {
			t.Errorf("node %d dropped no heartbeat for a bad MAC", i)
		}
	}
}

// dropCounters returns node i's heartbeat_dropped and regroup_dropped
// status counters.
func dropCounters(ctx context.Context, t *testing.T, c *nscluster.Cluster, i int) map[string]map[string]uint64 {
	t.Helper()
	st, err := c.Node(i).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]map[string]uint64{
		"heartbeat_dropped": st.Counters.HeartbeatDropped,
		"regroup_dropped":   st.Counters.RegroupDropped,
	}
}
