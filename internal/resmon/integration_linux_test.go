package resmon_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/procgroup"
	"github.com/wolfpack-ha/wolfpack/internal/resmon"
	"github.com/wolfpack-ha/wolfpack/internal/resmon/resmontest"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// requireRoot skips the real-process tests unless root and not -short
// (they run generic applications and kill process groups).
func requireRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("integration test skipped: needs root; run e.g. sudo -E go test -run TestIntegration ./internal/resmon/")
	}
}

func buildResmon(t *testing.T) string { return resmontest.Build(t) }

func startResmon(t *testing.T, bin, stateDir string) *resmon.Process {
	return resmontest.Start(t, bin, "-state-dir", stateDir, "-log-level", "debug")
}

func appOnline(name, command string, extra ...any) resources.Command {
	props := resources.Props{"command": db.StringValue(command)}
	for i := 0; i+1 < len(extra); i += 2 {
		switch v := extra[i+1].(type) {
		case string:
			props[extra[i].(string)] = db.StringValue(v)
		case int:
			props[extra[i].(string)] = db.IntValue(int64(v))
		}
	}
	return resources.Command{Op: resources.CmdOnline, Resource: name, Type: "generic_application", Props: props,
		LooksAliveMs: 50, IsAliveMs: 1000, PendingTimeoutMs: 5000}
}

func expect(t *testing.T, p *resmon.Process, resource string, s resources.State, reason string) resources.Status {
	t.Helper()
	return resmontest.Expect(t, p, resource, s, reason)
}

func send(t *testing.T, p *resmon.Process, c resources.Command) {
	t.Helper()
	if err := p.Send(c); err != nil {
		t.Fatal(err)
	}
}

func online(t *testing.T, p *resmon.Process, stateDir string, c resources.Command) procgroup.Record {
	t.Helper()
	send(t, p, c)
	expect(t, p, c.Resource, resources.OnlinePending, "")
	expect(t, p, c.Resource, resources.Online, "")
	rec, ok, err := procgroup.Load(stateDir, c.Resource)
	if err != nil || !ok {
		t.Fatalf("no process group recorded for %s: %v", c.Resource, err)
	}
	return rec
}

// groupGone says whether no live process is left in group pgid: zombies
// are dead, whoever reaps them (an orphan's reaper is pid 1, not resmon).
func groupGone(pgid int) bool {
	if syscall.Kill(-pgid, 0) == syscall.ESRCH {
		return true
	}
	return liveInGroup(pgid) == 0
}

// liveInGroup counts the processes of group pgid that are not zombies.
func liveInGroup(pgid int) int {
	n := 0
	ents, err := os.ReadDir("/proc")
	if err != nil {
		panic(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 3 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) && pid > 0 {
			n++
		}
	}
	return n
}

func waitGone(t *testing.T, pgid int, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for !groupGone(pgid) {
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still there after %v", pgid, within)
		}
		time.Sleep(500 * time.Microsecond)
	}
	return time.Now()
}

// An application killed behind resmon's back is reported failed.
func TestIntegrationResmonAppKilled(t *testing.T) {
	requireRoot(t)
	bin, dir := buildResmon(t), t.TempDir()
	p := startResmon(t, bin, dir)
	if err := p.LeaseFor(time.Hour); err != nil {
		t.Fatal(err)
	}
	rec := online(t, p, dir, appOnline("app", "sleep 1000; echo never"))
	killed := time.Now()
	if err := syscall.Kill(-rec.Pgid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := expect(t, p, "app", resources.Failed, "exited (killed by signal 9")
	t.Logf("killed externally -> reported failed in %v: %q", time.Since(killed), st.Reason)
	waitGone(t, rec.Pgid, time.Second)
}

// Offline of a command that ignores SIGTERM: SIGKILL after stop_timeout_ms.
func TestIntegrationResmonStopTimeout(t *testing.T) {
	requireRoot(t)
	bin, dir := buildResmon(t), t.TempDir()
	p := startResmon(t, bin, dir)
	p.LeaseFor(time.Hour)
	rec := online(t, p, dir, appOnline("stubborn", `trap "" TERM; while :; do sleep 0.05; done`, "stop_timeout_ms", 300))
	// The trap is set once the loop has started a sleep.
	for deadline := time.Now().Add(2 * time.Second); liveInGroup(rec.Pgid) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the shell did not start its loop")
		}
	}
	start := time.Now()
	send(t, p, resources.Command{Op: resources.CmdOffline, Resource: "stubborn"})
	expect(t, p, "stubborn", resources.OfflinePending, "")
	expect(t, p, "stubborn", resources.Offline, "")
	took := time.Since(start)
	if took < 300*time.Millisecond || took > 2*time.Second {
		t.Fatalf("offline took %v; want SIGKILL just after the 300 ms stop timeout", took)
	}
	waitGone(t, rec.Pgid, 200*time.Millisecond) // SIGKILL is delivered, not yet acted on, when kill returns
	t.Logf("offline of a SIGTERM-ignoring command: %v (stop_timeout_ms 300)", took)
	// A well-behaved one stops on SIGTERM, well before its stop timeout.
	rec = online(t, p, dir, appOnline("polite", "sleep 1000", "stop_timeout_ms", 5000))
	start = time.Now()
	send(t, p, resources.Command{Op: resources.CmdOffline, Resource: "polite"})
	expect(t, p, "polite", resources.OfflinePending, "")
	expect(t, p, "polite", resources.Offline, "")
	if took := time.Since(start); took > time.Second {
		t.Fatalf("offline of sleep took %v", took)
	}
	waitGone(t, rec.Pgid, 200*time.Millisecond) // SIGKILL is delivered, not yet acted on, when kill returns
}

// A lease that is not renewed: the process groups are gone within a small
// tolerance of the deadline.
func TestIntegrationResmonLeaseExpiry(t *testing.T) {
	requireRoot(t)
	bin, dir := buildResmon(t), t.TempDir()
	p := startResmon(t, bin, dir)
	until := resmon.Monotonic() + int64(time.Second)
	p.SetLease(until)
	a := online(t, p, dir, appOnline("a", "sleep 1000 & sleep 1000 & wait"))
	b := online(t, p, dir, appOnline("b", "while :; do sleep 0.01; done"))
	ga, gb := waitGone(t, a.Pgid, 3*time.Second), waitGone(t, b.Pgid, 3*time.Second)
	mono := resmon.Monotonic() - int64(time.Since(ga))
	lateA := time.Duration(mono - until)
	lateB := time.Duration(resmon.Monotonic() - int64(time.Since(gb)) - until)
	t.Logf("lease deadline -> process group gone: a %v, b %v", lateA, lateB)
	// Measured on 2 shared cores: 3-16 ms when idle; under load (load
	// average 5, other test runs) SIGKILL to observed exit alone took up
	// to 130 ms, and one run 460 ms. TestLeaseExpiry checks resmon's own
	// part (Terminate within 10 ms of the deadline) without processes.
	const tolerance = 500 * time.Millisecond
	for _, late := range []time.Duration{lateA, lateB} {
		if late < 0 || late > tolerance {
			t.Errorf("group gone %v after the deadline; want within [0, %v]", late, tolerance)
		}
	}
	expectEach(t, p, resources.Offline, "lease expired", "a", "b")
	// No lease: onlines are refused.
	send(t, p, appOnline("c", "sleep 1000"))
	expect(t, p, "c", resources.Failed, "no lease")
}

// expectEach reads one report per resource, in any order.
func expectEach(t *testing.T, p *resmon.Process, s resources.State, reason string, names ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for range names {
		select {
		case st := <-p.Statuses():
			if !want[st.Resource] || st.State != s || !strings.Contains(st.Reason, reason) {
				t.Fatalf("got %s %v %q; want %v for one of %v with a reason containing %q", st.Resource, st.State, st.Reason, s, names, reason)
			}
			delete(want, st.Resource)
		case <-time.After(10 * time.Second):
			t.Fatalf("no report within 10 s; waiting for %v", want)
		}
	}
}

// clusterd closes the socket (or dies): resmon terminates everything and
// exits with status 0.
func TestIntegrationResmonSocketClosed(t *testing.T) {
	requireRoot(t)
	bin, dir := buildResmon(t), t.TempDir()
	p := startResmon(t, bin, dir)
	p.LeaseFor(time.Hour)
	a := online(t, p, dir, appOnline("a", "sleep 1000"))
	b := online(t, p, dir, appOnline("b", `trap "" TERM; sleep 1000 & wait`))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("resmon after its socket closed: %v", err)
	}
	t.Logf("socket closed -> resmon exited in %v", time.Since(start))
	for _, r := range []procgroup.Record{a, b} {
		waitGone(t, r.Pgid, 200*time.Millisecond)
	}
}

// resmon killed with SIGKILL: its application's leader goes with it
// (Pdeathsig), a process it left in the group survives; a new resmon's
// terminate of the resource kills that orphan through the state
// directory.
func TestIntegrationResmonOrphanAfterCrash(t *testing.T) {
	requireRoot(t)
	bin, dir := buildResmon(t), t.TempDir()
	p := startResmon(t, bin, dir)
	p.LeaseFor(time.Hour)
	rec := online(t, p, dir, appOnline("app", "sleep 1000 & wait"))
	for deadline := time.Now().Add(2 * time.Second); liveInGroup(rec.Pgid) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("sh did not start its background sleep")
		}
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("resmon exit: %v; want killed", err)
	}
	// The leader (sh) got Pdeathsig's SIGKILL; the background sleep is
	// left, an orphan in the group.
	deadline := time.Now().Add(2 * time.Second)
	for !isZombie(rec.Pgid) {
		if time.Now().After(deadline) {
			t.Fatal("the leader outlived resmon: Pdeathsig did not fire")
		}
		time.Sleep(time.Millisecond)
	}
	if groupGone(rec.Pgid) {
		t.Fatal("nothing of the group is left: the test cannot show the state directory at work")
	}
	p2 := startResmon(t, bin, dir)
	send(t, p2, resources.Command{Op: resources.CmdTerminate, Resource: "app"})
	expect(t, p2, "app", resources.Offline, "")
	waitGone(t, rec.Pgid, time.Second)
	if _, ok, _ := procgroup.Load(dir, "app"); ok {
		t.Fatal("record still in the state directory")
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// A resmon at SCHED_RR, as clusterd starts it (clusterd's policy is
// inherited; here chrt sets it), starts its application and the
// application's check_command at normal scheduling: the kernel's
// /proc/PID/sched says policy 2 (SCHED_RR) for every thread of resmon and
// 0 (SCHED_OTHER) for the application and what it forks.
func TestIntegrationResmonAppNormalScheduling(t *testing.T) {
	requireRoot(t)
	bin, dir := buildResmon(t), t.TempDir()
	marks := t.TempDir()
	p := resmontest.Start(t, "chrt", "--rr", "9", bin, "-state-dir", dir, "-log-level", "debug")
	if err := p.LeaseFor(time.Hour); err != nil {
		t.Fatal(err)
	}
	// The check writes its own policy line where the test reads it.
	check := "grep '^policy' /proc/$$/sched > " + marks + "/check"
	rec := online(t, p, dir, appOnline("app", "sleep 1000; echo never", "check_command", check))
	if got := policyOf(t, strconv.Itoa(p.PID)); got != 2 {
		t.Fatalf("resmon %d: policy %d, want 2 (SCHED_RR)", p.PID, got)
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID)); err != nil || !strings.Contains(string(st), "VmLck:") || strings.Contains(string(st), "VmLck:\t       0 kB") {
		t.Errorf("resmon %d at SCHED_RR did not lock its memory (%v)", p.PID, err)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.PID))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tasks {
		if got := policyOf(t, fmt.Sprintf("%d/task/%s", p.PID, e.Name())); got != 2 {
			t.Errorf("resmon thread %s: policy %d, want 2 (SCHED_RR)", e.Name(), got)
		}
	}
	// The leader (sh) and the sleep it forked.
	var pids []string
	for end := time.Now().Add(5 * time.Second); len(pids) < 2; time.Sleep(10 * time.Millisecond) {
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", rec.Pgid, rec.Pgid))
		pids = append([]string{strconv.Itoa(rec.Pgid)}, strings.Fields(string(kids))...)
		if time.Now().After(end) {
			t.Fatalf("the application %d has no child after 5 s", rec.Pgid)
		}
	}
	for _, pid := range pids {
		if got := policyOf(t, pid); got != 0 {
			t.Errorf("application process %s: policy %d, want 0 (SCHED_OTHER)", pid, got)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(marks + "/check")
		if err == nil && len(b) > 0 {
			if f := strings.Fields(string(b)); len(f) != 3 || f[2] != "0" {
				t.Errorf("check_command ran at %q, want policy 0 (SCHED_OTHER)", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("check_command did not run within 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("resmon %d: %d threads SCHED_RR; application %v and its check_command SCHED_OTHER", p.PID, len(tasks), pids)
}

// policyOf reads the policy line of /proc/WHAT/sched.
func policyOf(t *testing.T, what string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + what + "/sched")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "policy" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("/proc/%s/sched: %q", what, l)
			}
			return n
		}
	}
	t.Fatalf("/proc/%s/sched: no policy line", what)
	return -1
}
