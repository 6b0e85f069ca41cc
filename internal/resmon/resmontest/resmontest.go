// Package resmontest runs the real resmon binary for tests: built from
// this module, started (in a network namespace if asked), its reports
// awaited.
package resmontest

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/resmon"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// Build builds cmd/resmon into t's temporary directory.
func Build(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "resmon")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/wolfpack-ha/wolfpack/cmd/resmon").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/resmon: %v\n%s", err, out)
	}
	return bin
}

// LogWriter sends resmon's log to t's.
type LogWriter struct{ T testing.TB }

func (w LogWriter) Write(b []byte) (int, error) {
	w.T.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// Start runs path with args as resmon (path "ip" with "netns exec NS BIN
// ..." runs it in a namespace: ip passes the socket on as fd 3), its log
// to t's; t's cleanup stops it.
func Start(t testing.TB, path string, args ...string) *resmon.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	p, err := resmon.Start(ctx, resmon.Config{Path: path, Args: args, Stderr: LogWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Stop(ctx)
	})
	return p
}

// Expect waits up to 10 s for resmon's next report and fails t unless it
// is state s of resource (any resource if "") with a reason containing
// reason.
func Expect(t testing.TB, p *resmon.Process, resource string, s resources.State, reason string) resources.Status {
	t.Helper()
	select {
	case st, ok := <-p.Statuses():
		if !ok {
			t.Fatalf("resmon's connection ended; waiting for %s %v", resource, s)
		}
		if (resource != "" && st.Resource != resource) || st.State != s || !strings.Contains(st.Reason, reason) {
			t.Fatalf("got %s %v %q; want %s %v with a reason containing %q", st.Resource, st.State, st.Reason, resource, s, reason)
		}
		return st
	case <-time.After(10 * time.Second):
		t.Fatalf("no report within 10 s; waiting for %s %v", resource, s)
	}
	return resources.Status{}
}
