package systemdrig

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The container boots to a running systemd that has the test's units, in
// a network namespace of its own; Close leaves no process, directory or
// propagation directory behind.
func TestIntegrationSystemdRig(t *testing.T) {
	Require(t)
	units := t.TempDir()
	if err := os.WriteFile(filepath.Join(units, "wprig.service"), []byte("[Service]\nExecStart=/bin/sleep 1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	r, err := Start(t.Context(), Config{UnitDir: units, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("booted in %v", time.Since(t0))
	closed := false
	defer func() {
		if !closed {
			r.Close()
		}
	}()
	if out, err := r.Systemctl(t.Context(), "start", "wprig.service"); err != nil {
		t.Fatal(out, err)
	}
	out, err := r.Systemctl(t.Context(), "show", "-p", "MainPID", "--value", "wprig.service")
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, p := range mustProcs(t, r) {
		if strings.HasPrefix(p.Cmdline, "/bin/sleep 1000") {
			pid = p.HostPID
			if got := strings.TrimSpace(out); got != itoa(p.PID) {
				t.Errorf("MainPID %s; the container's sleep is %d there", got, p.PID)
			}
		}
	}
	if pid == 0 {
		t.Fatal("the unit's sleep is not among the container's processes")
	}
	// Only lo in the container's network namespace.
	if b, err := os.ReadFile("/proc/" + itoa(r.Leader) + "/net/dev"); err != nil || strings.Count(string(b), ":") != 1 || !strings.Contains(string(b), "lo:") {
		t.Errorf("the container's interfaces: %v\n%s", err, b)
	}
	leader, dir := r.Leader, r.Dir
	t0 = time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	t.Logf("closed in %v", time.Since(t0))
	for _, p := range []int{leader, pid} {
		if _, err := os.Stat("/proc/" + itoa(p)); err == nil {
			t.Errorf("process %d still there", p)
		}
	}
	for _, d := range []string{dir, filepath.Join(propagateDir, r.Name)} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", d, err)
		}
	}
	if ps := markedProcs(); len(ps) != 0 {
		t.Errorf("marked processes left: %v", ps)
	}
}

func mustProcs(t *testing.T, r *Rig) []Proc {
	t.Helper()
	ps, err := r.Procs()
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func itoa(n int) string { return strconv.Itoa(n) }
