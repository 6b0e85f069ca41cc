package membership

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/loadgen"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/internal/config"
	"github.com/wolfpack-ha/wolfpack/internal/rtsched"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationSoakCPUHog is the false-suspicion soak (BENCHMARKS.md
// "Targets": "false failovers in 10 minutes with a CPU hog on every node:
// 0"): a cluster at the timing profile WOLFPACK_SOAK_PROFILE (default
// "default"; make soak SOAK_PROFILE=fast), one busy-loop process in every
// node's namespace, for WOLFPACK_SOAK (a duration, e.g. 10m; make soak).
// A group with an ip_address is online on one node throughout, so that a
// lease that runs out (a disk heartbeat too late under the load) shows as
// well as a suspicion does. Any "peer suspected", "regroup started", a
// process exit, a change of the resource's state or a failover manager
// event of the group (a failure, a restart, a claim, an offline) fails it.
// WOLFPACK_SOAK_NODES sets the size (default 5); WOLFPACK_SOAK_STORAGE_RT
// tgtd's SCHED_RR priority (default 10; 0: normal scheduling).
func TestIntegrationSoakCPUHog(t *testing.T) {
	durEnv := os.Getenv("WOLFPACK_SOAK")
	if durEnv == "" {
		t.Skip("set WOLFPACK_SOAK=10m (make soak) to run the CPU-hog soak")
	}
	dur, err := time.ParseDuration(durEnv)
	if err != nil {
		t.Fatalf("WOLFPACK_SOAK=%q: %v", durEnv, err)
	}
	nodes := 5
	if s := os.Getenv("WOLFPACK_SOAK_NODES"); s != "" {
		if nodes, err = strconv.Atoi(s); err != nil {
			t.Fatalf("WOLFPACK_SOAK_NODES=%q: %v", s, err)
		}
	}
	profile := cmp.Or(os.Getenv("WOLFPACK_SOAK_PROFILE"), config.DefaultProfile)
	timing, ok := config.Profiles[profile]
	if !ok {
		t.Fatalf("WOLFPACK_SOAK_PROFILE=%q: unknown profile, want one of %s", profile, strings.Join(config.ProfileNames(), ", "))
	}
	// tgtd stands for the storage array, which the nodes' hogs do not
	// load: at SCHED_RR, as the daemons (WOLFPACK_SOAK_STORAGE_RT=0: at
	// normal scheduling, sharing the cores with the hogs).
	storageRT := 10
	if s := os.Getenv("WOLFPACK_SOAK_STORAGE_RT"); s != "" {
		if storageRT, err = strconv.Atoi(s); err != nil || storageRT < 0 || storageRT > rtsched.MaxPriority {
			t.Fatalf("WOLFPACK_SOAK_STORAGE_RT=%q: want 0..%d", s, rtsched.MaxPriority)
		}
	}
	c := newCluster(t, nscluster.Config{Nodes: nodes, Timing: nscluster.Timing{Profile: profile}, StorageRealtime: storageRT})
	ctx, cancel := context.WithTimeout(t.Context(), dur+2*time.Minute)
	defer cancel()
	all := ids(nodes)
	epoch := formCluster(ctx, t, c, all)
	owner := soakGroup(ctx, t, c, all)

	// clusterd's scheduling (realtime_priority, default SCHED_RR 10;
	// docs/clusterd.md): reported, so that a run says what it measured.
	policies := map[string]int{}
	for _, i := range all {
		pol, prio, err := rtsched.Policy(c.Node(i).Pid())
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		policies[fmt.Sprintf("%s %d", pol, prio)]++
	}
	for _, i := range all {
		if _, err := c.Node(i).Spawn("sh", "-c", "while :; do :; done"); err != nil {
			t.Fatal(err)
		}
	}
	accepted0 := map[int]uint64{}
	for _, i := range all {
		accepted0[i] = heartbeatsAccepted(ctx, t, c, i)
	}
	mark := c.Mark()
	start := time.Now()
	t.Logf("soak: %d nodes, %d CPU hogs, %v, profile %s (heartbeat %v x %d, disk beat %v, lease %v), epoch %s, group %s online on node %d; load average %s",
		nodes, nodes, dur, profile, timing.HeartbeatInterval, timing.HeartbeatThreshold, timing.HeartbeatInterval, timing.Lease, epoch, soakGroupName, owner, loadgen.LoadAvg())

	// Watch for the whole duration; the first regroup or exit is reported
	// at once but the soak goes on, to count everything.
	soak, cancelSoak := context.WithTimeout(ctx, dur)
	defer cancelSoak()
	next := mark
	// The first events are shown as they come; a soak that goes wrong
	// goes on wrong, and the counts at the end say how much.
	const maxLogged = 60
	logged := 0
	for {
		e, err := c.WaitEvent(soak, 0, "", nscluster.And(nscluster.After(next), func(e nscluster.Event) bool {
			switch e.Msg {
			case msgRegroup, msgSuspected, msgNetDown, msgInstalled, msgHalt, msgLostQuorum, nscluster.MsgExited:
				return true
			}
			return groupTrouble(e)
		}))
		if err != nil {
			break // the soak's time is up
		}
		if logged++; logged <= maxLogged {
			t.Logf("at %v: %s", e.Time.Sub(start).Round(time.Millisecond), e.Format())
		} else if logged == maxLogged+1 {
			t.Logf("(more events: counted below, not shown)")
		}
		next = e.Seq + 1
	}
	elapsed := time.Since(start)

	count := func(msg string) int { return len(c.Events(0, msg, nscluster.After(mark))) }
	regroups, suspected, down := count(msgRegroup), count(msgSuspected), count(msgNetDown)
	exits := count(nscluster.MsgExited)
	trouble := len(c.Events(0, "", nscluster.And(nscluster.After(mark), groupTrouble)))
	for _, i := range all {
		st, err := c.Node(i).Status(ctx)
		if err != nil {
			t.Errorf("node %d: %v", i, err)
			continue
		}
		if nscluster.Epoch(st.Epoch) != epoch || !sameSet(st.Members, all) {
			t.Errorf("node %d: epoch %s members %v, want %s %v", i, st.Epoch, st.Members, epoch, all)
		}
		t.Logf("node %d networks %+v counters %+v", i, st.Networks, st.Counters)
		// Every peer sends on every private network each interval: what
		// did not arrive was lost or late past the detector's replay
		// window.
		got := heartbeatsAccepted(ctx, t, c, i) - accepted0[i]
		want := float64(nodes-1) * 2 * elapsed.Seconds() / timing.HeartbeatInterval.Seconds()
		t.Logf("node %d accepted %d heartbeats during the soak, %.1f%% of the %.0f sent to it", i, got, 100*float64(got)/want, want)
	}
	if on, err := c.Node(owner).HasAddr(soakVIP); err != nil || !on {
		t.Errorf("the group's address %v is not on node %d at the end (%v)", soakVIP, owner, err)
	}
	t.Logf("SOAK RESULT: profile=%s nodes=%d hogs=%d duration=%v regroup_started=%d peer_suspected=%d network_down=%d exits=%d group_events=%d load_average=%q clusterd_scheduling=%v tgtd_rr_priority=%d",
		profile, nodes, nodes, elapsed.Round(time.Second), regroups, suspected, down, exits, trouble, loadgen.LoadAvg(), policies, storageRT)
	if regroups+suspected+exits+trouble > 0 {
		t.Errorf("false suspicion or failover under CPU load: %d regroups, %d suspicions, %d exits, %d events of the group", regroups, suspected, exits, trouble)
	}
}

// The soak's group: one ip_address on the public network.
const (
	soakGroupName = "soak"
	soakRes       = "soak-ip"
)

var soakVIP = netip.MustParseAddr("10.97.0.50")

// soakGroup creates the soak's group through node 1 once every node's
// node object exists (the failover manager creates them), waits until it
// is online and returns its owner.
func soakGroup(ctx context.Context, t *testing.T, c *nscluster.Cluster, all []int) int {
	t.Helper()
	cl := clusterapi.NewClient(c.Node(1).Socket)
	defer cl.Close()
	mark := c.Mark()
	for _, i := range all {
		for {
			if _, err := cl.Get(ctx, "node", fmt.Sprintf("node%d", i), true); err == nil {
				break
			} else if ctx.Err() != nil {
				t.Fatalf("node object node%d: %v", i, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := cl.Commit(ctx, clusterapi.Tx{Ops: []clusterapi.Op{
		{Op: "create", Kind: "group", Name: soakGroupName, Props: map[string]any{}},
		{Op: "create", Kind: "resource", Name: soakRes, Props: map[string]any{
			"group": soakGroupName, "type": "ip_address", "address": soakVIP.String(), "prefix_len": 24, "interface": "eth0"}},
	}}); err != nil {
		t.Fatalf("create the soak's group: %v", err)
	}
	e, err := c.WaitEvent(ctx, 0, "group online", nscluster.And(nscluster.After(mark), func(e nscluster.Event) bool {
		return e.String("group") == soakGroupName
	}))
	if err != nil {
		t.Fatalf("%v\n%s", err, recent(c, mark))
	}
	return e.Node
}

// groupTrouble: an event that says the soak's group or its resource did
// anything but stay online (resmon's state reports, the failover
// manager's events, a lease that ran out).
func groupTrouble(e nscluster.Event) bool {
	if strings.HasPrefix(e.Msg, "lease ") {
		return true
	}
	if e.String("resource") != soakRes && e.String("group") != soakGroupName {
		return false
	}
	switch e.Msg {
	case "state", "resource failed", "restart", "push", "claim", "lease wait", "group offline", "group online", "group failed", "moved":
		return true
	}
	return false
}

func heartbeatsAccepted(ctx context.Context, t *testing.T, c *nscluster.Cluster, i int) uint64 {
	t.Helper()
	st, err := c.Node(i).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.Counters.HeartbeatAccepted
}
