package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// applianceRuns is how many testbeds an appliance boot test brings up in
// turn (WOLFPACK_APPLIANCE_RUNS, default 1): the benchmark's runs.
func applianceRuns(t *testing.T) int {
	s := os.Getenv("WOLFPACK_APPLIANCE_RUNS")
	if s == "" {
		return 1
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("WOLFPACK_APPLIANCE_RUNS=%q: want a count of runs", s)
	}
	return n
}

// bootAppliance starts a testbed of the appliance forming cluster
// "wolfpack", waits until every node is a member of all of them and
// returns the testbed and each node's QEMU start → member time.
func bootAppliance(t *testing.T, nodes int, uefi bool) (*Testbed, []time.Duration) {
	t.Helper()
	Require(t)
	tb := New(t, Config{Nodes: nodes, PrivateNets: 1, Logger: testLogger(t),
		Appliance: &Appliance{UEFI: uefi, Cluster: "wolfpack"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Every node is watched at once: one node's time does not include
	// the wait for another's.
	times := make([]time.Duration, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i, n := range tb.Nodes() {
		wg.Go(func() { times[i], errs[i] = n.WaitMember(ctx, nodes) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return tb, times
}

// TestIntegrationApplianceBoot boots the appliance as kernel + initramfs
// on two nodes with no step inside the guests: each node's config disk
// holds its node file from cluster create/join on the host, and both
// become members. Then clusterd is killed with SIGKILL on node 2: init
// starts it again and the node is a member again. Last, node 2's power
// button: it leaves the cluster and powers off.
func TestIntegrationApplianceBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU guests")
	}
	var all []time.Duration
	var tb *Testbed
	for run := 1; run <= applianceRuns(t); run++ {
		var times []time.Duration
		tb, times = bootAppliance(t, 2, false)
		t.Logf("run %d: image %v; QEMU start → member: node1 %v, node2 %v; QEMU start → agent: %v, %v", run,
			tb.ImageTime.Round(time.Millisecond), times[0].Round(time.Millisecond), times[1].Round(time.Millisecond),
			tb.Node(1).BootTime.Round(time.Millisecond), tb.Node(2).BootTime.Round(time.Millisecond))
		all = append(all, times...)
		for _, n := range tb.Nodes() {
			logBoot(t, n)
		}
		if run < applianceRuns(t) {
			if err := tb.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	logMedian(t, "kernel+initramfs", all)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := tb.Node(2)
	pid := clusterdPid(ctx, t, n)
	if _, err := n.Run(ctx, "kill", "-9", strconv.Itoa(pid)); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	deadline := time.Now().Add(time.Minute)
	for {
		res, err := n.Run(ctx, "pidof", "clusterd")
		if err == nil {
			if p, _ := strconv.Atoi(strings.TrimSpace(string(res.Stdout))); p > 0 && p != pid {
				t.Logf("clusterd restarted by init as pid %d (was %d) after %v", p, pid, time.Since(killed).Round(time.Millisecond))
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("clusterd not restarted within a minute of SIGKILL (pid %d)", pid)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := n.WaitMember(ctx, 2); err != nil {
		t.Fatal(err)
	}
	t.Logf("node2 a member again %v after the SIGKILL", time.Since(killed).Round(time.Millisecond))
	// Both runs logged their start to the file init keeps.
	res, err := n.Run(ctx, "cat", "/var/log/clusterd.log")
	if err != nil {
		t.Fatal(err)
	}
	if starts := strings.Count(string(res.Stdout), `"msg":"clusterd"`); starts != 2 {
		t.Errorf("/var/log/clusterd.log holds %d clusterd start records, want 2 (one per run)", starts)
	}
	console := n.ConsoleTail(400)
	if !strings.Contains(console, "supervised=clusterd") || !strings.Contains(console, "signal=killed") {
		t.Errorf("init's console does not report clusterd killed:\n%s", console)
	}

	// The power button: init stops clusterd, which leaves the cluster
	// (node1 sees it leave, not fail), then powers the machine off.
	if err := n.PressPowerButton(); err != nil {
		t.Fatal(err)
	}
	pressed := time.Now()
	select {
	case <-n.Exited():
		t.Logf("node2 powered off %v after its power button was pressed", time.Since(pressed).Round(time.Millisecond))
	case <-time.After(2 * time.Minute):
		t.Fatalf("node2 still runs 2 minutes after its power button was pressed:\n%s", n.ConsoleTail(60))
	}
	console = n.ConsoleTail(100)
	var shutdown strings.Builder
	for l := range strings.Lines(console) {
		for _, m := range []string{"shutdown requested", `"drained"`, `"left"`, "clusterd stopped", "stopping the machine"} {
			if strings.Contains(l, m) {
				shutdown.WriteString("\t" + l)
				break
			}
		}
	}
	t.Logf("node2's shutdown records:\n%s", shutdown.String())
	for _, want := range []string{`msg="shutdown requested: stopping clusterd"`, `by="power button"`, `msg="clusterd stopped"`, `msg="stopping the machine" prog=wolfpack-init action="power off"`} {
		if !strings.Contains(console, want) {
			t.Errorf("node2's console lacks %s:\n%s", want, console)
		}
	}
	one := tb.Node(1)
	deadline = time.Now().Add(30 * time.Second)
	for {
		st, err := one.ClusterStatus(ctx)
		if err == nil && slices.Equal(st.Members, []int{1}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node1's members %v (err %v) 30 s after node2 powered off, want [1]", st.Members, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	left := false
	for l := range strings.Lines(one.ConsoleTail(400)) {
		left = left || strings.Contains(l, `"msg":"node left"`) && strings.Contains(l, `"peer":2`)
	}
	if !left {
		t.Errorf("node1 did not see node2 leave the cluster:\n%s", one.ConsoleTail(60))
	}
}

// TestIntegrationApplianceThreeNodes boots three appliance nodes as
// kernel + initramfs: all three become members of one cluster. Then node
// 3's poweroff command: it leaves and powers off.
func TestIntegrationApplianceThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU guests")
	}
	tb, times := bootAppliance(t, 3, false)
	for i, d := range times {
		t.Logf("%s: QEMU start → member of 3: %v", tb.Node(i+1).Name(), d.Round(time.Millisecond))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := tb.Node(3).ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Members, []int{1, 2, 3}) {
		t.Errorf("node3's members: %v, want [1 2 3]", st.Members)
	}
	// The appliance's poweroff command asks init, which drains clusterd
	// first, as the power button does.
	n := tb.Node(3)
	// init stops the agent with clusterd: the answer may not come back.
	if _, err := n.Run(ctx, "poweroff"); err != nil && !errors.Is(err, ErrNodeDown) {
		t.Fatal(err)
	}
	select {
	case <-n.Exited():
	case <-ctx.Done():
		t.Fatalf("node3 still runs after poweroff:\n%s", n.ConsoleTail(40))
	}
	console := n.ConsoleTail(100)
	for _, want := range []string{`by="signal SIGUSR2"`, `"msg":"left"`, `msg="stopping the machine" prog=wolfpack-init action="power off"`} {
		if !strings.Contains(console, want) {
			t.Errorf("node3's console lacks %s:\n%s", want, console)
		}
	}
}

// TestIntegrationApplianceUEFI boots the single-file UEFI image under
// OVMF from a FAT ESP; the node forms a one-node cluster on the quorum
// LUN, its settings from its config disk's boot.conf (the image's
// command line is fixed).
func TestIntegrationApplianceUEFI(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU guests")
	}
	for _, f := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("no OVMF (install ovmf): %v", err)
		}
	}
	var all []time.Duration
	for run := 1; run <= applianceRuns(t); run++ {
		tb, times := bootAppliance(t, 1, true)
		t.Logf("run %d: image %v; QEMU start → member %v (agent %v)", run, tb.ImageTime.Round(time.Millisecond),
			times[0].Round(time.Millisecond), tb.Node(1).BootTime.Round(time.Millisecond))
		all = append(all, times...)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		res, err := tb.Node(1).Run(ctx, "cat", "/proc/cmdline")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(res.Stdout), "console=ttyS0") || strings.Contains(string(res.Stdout), "wolfpack.") {
			t.Errorf("the UEFI guest's command line is not the image's: %q", res.Stdout)
		}
		if err := tb.Close(); err != nil {
			t.Fatal(err)
		}
	}
	logMedian(t, "UEFI", all)
}

func clusterdPid(ctx context.Context, t *testing.T, n *Node) int {
	t.Helper()
	res, err := n.Run(ctx, "pidof", "clusterd")
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	if err != nil {
		t.Fatalf("pidof clusterd: %q", res.Stdout)
	}
	return pid
}

// logBoot logs a node's boot from its console: init's records (its
// set-up's step times) and clusterd's start, "starting", arbitration and
// membership records, each on the guest's clock.
func logBoot(t *testing.T, n *Node) {
	t.Helper()
	var lines []string
	b, err := os.ReadFile(n.ConsolePath())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		init := strings.Contains(l, "prog=wolfpack-init") && !strings.Contains(l, "supervised=wolfpack-agent")
		r, ok := parseRecord([]byte(l))
		clusterd := ok && (r.Msg == "starting" || strings.HasPrefix(r.Msg, "arbitration") ||
			r.Msg == "membership installed" || r.Msg == "real-time scheduling")
		if init || clusterd {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	t.Logf("%s: boot records:\n%s", n.Name(), strings.Join(lines, "\n"))
}

func logMedian(t *testing.T, what string, ds []time.Duration) {
	t.Helper()
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%.2f", d.Seconds()))
	}
	p95 := ""
	if len(s) >= 10 { // nearest rank
		p95 = fmt.Sprintf(", p95 %.2f s", s[(95*len(s)+99)/100-1].Seconds())
	}
	t.Logf("%s: QEMU start → member over %d boots: median %.2f s%s (%s s)", what, len(s), med.Seconds(), p95, strings.Join(parts, ", "))
}
