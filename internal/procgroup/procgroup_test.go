package procgroup

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

type group struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the leader was reaped
}

func startGroup(t *testing.T, script string) *group {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &group{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(g.done) }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-g.done })
	return g
}

func exited(g *group, within time.Duration) bool {
	select {
	case <-g.done:
		return true
	case <-time.After(within):
		return false
	}
}

func TestKillOrphanKillsRecordedGroup(t *testing.T) {
	dir := t.TempDir()
	g := startGroup(t, "sleep 1000 & sleep 1000; wait")
	if err := Save(dir, "a/b", g.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + "/app-a%2Fb"); err != nil {
		t.Fatalf("record file: %v", err)
	}
	n, err := KillOrphan(dir, "a/b")
	if err != nil || n != -1 {
		t.Fatalf("KillOrphan = %d, %v; want -1 (the group)", n, err)
	}
	if !exited(g, 5*time.Second) {
		t.Fatal("leader still running after KillOrphan")
	}
	if _, ok, _ := Load(dir, "a/b"); ok {
		t.Fatal("record not removed")
	}
}

// A record whose start time does not match the live process with that pid
// (a recycled pid) kills nothing.
func TestKillOrphanSparesRecycledPid(t *testing.T) {
	dir := t.TempDir()
	g := startGroup(t, "sleep 1000")
	start, err := StartTime(g.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path(dir, "r"), []byte(
		// an earlier process that had the same pid
		strconv.Itoa(g.cmd.Process.Pid)+" "+strconv.FormatUint(start-1, 10)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := KillOrphan(dir, "r"); err != nil || n != 0 {
		t.Fatalf("KillOrphan = %d, %v; want 0, nil", n, err)
	}
	if exited(g, 50*time.Millisecond) {
		t.Fatal("a process with a recycled pid was killed")
	}
}

func TestLoadRefusesGarbage(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(path(dir, "x"), []byte("1 zz"), 0o600)
	if _, _, err := Load(dir, "x"); err == nil {
		t.Fatal("garbage record accepted")
	}
	if _, ok, err := Load(dir, "none"); ok || err != nil {
		t.Fatalf("missing record: ok=%v err=%v", ok, err)
	}
}
