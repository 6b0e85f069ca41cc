package etcdrig

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// TestIntegrationEtcdRig starts three members, writes through one member's
// gateway and over gRPC, reads back through another's, asks etcdctl in the
// client namespace for the endpoints' health, and checks that Close leaves
// no namespace, process or directory behind.
func TestIntegrationEtcdRig(t *testing.T) {
	Require(t)
	ctx := t.Context()
	r, err := Start(ctx, Config{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			r.Close()
		}
	})
	leader, err := r.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leader: member %d", leader)

	g1, g3 := r.Gateway(1), r.Gateway(3)
	defer g1.Close()
	defer g3.Close()
	if err := g1.Put(ctx, "rig/a", "one"); err != nil {
		t.Fatal(err)
	}
	gr := r.GRPC(2)
	defer gr.Close()
	if err := gr.Put(ctx, "rig/b", "two"); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"rig/a": "one", "rig/b": "two"} {
		if got, err := g3.Get(ctx, k); err != nil || got != want {
			t.Errorf("Get(%q) from member 3 = %q, %v; want %q", k, got, err, want)
		}
	}
	if _, err := exec.LookPath("etcdctl"); err != nil {
		t.Logf("etcdctl not found (apt-get install etcd-client): no health check through it")
	} else {
		out, err := r.ClientExec(ctx, "etcdctl", "--endpoints", r.Endpoints(), "endpoint", "health")
		if err != nil || strings.Count(string(out), "is healthy") != len(r.Members) {
			t.Errorf("etcdctl endpoint health: %v\n%s", err, out)
		}
	}

	var pids []int
	for _, m := range r.Members {
		pids = append(pids, m.Pid())
	}
	closed = true
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range r.Namespaces() {
		if netns.Exists(ns) {
			t.Errorf("namespace %s left after Close", ns)
		}
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("etcd pid %d still there after Close (kill 0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(r.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left after Close (%v)", r.Dir, err)
	}
}
