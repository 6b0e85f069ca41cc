package clusterdmain

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/internal/config"
)

// nodeFile writes a node file for node 2 of two, on lo, with its key
// file, through config.File (as every writer in the tree does).
func nodeFile(t *testing.T, edit func(*config.File)) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := config.File{
		NodeID:   2,
		Cluster:  config.Cluster{Name: "test", Tag: "574c4650", KeyFile: key, Port: 7400},
		Quorum:   config.Quorum{Device: "/dev/sdq"},
		Networks: []config.Network{{Name: "priv1", Interface: "lo"}},
		Nodes:    []config.Node{{ID: 1, Name: "alpha", Addrs: []string{"127.0.103.1"}}, {ID: 2, Name: "beta", Addrs: []string{"127.0.103.2"}}},
		Resmon:   config.Resmon{Path: "none"},
	}
	if edit != nil {
		edit(&f)
	}
	p := filepath.Join(dir, "node.toml")
	if err := f.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckConfig: a valid file gives its summary with the effective
// timing and no error (exit 0); an invalid one gives each problem, with
// the file, the line and the key, and an error that is not a usage error
// (exit 1).
func TestCheckConfig(t *testing.T) {
	var out, errb bytes.Buffer
	p := nodeFile(t, func(f *config.File) {
		f.Timing = config.Timing{Profile: "fast", HeartbeatThreshold: new(6)}
	})
	if err := run(context.Background(), []string{"--check-config", "-config", p}, &out, &errb); err != nil {
		t.Fatalf("valid file: %v\n%s", err, errb.String())
	}
	for _, want := range []string{
		p + ": valid",
		"node      2 (beta), admin socket none, state /var/lib/wolfpack",
		"cluster   test, tag 574c4650, UDP port 7400, 2 nodes",
		"network   priv1 on lo, 127.0.103.2",
		"peer      1 (alpha) at 127.0.103.1",
		"quorum    /dev/sdq",
		"streams   none",
		`resmon    none: resmon.path is "none"`,
		"schedule  SCHED_RR priority 10, memory locked",
		"timing    profile fast: heartbeat 30ms × 6 (suspicion after 180ms of silence), quorum check 500ms,",
		"join window 500ms, defence delay 80ms, form delay 1s",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	p = nodeFile(t, func(f *config.File) {
		f.Timing.Profile = "turbo"
		f.Nodes[1].Addrs[0] = "127.0.103.1"
	})
	err := run(context.Background(), []string{"--check-config", "-config", p}, &out, &errb)
	var ue usageError
	if err == nil || errors.As(err, &ue) || out.Len() != 0 {
		t.Fatalf("invalid file: err %v, output %q", err, out.String())
	}
	var printed bytes.Buffer
	printError(&printed, err)
	lines := strings.Split(strings.TrimSpace(printed.String()), "\n")
	if len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "clusterd: "+p+":") || !strings.Contains(lines[0], ": nodes[1].addrs[0]: 127.0.103.1 is also nodes[0].addrs[0]") ||
		!strings.HasPrefix(lines[1], "clusterd: "+p+":") || !strings.Contains(lines[1], `: timing.profile: unknown profile "turbo", want one of default, fast`) {
		t.Errorf("printed:\n%s", printed.String())
	}
}

// TestUsage: a bad command line is a usage error (exit 2); -h prints the
// usage and is not an error.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"-bogus"}, {"extra"}, {"-log-level", "loud", "-config", "x"}} {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, &out, &errb)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: err = %v, want a usage error", args, err)
		}
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out, &errb); err != nil || !strings.Contains(errb.String(), "clusterd --check-config [-config FILE]") {
		t.Errorf("-h: %v\n%s", err, errb.String())
	}
	// A missing node file is an error naming it, not a usage error.
	err := run(context.Background(), []string{"--check-config", "-config", "/nonexistent/node.toml"}, &out, &errb)
	var ue usageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "/nonexistent/node.toml") {
		t.Errorf("missing file: %v", err)
	}
}

// TestVersion: --version prints one line naming the program and the Go
// version the binary was built with (internal/version tests the rest).
func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.HasPrefix(s, "clusterd ") || !strings.Contains(s, "go1.") || strings.Count(s, "\n") != 1 {
		t.Errorf("--version printed %q", s)
	}
}
