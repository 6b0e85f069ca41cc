package rtsched

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// schedPolicy reads the "policy" line of /proc/PID/sched (0 SCHED_OTHER,
// 2 SCHED_RR), the kernel's own account, independent of sched_getattr.
func schedPolicy(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "policy" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("%s: %q", path, sc.Text())
			}
			return n
		}
	}
	t.Fatalf("%s: no policy line", path)
	return -1
}

// TestIntegrationRealtimeChildNormal runs this test binary again as a
// helper that makes itself real-time with Realtime, makes the runtime
// create more threads, and starts children with Start; the test then
// reads the kernel's account: every thread of the helper SCHED_RR at the
// priority asked for (none left with SCHED_RESET_ON_FORK), its memory
// locked, and the children (a shell and the sleep it forks) SCHED_OTHER.
func TestIntegrationRealtimeChildNormal(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("integration test skipped: needs root (CAP_SYS_NICE)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRealtime$", "-test.v")
	cmd.Env = append(os.Environ(), "WOLFPACK_RTSCHED_HELPER=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	var children []int
	for sc.Scan() {
		if f, ok := strings.CutPrefix(sc.Text(), "child "); ok {
			pid, _ := strconv.Atoi(f)
			children = append(children, pid)
		}
		if sc.Text() == "ready" {
			break
		}
	}
	if len(children) != 2 {
		t.Fatalf("helper reported children %v, want 2", children)
	}
	helper := cmd.Process.Pid
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", helper))
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) < 5 {
		t.Errorf("helper has %d threads, want the runtime's and the blocked goroutines' (5+)", len(tasks))
	}
	for _, e := range tasks {
		tid, _ := strconv.Atoi(e.Name())
		if p := schedPolicy(t, fmt.Sprintf("/proc/%d/task/%d/sched", helper, tid)); p != unix.SCHED_RR {
			t.Errorf("helper thread %d: policy %d, want SCHED_RR (2)", tid, p)
		}
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			t.Fatal(err)
		}
		if a.Priority != 7 || a.Flags&unix.SCHED_FLAG_RESET_ON_FORK != 0 {
			t.Errorf("helper thread %d: priority %d flags %#x, want 7 and no SCHED_RESET_ON_FORK", tid, a.Priority, a.Flags)
		}
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", helper))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(st), "VmLck:") || strings.Contains(string(st), "VmLck:\t       0 kB") {
		t.Errorf("helper's memory not locked: %s", grepLine(string(st), "VmLck"))
	}
	t.Logf("helper: %d threads SCHED_RR 7, %s, %s", len(tasks), grepLine(string(st), "VmRSS"), grepLine(string(st), "VmLck"))
	for _, pid := range children {
		if p := schedPolicy(t, fmt.Sprintf("/proc/%d/sched", pid)); p != 0 {
			t.Errorf("child %d: policy %d, want SCHED_OTHER (0)", pid, p)
		}
		name, prio, err := Policy(pid)
		if err != nil || name != "SCHED_OTHER" || prio != 0 {
			t.Errorf("child %d: %s %d %v, want SCHED_OTHER 0", pid, name, prio, err)
		}
	}
	// The shell's own child, forked after exec: SCHED_OTHER too.
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", children[0], children[0]))
	grand := strings.Fields(string(kids))
	if len(grand) == 0 {
		t.Fatalf("the shell %d has no child", children[0])
	}
	for _, g := range grand {
		if p := schedPolicy(t, "/proc/"+g+"/sched"); p != 0 {
			t.Errorf("grandchild %s: policy %d, want SCHED_OTHER (0)", g, p)
		}
	}
}

func grepLine(s, key string) string {
	for l := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(l, key+":") {
			return strings.Join(strings.Fields(l), " ")
		}
	}
	return key + ": none"
}

// TestHelperRealtime is the helper process of the test above.
func TestHelperRealtime(t *testing.T) {
	if os.Getenv("WOLFPACK_RTSCHED_HELPER") != "1" {
		t.Skip("helper process only")
	}
	r, err := Realtime(7)
	if err != nil || !r.Locked {
		t.Fatalf("Realtime: %+v %v", r, err)
	}
	// Goroutines blocked in a syscall make the runtime create threads
	// after Realtime: they must inherit SCHED_RR.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			var ts = unix.Timespec{Sec: 0, Nsec: 300e6}
			unix.Nanosleep(&ts, nil)
		})
	}
	wg.Wait()
	for i, argv := range [][]string{{"/bin/sh", "-c", "sleep 30; :"}, {"sleep", "30"}} {
		c := exec.Command(argv[0], argv[1:]...)
		if err := Start(c, nil); err != nil {
			t.Fatal(err)
		}
		defer c.Process.Kill()
		fmt.Printf("child %d\n", c.Process.Pid)
		if name, prio, err := Policy(0); err != nil || name != "SCHED_RR" || prio != 7 {
			t.Fatalf("after start %d: this thread %s %d %v", i, name, prio, err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the shell forks its sleep
	fmt.Println("ready")
	time.Sleep(30 * time.Second) // killed by the test
}
