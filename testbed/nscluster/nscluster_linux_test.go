package nscluster

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed"
)

// TestIntegrationRig builds a three-node rig around the stand-in daemon
// (internal/standin: UDP datagrams on every private network, clusterd's log
// shape) and checks the rig's own promises: processes in their namespaces,
// the event stream, the admin socket, cuts in both directions, partitions
// of the private networks only, signals and exit statuses, and a teardown
// that leaves nothing in the host's namespace or anywhere else.
func TestIntegrationRig(t *testing.T) {
	Require(t)
	standin, err := testbed.BuildGo(t.Context(), "./testbed/nscluster/internal/standin")
	if err != nil {
		t.Fatal(err)
	}
	c := New(t, Config{
		Nodes: 3, Binary: standin, Deferred: []int{3},
		Timing: Timing{HeartbeatInterval: 50 * time.Millisecond, HeartbeatThreshold: 4},
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	wait := func(node int, msg string, pred func(Event) bool) Event {
		t.Helper()
		e, err := c.WaitEvent(ctx, node, msg, pred)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	peerNet := func(peer int, nw Net) func(Event) bool {
		return func(e Event) bool { p, _ := e.Int("peer"); return p == peer && e.String("network") == string(nw) }
	}
	for i := 1; i <= 2; i++ {
		wait(i, "formed", nil)
	}
	if c.Node(3).Running() {
		t.Fatal("deferred node 3 runs")
	}
	if err := c.Node(3).Start(); err != nil {
		t.Fatal(err)
	}
	wait(3, "formed", nil)
	st, err := c.Node(2).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != 2 || st.Name != "node2" || len(st.Members) != 3 {
		t.Fatalf("status of node 2: %+v", st)
	}
	// The daemon runs in its namespace: its addresses are there.
	out, err := c.Node(1).Exec(ctx, "ip", "-br", "addr")
	if err != nil || !strings.Contains(string(out), "10.97.1.11/24") || !strings.Contains(string(out), "10.98.0.11/24") {
		t.Fatalf("node 1 addresses: %v\n%s", err, out)
	}

	// A cut stops traffic both ways.
	mark := c.Mark()
	if err := c.Cut(1, Priv1); err != nil {
		t.Fatal(err)
	}
	wait(2, "network down", And(After(mark), peerNet(1, Priv1)))
	wait(1, "network down", And(After(mark), peerNet(2, Priv1)))
	mark = c.Mark()
	if err := c.Restore(1, Priv1); err != nil {
		t.Fatal(err)
	}
	wait(2, "network up", And(After(mark), peerNet(1, Priv1)))
	wait(1, "network up", And(After(mark), peerNet(3, Priv1)))

	// A partition splits both private networks, and only between groups.
	mark = c.Mark()
	if err := c.Partition([]int{1}, []int{2, 3}); err != nil {
		t.Fatal(err)
	}
	for _, nw := range []Net{Priv1, Priv2} {
		wait(2, "network down", And(After(mark), peerNet(1, nw)))
		wait(1, "network down", And(After(mark), peerNet(3, nw)))
	}
	if ev := c.Events(2, "network down", And(After(mark), func(e Event) bool { p, _ := e.Int("peer"); return p == 3 })); len(ev) > 0 {
		t.Fatalf("node 2 lost node 3 in the same group: %s", ev[0].Format())
	}
	mark = c.Mark()
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	wait(2, "network up", And(After(mark), peerNet(1, Priv2)))
	wait(1, "network up", And(After(mark), peerNet(3, Priv1)))

	// Signals and exit statuses.
	if err := c.Node(3).Kill(); err != nil {
		t.Fatal(err)
	}
	if e := wait(3, MsgExited, nil); e.String("signal") != "killed" {
		t.Fatalf("node 3 after SIGKILL: %s", e.Format())
	}
	if err := c.Node(2).Term(); err != nil {
		t.Fatal(err)
	}
	if e := wait(2, MsgExited, nil); e.String("status") != "0" {
		t.Fatalf("node 2 after SIGTERM: %s", e.Format())
	}
	if err := c.Node(2).Restart(); err != nil {
		t.Fatal(err)
	}
	wait(2, "formed", After(mark))
	if _, err := c.Node(1).Spawn("sh", "-c", "while :; do :; done"); err != nil {
		t.Fatal(err)
	}

	// Nothing of the rig is in the host's namespace, and Close removes
	// everything.
	host, err := exec.Command("ip", "-br", "link").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"n1-priv1", "priv1", "stor"} {
		for _, l := range strings.Split(string(host), "\n") {
			if f := strings.Fields(l); len(f) > 0 && strings.SplitN(f[0], "@", 2)[0] == name {
				t.Fatalf("%s in the host's namespace", name)
			}
		}
	}
	pids := []int{c.Node(1).Pid(), c.Node(2).Pid()}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	list, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(list), c.Prefix) {
		t.Fatalf("namespaces left:\n%s", list)
	}
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Fatalf("process %d left", pid)
		}
	}
	if _, err := os.Stat(c.Dir); err == nil {
		t.Fatalf("%s left", c.Dir)
	}
}
