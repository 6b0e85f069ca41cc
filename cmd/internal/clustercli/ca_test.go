package clustercli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

func readFiles(t *testing.T, paths ...string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func sameFiles(a, b [][]byte) bool {
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return len(a) == len(b)
}

func isUsage(err error) bool {
	var ue usageError
	return errors.As(err, &ue)
}

// TestCAInitIssueCheck: the operator's path of docs/clusterd.md, "Stream
// certificates": a CA, a certificate per node, a check of each node's
// files; init and issue refuse to overwrite without --force and change
// nothing when they refuse.
func TestCAInitIssueCheck(t *testing.T) {
	dir := t.TempDir()
	caDir, n1, n2 := filepath.Join(dir, "ca"), filepath.Join(dir, "node1"), filepath.Join(dir, "node2")
	caFiles := []string{filepath.Join(caDir, "ca.pem"), filepath.Join(caDir, "ca.key")}

	out, err := cli(t, nil, "ca", "init", "--cluster", "test", "--out", caDir)
	if err != nil || !strings.Contains(out, "CA of cluster test") || !strings.Contains(out, caFiles[1]) {
		t.Fatalf("ca init: %v\n%s", err, out)
	}
	if st, err := os.Stat(caFiles[1]); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v %v", st.Mode(), err)
	}
	ca, err := stream.LoadCA(caFiles[0], caFiles[1])
	if err != nil || ca.Cluster != "test" {
		t.Fatalf("LoadCA: %v", err)
	}
	if left := time.Until(ca.Cert.NotAfter); left < stream.DefaultCAValidity-time.Hour || left > stream.DefaultCAValidity {
		t.Errorf("CA valid for %v, want the default %v", left, stream.DefaultCAValidity)
	}

	before := readFiles(t, caFiles...)
	_, err = cli(t, nil, "ca", "init", "--cluster", "test", "--out", caDir)
	if err == nil || isUsage(err) || !strings.Contains(err.Error(), "refusing to overwrite "+caFiles[0]+", "+caFiles[1]) {
		t.Fatalf("second ca init: %v", err)
	}
	if !sameFiles(before, readFiles(t, caFiles...)) {
		t.Fatal("a refused ca init changed the files")
	}
	if out, err := cli(t, nil, "ca", "init", "--cluster", "test", "--out", caDir, "--force"); err != nil {
		t.Fatalf("ca init --force: %v\n%s", err, out)
	}
	if sameFiles(before, readFiles(t, caFiles...)) {
		t.Fatal("ca init --force left the old CA")
	}

	for _, n := range []struct {
		id, dir string
	}{{"1", n1}, {"2", n2}} {
		out, err := cli(t, nil, "ca", "issue", "--ca", caDir, "--node", n.id, "--out", n.dir, "--validity", "720h")
		if err != nil || !strings.Contains(out, "node "+n.id+" of cluster test") || !strings.Contains(out, "wrote "+filepath.Join(n.dir, "ca.pem")) {
			t.Fatalf("ca issue node %s: %v\n%s", n.id, err, out)
		}
		if st, err := os.Stat(filepath.Join(n.dir, "node.key")); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("node.key: %v %v", st.Mode(), err)
		}
		out, err = cli(t, nil, "ca", "check", "--cluster", "test", "--node", n.id,
			"--bundle", filepath.Join(n.dir, "ca.pem"), "--cert", filepath.Join(n.dir, "node.pem"), "--key", filepath.Join(n.dir, "node.key"))
		if err != nil || !strings.Contains(out, "node     "+n.id+" of cluster test") || !strings.Contains(out, "issuer   test cluster CA") ||
			!strings.Contains(out, "(in 30 days)") {
			t.Fatalf("ca check node %s: %v\n%s", n.id, err, out)
		}
	}

	// Node 1's files are node 1's, not node 2's.
	_, err = cli(t, nil, "ca", "check", "--cluster", "test", "--node", "2",
		"--bundle", filepath.Join(n1, "ca.pem"), "--cert", filepath.Join(n1, "node.pem"), "--key", filepath.Join(n1, "node.key"))
	if err == nil || isUsage(err) || !strings.Contains(err.Error(), filepath.Join(n1, "node.pem")+" is for node 1, not 2") {
		t.Fatalf("check with node 1's files as node 2: %v", err)
	}
	_, err = cli(t, nil, "ca", "check", "--cluster", "prod", "--node", "1",
		"--bundle", filepath.Join(n1, "ca.pem"), "--cert", filepath.Join(n1, "node.pem"), "--key", filepath.Join(n1, "node.key"))
	if err == nil || !strings.Contains(err.Error(), "wrong cluster") {
		t.Fatalf("check as another cluster: %v", err)
	}

	// Issuing again refuses; --force replaces the certificate and key and
	// keeps the bundle.
	nodeFiles := []string{filepath.Join(n1, "node.pem"), filepath.Join(n1, "node.key"), filepath.Join(n1, "ca.pem")}
	before = readFiles(t, nodeFiles...)
	_, err = cli(t, nil, "ca", "issue", "--ca", caDir, "--node", "1", "--out", n1)
	if err == nil || isUsage(err) || !strings.Contains(err.Error(), "refusing to overwrite "+nodeFiles[0]+", "+nodeFiles[1]) {
		t.Fatalf("second ca issue: %v", err)
	}
	if !sameFiles(before, readFiles(t, nodeFiles...)) {
		t.Fatal("a refused ca issue changed the files")
	}
	out, err = cli(t, nil, "ca", "issue", "--ca", caDir, "--node", "1", "--out", n1, "--force")
	if err != nil || !strings.Contains(out, "kept "+nodeFiles[2]+" (1 CA)") {
		t.Fatalf("ca issue --force: %v\n%s", err, out)
	}
	after := readFiles(t, nodeFiles...)
	if bytes.Equal(before[0], after[0]) || bytes.Equal(before[1], after[1]) || !bytes.Equal(before[2], after[2]) {
		t.Fatal("ca issue --force: want a new certificate and key and the same bundle")
	}
	// A node validity past the CA's stops at the CA's expiry.
	out, err = cli(t, nil, "ca", "issue", "--ca", caDir, "--node", "1", "--out", n1, "--force", "--validity", "200000h")
	if err != nil || !strings.Contains(out, "the CA's own expiry") {
		t.Fatalf("ca issue past the CA: %v\n%s", err, out)
	}

	// A bundle of another CA already in --out: refused whatever --force,
	// nothing written.
	other := filepath.Join(dir, "other")
	if _, err := cli(t, nil, "ca", "init", "--cluster", "test", "--out", other); err != nil {
		t.Fatal(err)
	}
	before = readFiles(t, nodeFiles...)
	_, err = cli(t, nil, "ca", "issue", "--ca", other, "--node", "1", "--out", n1, "--force")
	if err == nil || !strings.Contains(err.Error(), "the bundle "+nodeFiles[2]+" already there would not accept") {
		t.Fatalf("ca issue under a CA the bundle lacks: %v", err)
	}
	if !sameFiles(before, readFiles(t, nodeFiles...)) {
		t.Fatal("a refused ca issue changed the files")
	}
	// The bundle of a rotation (old and new CA) accepts either.
	bundle := append(readFiles(t, filepath.Join(caDir, "ca.pem"))[0], readFiles(t, filepath.Join(other, "ca.pem"))[0]...)
	if err := os.WriteFile(nodeFiles[2], bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = cli(t, nil, "ca", "issue", "--ca", other, "--node", "1", "--out", n1, "--force")
	if err != nil || !strings.Contains(out, "(2 CAs)") {
		t.Fatalf("ca issue into a two-CA bundle: %v\n%s", err, out)
	}
}

// TestCAUsage: bad command lines are usage errors (exit status 2) naming
// the problem; -h prints the help.
func TestCAUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ca"}, "ca: missing action"},
		{[]string{"ca", "revoke"}, `ca: unknown action "revoke"`},
		{[]string{"ca", "init", "--out", dir}, "ca init: missing --cluster"},
		{[]string{"ca", "init"}, "ca init: missing --cluster, --out"},
		{[]string{"ca", "init", "--cluster", "my cluster", "--out", dir}, `ca init: --cluster: cluster name "my cluster"`},
		{[]string{"ca", "init", "--cluster", "test", "--out", dir, "--validity", "-1h"}, "ca init: --validity -1h0m0s: want a positive duration"},
		{[]string{"ca", "init", "--cluster", "test", "--out", dir, "extra"}, `ca init: unexpected argument "extra"`},
		{[]string{"ca", "init", "--colour", "red"}, "ca init: flag provided but not defined: -colour"},
		{[]string{"ca", "issue", "--ca", dir, "--out", dir}, "ca issue: --node 0: want a node id 1..64"},
		{[]string{"ca", "issue", "--ca", dir, "--out", dir, "--node", "65"}, "ca issue: --node 65: want a node id 1..64"},
		{[]string{"ca", "issue", "--node", "1"}, "ca issue: missing --ca, --out"},
		{[]string{"ca", "check", "--cluster", "test", "--node", "1", "--bundle", "b"}, "ca check: missing --cert, --key"},
	} {
		out, err := cli(t, nil, tc.args...)
		if !isUsage(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want a usage error with %q\n%s", tc.args, err, tc.want, out)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("usage errors wrote %d files", len(entries))
	}
	// A missing CA is not a usage error; the error names the file.
	_, err := cli(t, nil, "ca", "issue", "--ca", filepath.Join(dir, "none"), "--node", "1", "--out", dir)
	if err == nil || isUsage(err) || !strings.Contains(err.Error(), filepath.Join(dir, "none", "ca.pem")) {
		t.Errorf("issue with a missing CA: %v", err)
	}
	for _, args := range [][]string{{"ca", "-h"}, {"ca", "issue", "-h"}, {"help"}} {
		out, err := cli(t, nil, args...)
		if err != nil || !strings.Contains(out, "ca ") || !strings.Contains(out, "init") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
}
