package membership

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationSoakCPUHog is the false-suspicion soak (BENCHMARKS.md
// "Targets": "false failovers in 10 minutes with a CPU hog on every node:
// 0"): a cluster at
// default timings, one busy-loop process in every node's namespace, for
// WOLFPACK_SOAK (a duration, e.g. 10m; make soak). Any "peer suspected" or
// "regroup started" fails it. WOLFPACK_SOAK_NODES sets the size (default 5).
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
	c := newCluster(t, nscluster.Config{Nodes: nodes})
	ctx, cancel := context.WithTimeout(t.Context(), dur+2*time.Minute)
	defer cancel()
	all := ids(nodes)
	epoch := formCluster(ctx, t, c, all)

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
	t.Logf("soak: %d nodes, %d CPU hogs, %v, default timings, epoch %s", nodes, nodes, dur, epoch)

	// Watch for the whole duration; the first regroup or exit is reported
	// at once but the soak goes on, to count everything.
	soak, cancelSoak := context.WithTimeout(ctx, dur)
	defer cancelSoak()
	next := mark
	for {
		e, err := c.WaitEvent(soak, 0, "", nscluster.And(nscluster.After(next), func(e nscluster.Event) bool {
			switch e.Msg {
			case msgRegroup, msgSuspected, msgNetDown, msgInstalled, msgHalt, msgLostQuorum, nscluster.MsgExited:
				return true
			}
			return false
		}))
		if err != nil {
			break // the soak's time is up
		}
		t.Logf("at %v: %s", e.Time.Sub(start).Round(time.Millisecond), e.Format())
		next = e.Seq + 1
	}
	elapsed := time.Since(start)

	count := func(msg string) int { return len(c.Events(0, msg, nscluster.After(mark))) }
	regroups, suspected, down := count(msgRegroup), count(msgSuspected), count(msgNetDown)
	exits := count(nscluster.MsgExited)
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
		// Every peer sends on every private network each interval (100 ms
		// by default): what did not arrive was lost or late past the
		// detector's replay window.
		got := heartbeatsAccepted(ctx, t, c, i) - accepted0[i]
		want := float64(nodes-1) * 2 * elapsed.Seconds() / 0.1
		t.Logf("node %d accepted %d heartbeats during the soak, %.1f%% of the %.0f sent to it", i, got, 100*float64(got)/want, want)
	}
	t.Logf("SOAK RESULT: nodes=%d hogs=%d duration=%v regroup_started=%d peer_suspected=%d network_down=%d exits=%d",
		nodes, nodes, elapsed.Round(time.Second), regroups, suspected, down, exits)
	if regroups+suspected+exits > 0 {
		t.Errorf("false suspicion under CPU load: %d regroups, %d suspicions, %d exits", regroups, suspected, exits)
	}
}

func heartbeatsAccepted(ctx context.Context, t *testing.T, c *nscluster.Cluster, i int) uint64 {
	t.Helper()
	st, err := c.Node(i).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.Counters.HeartbeatAccepted
}
