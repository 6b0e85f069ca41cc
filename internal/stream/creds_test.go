package stream

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadCredentials: saved files load back, and each kind of bad file is
// refused with an error naming the file and the problem.
func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	ca := clusterCA(t)
	if err := ca.Save(p("ca.pem"), p("ca.key")); err != nil {
		t.Fatal(err)
	}
	if back, err := LoadCA(p("ca.pem"), p("ca.key")); err != nil || back.Cluster != "test" {
		t.Fatalf("LoadCA: %v", err)
	}
	id, err := ca.Issue(2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := id.Save(p("node.pem"), p("node.key")); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p("node.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v, %v", st.Mode(), err)
	}
	c, err := LoadCredentials("test", 2, p("ca.pem"), p("node.pem"), p("node.key"))
	if err != nil || c.Node != 2 || len(c.CAs) != 1 {
		t.Fatalf("LoadCredentials: %+v, %v", c, err)
	}
	if !c.Certificate().Equal(id.Cert) {
		t.Errorf("Certificate() is not the node's certificate")
	}
	if cas, err := ReadCABundle(p("ca.pem")); err != nil || len(cas) != 1 || !cas[0].Equal(ca.Cert) {
		t.Errorf("ReadCABundle: %d certificates, %v", len(cas), err)
	}
	if _, err := ReadCABundle(p("node.key")); err == nil || !strings.Contains(err.Error(), "CA bundle "+p("node.key")) {
		t.Errorf("ReadCABundle of a key: %v", err)
	}

	other, _ := NewCA("test", 0)
	other.Save(p("other.pem"), p("other.key"))
	prod, _ := NewCA("prod", 0)
	prod.Save(p("prod.pem"), p("prod.key"))
	expired, _ := ca.issue("test", 2, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	expired.Save(p("expired.pem"), p("expired.key"))
	os.WriteFile(p("junk.pem"), []byte("not a certificate\n"), 0o644)
	for _, tc := range []struct {
		name                 string
		cluster              string
		bundle, cert, key    string
		wantFile, wantReason string
	}{
		{"missing bundle", "test", "nope.pem", "node.pem", "node.key", "nope.pem", "no such file"},
		{"bundle not PEM", "test", "junk.pem", "node.pem", "node.key", "junk.pem", "not PEM"},
		{"key not PEM", "test", "ca.pem", "node.pem", "junk.pem", "junk.pem", "not PEM"},
		{"not signed by the CA", "test", "other.pem", "node.pem", "node.key", "node.pem", "not signed by a CA in the CA bundle"},
		{"expired", "test", "ca.pem", "expired.pem", "expired.key", "expired.pem", "expired"},
		{"wrong cluster bundle", "test", "prod.pem", "node.pem", "node.key", "prod.pem", "wrong cluster"},
		{"wrong cluster", "prod", "ca.pem", "node.pem", "node.key", "ca.pem", "wrong cluster"},
		{"key of another certificate", "test", "ca.pem", "node.pem", "expired.key", "expired.key", "does not belong"},
		{"a CA as node certificate", "test", "ca.pem", "ca.pem", "ca.key", "ca.pem", "is a CA certificate"},
	} {
		_, err := LoadCredentials(tc.cluster, 2, p(tc.bundle), p(tc.cert), p(tc.key))
		if err == nil || !strings.Contains(err.Error(), p(tc.wantFile)) || !strings.Contains(err.Error(), tc.wantReason) {
			t.Errorf("%s: %v, want an error naming %s and %q", tc.name, err, tc.wantFile, tc.wantReason)
		}
	}
	if _, err := LoadCredentials("test", 3, p("ca.pem"), p("node.pem"), p("node.key")); err == nil || !strings.Contains(err.Error(), "for node 2, not 3") {
		t.Errorf("wrong node: %v", err)
	}
}

func TestClusterNames(t *testing.T) {
	for _, ok := range []string{"test", "prod-1.example", "a_b"} {
		if err := CheckClusterName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a..b", ".a", "a b", "a/b", "é", strings.Repeat("a", 254)} {
		if err := CheckClusterName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
		if _, err := NewCA(bad, 0); err == nil {
			t.Errorf("NewCA(%q) accepted", bad)
		}
	}
	if _, err := clusterCA(t).Issue(65, 0); err == nil {
		t.Error("issued a certificate for node 65")
	}
	if got := NodeURI("test", 7); got != "wolfpack://test/node/7" {
		t.Errorf("NodeURI = %s", got)
	}
}
