package clustercli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/internal/config"
	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

// TestCreateJoin: `cluster create` writes node 1's files, each valid as
// clusterd loads them, formats the LUN with the node file's tag and writes
// the bundle mode 0600; `cluster join` writes node 2's files from it.
// Refusals (files there, a formatted LUN, an unknown node, a bad bundle)
// name the problem and change nothing.
func TestCreateJoin(t *testing.T) {
	_, open := memLUN(t, memtarget.CompatTgt)
	etc1, etc2 := t.TempDir(), t.TempDir()
	create := []string{"create", "prod", "--node", "node1", "--quorum", "/dev/mem1", "--network", "priv1=lo", "--network", "priv2=lo",
		"node1=127.0.1.11,127.0.2.11", "node2=127.0.1.12,127.0.2.12", "--etc", etc1, "--timing", "fast"}
	out, err := cli(t, open, create...)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	t.Logf("create:\n%s", out)
	for _, want := range []string{"wrote:", filepath.Join(etc1, "node.toml"), "join-prod.bundle", "cluster join", "systemctl enable --now clusterd"} {
		if !strings.Contains(out, want) {
			t.Errorf("create's output lacks %q", want)
		}
	}
	c1, err := config.Load(filepath.Join(etc1, "node.toml"), config.Options{})
	if err != nil {
		t.Fatalf("node1's file: %v", err)
	}
	if c1.NodeID != 1 || c1.Cluster != "prod" || !c1.Streams() || len(c1.Nodes) != 2 || c1.Networks[1].Interface != "lo" || c1.Timing != config.Profiles["fast"] {
		t.Errorf("node1's config: %+v", c1)
	}
	bundle := filepath.Join(etc1, "join-prod.bundle")
	for path, mode := range map[string]os.FileMode{bundle: 0o600, filepath.Join(etc1, "cluster.key"): 0o600, filepath.Join(etc1, "node.key"): 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %v", path, err, st.Mode().Perm(), mode)
		}
	}
	if b, _ := os.ReadFile(bundle); !strings.Contains(string(b), "PRIVATE KEY") || strings.Contains(string(b), etc1) {
		t.Errorf("the bundle should carry the CA's key and no path of node1's files:\n%s", b)
	}
	// The LUN carries the node file's tag.
	d, _ := open("/dev/mem2")
	qd, err := openQuorum(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if got := qd.Superblock().ClusterTag; got != c1.ClusterTag {
		t.Errorf("LUN tag %08x, node file %08x", got, c1.ClusterTag)
	}
	entries := func(dir string) int { e, _ := os.ReadDir(dir); return len(e) }
	before := entries(etc1)

	// Again: the files are there, then (with a new directory) the LUN is
	// formatted.
	if out, err := cli(t, open, create...); exitCode(err) != 3 || !strings.Contains(err.Error(), "refusing to overwrite") || !strings.Contains(err.Error(), "node.toml") {
		t.Errorf("create over node1's files: %v, want exit 3 naming them\n%s", err, out)
	}
	other := t.TempDir()
	again := append(append([]string{}, create[:len(create)-2]...), "--etc", other)
	if out, err := cli(t, open, again...); exitCode(err) != 3 || !strings.Contains(err.Error(), "quorum") || !strings.Contains(err.Error(), "--force") {
		t.Errorf("create on a formatted LUN: %v, want exit 3 naming the quorum disk and --force\n%s", err, out)
	}
	if entries(other) != 0 || entries(etc1) != before {
		t.Errorf("a refused create left files: %d in the new directory, %d (was %d) in node1's", entries(other), entries(etc1), before)
	}
	if qd2, err := openQuorum(context.Background(), d); err != nil || qd2.Superblock().FormatID != qd.Superblock().FormatID {
		t.Errorf("a refused create touched the LUN: %v", err)
	}

	// Bad command lines.
	for _, bad := range [][]string{
		{"create", "prod"},
		{"create", "bad name", "--node", "a", "--quorum", "/dev/mem1", "--network", "p=lo", "a=127.0.0.1"},
		{"create", "prod", "--node", "node3", "--quorum", "/dev/mem1", "--network", "p=lo", "node1=127.0.0.1"},
		{"create", "prod", "--node", "node1", "--quorum", "/dev/mem1", "--network", "p=lo", "node1=127.0.0.1,127.0.0.2"},
		{"create", "prod", "--node", "node1", "--quorum", "/dev/mem1", "--network", "p", "node1=127.0.0.1"},
		{"join", "--node", "node2"},
	} {
		if out, err := cli(t, open, bad...); exitCode(err) != 2 {
			t.Errorf("%q: %v, want exit 2\n%s", bad, err, out)
		}
	}
	// Validation as clusterd's: a bad address is named by its key.
	bad := []string{"create", "x", "--node", "n1", "--quorum", "/dev/mem3", "--network", "p=lo", "n1=127.0.0.1", "n2=224.0.0.1", "--etc", t.TempDir()}
	if _, err := cli(t, open, bad...); err == nil || !strings.Contains(err.Error(), "nodes[1].addrs[0]: 224.0.0.1 is not a unicast address") {
		t.Errorf("create with a multicast address: %v", err)
	}

	for _, help := range [][]string{{"create", "-h"}, {"join", "--help"}} {
		if out, err := cli(t, open, help...); err != nil || !strings.HasPrefix(out, "usage: cluster "+help[0]) {
			t.Errorf("%q: %v\n%s", help, err, out)
		}
	}

	// node2 joins.
	out, err = cli(t, open, "join", bundle, "--node", "node2", "--etc", etc2, "--quorum", "/dev/mem2")
	if err != nil {
		t.Fatalf("join: %v\n%s", err, out)
	}
	t.Logf("join:\n%s", out)
	c2, err := config.Load(filepath.Join(etc2, "node.toml"), config.Options{})
	if err != nil {
		t.Fatalf("node2's file: %v", err)
	}
	if c2.NodeID != 2 || c2.ClusterTag != c1.ClusterTag || string(c2.Key) != string(c1.Key) || c2.Quorum.Device != "/dev/mem2" ||
		c2.Credentials.Node != 2 || c2.Credentials.Certificate().Issuer.String() != c1.Credentials.Certificate().Issuer.String() {
		t.Errorf("node2's config does not match node1's: %+v", c2)
	}
	if e, _ := os.ReadDir(etc2); len(e) != 5 {
		t.Errorf("join left %d entries in its directory, want the 5 files (no CA key): %v", len(e), e)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"join", bundle, "--node", "node2", "--etc", etc2}, 3, "refusing to overwrite"},
		{[]string{"join", bundle, "--node", "node9", "--etc", t.TempDir()}, 2, "node1, node2"},
		{[]string{"join", bundle, "--node", "node2", "--network", "priv9=eth1", "--etc", t.TempDir()}, 2, "no network priv9"},
		{[]string{"join", filepath.Join(etc1, "node.toml"), "--node", "node2", "--etc", t.TempDir()}, 1, "not a join bundle"},
	} {
		if _, err := cli(t, open, tc.args...); exitCode(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want exit %d naming %q", tc.args, err, tc.code, tc.want)
		}
	}
	if out, err := cli(t, open, "join", bundle, "--node", "node2", "--etc", etc2, "--quorum", "/dev/mem2", "--force"); err != nil {
		t.Errorf("join --force: %v\n%s", err, out)
	}
}
