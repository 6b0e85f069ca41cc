package boot

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/testlog"
)

// TestSupervisor: a program killed by a signal and one that exits 1 are
// started again; exit 4 (evicted) ends the supervision, as
// RestartPreventExitStatus=2 4 does.
func TestSupervisor(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	count := filepath.Join(t.TempDir(), "runs")
	script := `n=$(cat ` + count + ` 2>/dev/null || echo 0); n=$((n+1)); echo $n > ` + count + `; echo run $n
case $n in 1) kill -9 $$;; 2) exit 1;; *) exit 4;; esac`
	var logs, out testlog.Buffer
	var pids []int
	s := &Supervisor{
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Argv: []string{"/bin/sh", "-c", script}, Output: &out,
		NoRestart: []int{2, 4}, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond,
		OnStart: func(pid int) { pids = append(pids, pid) },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, err := s.Run(ctx)
	if err != nil || code != 4 {
		t.Fatalf("Run: %d, %v; want 4, nil\n%s", code, err, logs.String())
	}
	if len(pids) != 3 {
		t.Errorf("%d starts, want 3", len(pids))
	}
	for _, want := range []string{"msg=killed", "signal=killed", "msg=exited pid", "exit=1", `msg="exited, not restarting"`, "exit=4"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "run 3") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "run 1\nrun 2\nrun 3\n") {
		t.Errorf("output %q", out.String())
	}
}

// TestSupervisorCancel: ending the context stops the program (SIGTERM)
// and Run returns the context's error.
func TestSupervisorCancel(t *testing.T) {
	if _, err := os.Stat("/bin/sleep"); err != nil {
		t.Skip("no /bin/sleep")
	}
	started := make(chan int, 1)
	s := &Supervisor{Log: slog.New(slog.DiscardHandler), Argv: []string{"/bin/sleep", "60"}, OnStart: func(pid int) { started <- pid }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := s.Run(ctx); done <- err }()
	<-started
	t0 := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the context ended")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("took %v to stop", d)
	}
}
