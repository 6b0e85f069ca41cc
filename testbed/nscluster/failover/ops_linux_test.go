package failover

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// cli runs the cluster binary against node i's admin socket and returns
// its stdout, stderr and exit status.
func (r *rig) cli(i int, args ...string) (string, string, int) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.c.Config().CLI, append(args, "--socket", r.c.Node(i).Socket)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	}
	r.t.Fatalf("cluster %s: %v", strings.Join(args, " "), err)
	return "", "", -1
}

// mustCLI runs the cluster binary and fails the test unless it exits 0.
func (r *rig) mustCLI(i int, args ...string) string {
	r.t.Helper()
	out, errOut, code := r.cli(i, args...)
	if code != 0 {
		r.t.Fatalf("cluster %s (through node %d): exit %d\nstdout:\n%s\nstderr:\n%s\n%s", strings.Join(args, " "), i, code, out, errOut, r.c.Recent(0))
	}
	return out
}

// exitOf waits for node i's process to exit and returns its status.
func (r *rig) exitOf(i int) int {
	r.t.Helper()
	st, err := r.c.Node(i).Wait(r.ctx)
	if err != nil {
		r.t.Fatalf("%v\n%s", err, r.c.Recent(0))
	}
	return st.ExitCode()
}

// TestIntegrationLongOperations runs the long operations and the node
// lifecycle commands with the cluster binary on a two-node cluster with
// the virtual server, and the Cluster API's example program alongside:
//
//   - group move with progress, ending online on the target (exit 0);
//     whereis -follow, started before, prints the owner changing;
//   - a move to a paused node: the failover manager cancels it, the
//     command exits 1 with its reason, the group stays;
//   - node drain of the owner, from the other node: the group moves,
//     the node is paused and draining; node resume;
//   - node evict: the group moves away, the evicted node's clusterd
//     exits 4 (evicted) and its key is gone from the quorum LUN (read
//     with libiscsi); started again, its join is refused (exit 4, the
//     refusal naming the eviction); node add, and it joins again;
//   - leave on the owner: the group moves away with progress, clusterd
//     exits 0.
func TestIntegrationLongOperations(t *testing.T) {
	start := time.Now()
	r := newRig(t, 2, 3*time.Minute)
	r.createVS(vsOpts{}, 1)
	t.Logf("two nodes and the virtual server up: %d ms", ms(time.Since(start)))

	// The example program follows the group through node 2.
	whereis, err := testbed.BuildGo(r.ctx, "./clusterapi/examples/whereis")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wstop := context.WithCancel(r.ctx)
	defer wstop()
	wcmd := exec.CommandContext(wctx, whereis, "-socket", r.c.Node(2).Socket, "-follow", group)
	wout, err := wcmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := wcmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wmu sync.Mutex
	var wlines []string
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		sc := bufio.NewScanner(wout)
		for sc.Scan() {
			wmu.Lock()
			wlines = append(wlines, sc.Text())
			wmu.Unlock()
		}
	}()
	r.poll("whereis prints the group online on node1", func() (bool, string) {
		wmu.Lock()
		defer wmu.Unlock()
		return slices.Contains(wlines, group+" online on node1"), fmt.Sprint(wlines)
	})

	// A move with progress.
	t0 := time.Now()
	out := r.mustCLI(1, "group", "move", group, "node2")
	t.Logf("group move (%d ms):\n%s", ms(time.Since(t0)), out)
	for _, want := range []string{"moving from node1 to node2", "online on node2"} {
		if !strings.Contains(out, want) {
			t.Errorf("group move's progress lacks %q:\n%s", want, out)
		}
	}
	r.checkOwner(2, 1)
	r.poll("whereis prints the group online on node2", func() (bool, string) {
		wmu.Lock()
		defer wmu.Unlock()
		return slices.Contains(wlines, group+" online on node2"), fmt.Sprint(wlines)
	})
	wstop()
	<-wdone
	wcmd.Wait()
	t.Logf("whereis -follow printed:\n  %s", strings.Join(wlines, "\n  "))

	// A move to a paused node fails with the manager's reason.
	r.mustCLI(2, "node", "pause", "node1")
	out, errOut, code := r.cli(2, "group", "move", group, "node1")
	if code != 1 || !strings.Contains(errOut, "node node1 is paused") {
		t.Errorf("move to a paused node: exit %d, stderr %q; want 1 naming the pause\nstdout:\n%s", code, errOut, out)
	}
	r.checkOwner(2, 1)
	r.mustCLI(2, "node", "resume", "node1")

	// Drain the owner from the other node.
	t0 = time.Now()
	out = r.mustCLI(1, "node", "drain", "node2")
	t.Logf("node drain node2 through node 1 (%d ms):\n%s", ms(time.Since(t0)), out)
	r.checkOwner(1, 2)
	if o, err := r.get(1, "node", "node2", false); err != nil || o.Props["paused"] != true || o.Props["draining"] != true {
		t.Errorf("node2 after the drain: %v %v, want paused and draining", o.Props, err)
	}
	r.mustCLI(1, "node", "resume", "node2")
	r.mustCLI(1, "group", "move", group, "node2")

	// Evict node 2, the owner.
	mark := r.c.Mark()
	t0 = time.Now()
	out = r.mustCLI(1, "node", "evict", "node2")
	t.Logf("node evict node2 (%d ms):\n%s", ms(time.Since(t0)), out)
	r.checkOwner(1, 1)
	if st := r.exitOf(2); st != 4 {
		t.Errorf("evicted node 2's clusterd exited %d, want 4", st)
	}
	halt := r.waitEvent(2, "halt", mark, nil)
	if !strings.Contains(halt.String("reason"), "evicted") {
		t.Errorf("node 2's halt: %s, want it to name the eviction", halt.Format())
	}
	r.poll("node 2's key removed from the quorum LUN", func() (bool, string) {
		keys, err := r.c.DiskKeys(r.ctx)
		if err != nil {
			return false, err.Error()
		}
		return !slices.Contains(keys, nscluster.NodeKey(2)) && slices.Contains(keys, nscluster.NodeKey(1)), fmt.Sprintf("keys %#x", keys)
	})
	out = r.mustCLI(1, "node", "list")
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 5 && f[0] == "node2" && f[4] != "true" {
			t.Errorf("node list does not show node2 evicted:\n%s", out)
		}
	}
	if !strings.Contains(out, "EVICTED") {
		t.Errorf("node list has no EVICTED column:\n%s", out)
	}
	// Started again, it is refused, and stops for good (exit 4).
	mark = r.c.Mark()
	if err := r.c.Node(2).Start(); err != nil {
		t.Fatal(err)
	}
	if st := r.exitOf(2); st != 4 {
		t.Errorf("evicted node 2 restarted: exit %d, want 4", st)
	}
	refused := r.waitEvent(2, "join refused", mark, nil)
	if reason := refused.String("reason"); !strings.Contains(reason, "evicted") || !strings.Contains(reason, "cluster node add") {
		t.Errorf("node 2's join refusal: %s; want it to name the eviction and the way back", refused.Format())
	}

	// Added back, it joins (its local copy of the database, which says it
	// is evicted, gives way to the cluster's).
	r.mustCLI(1, "node", "add", "node2")
	t0 = time.Now()
	mark = r.c.Mark()
	if err := r.c.Node(2).Start(); err != nil {
		t.Fatal(err)
	}
	r.c.WaitMembership(r.ctx, t, mark, []int{1, 2}, []int{1, 2})
	r.poll("node2 no longer evicted in node 2's copy", func() (bool, string) {
		o, err := r.get(2, "node", "node2", true)
		return err == nil && o.Props["evicted"] == nil, fmt.Sprint(o.Props, err)
	})
	t.Logf("node add, then node 2 started and joined: %d ms", ms(time.Since(t0)))

	// Leave: node 1, the owner, drains and exits 0.
	t0 = time.Now()
	out = r.mustCLI(1, "leave")
	t.Logf("leave on node 1 (%d ms):\n%s", ms(time.Since(t0)), out)
	if !strings.Contains(out, "node2") {
		t.Errorf("leave's progress does not show the group going to node2:\n%s", out)
	}
	if st := r.exitOf(1); st != 0 {
		t.Errorf("node 1 after leave: exit %d, want 0", st)
	}
	// The drain ends when node 1 handed the group over; node 2 brings it
	// online after that.
	r.waitOnline(2, 2)
	r.checkOwner(2, 2)
	t.Logf("wall time %d ms", ms(time.Since(start)))
}
