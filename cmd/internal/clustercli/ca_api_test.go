package clustercli

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

// TestCAClientServer: the files of 'cluster ca server' and 'cluster ca
// client' make a TLS connection that 'cluster status --api' uses: the
// server verifies the client's certificate against the CA and sees its
// name and role, the client the server's address. The server here stands
// in for clusterd (internal/daemon's TestRemoteAPI serves the real one).
func TestCAClientServer(t *testing.T) {
	dir := t.TempDir()
	caDir, srvDir, cliDir := filepath.Join(dir, "ca"), filepath.Join(dir, "srv"), filepath.Join(dir, "alice")
	if _, err := cli(t, nil, "ca", "init", "--cluster", "test", "--out", caDir); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, nil, "ca", "server", "--ca", caDir, "--host", "127.0.0.1,node1", "--out", srvDir)
	if err != nil || !strings.Contains(out, "admin API server 127.0.0.1,node1 of cluster test") || !strings.Contains(out, "wrote "+filepath.Join(srvDir, "ca.pem")) {
		t.Fatalf("ca server: %v\n%s", err, out)
	}
	out, err = cli(t, nil, "ca", "client", "--ca", caDir, "--name", "alice", "--role", "read-only", "--out", cliDir)
	if err != nil || !strings.Contains(out, "admin API client alice (read-only)") {
		t.Fatalf("ca client: %v\n%s", err, out)
	}
	if st, err := os.Stat(filepath.Join(cliDir, "alice.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("alice.key: %v %v", st, err)
	}
	before := readFiles(t, filepath.Join(cliDir, "alice.pem"), filepath.Join(cliDir, "alice.key"))
	if _, err := cli(t, nil, "ca", "client", "--ca", caDir, "--name", "alice", "--role", "operator", "--out", cliDir); err == nil ||
		!strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second ca client: %v, want a refusal", err)
	}
	if !sameFiles(before, readFiles(t, filepath.Join(cliDir, "alice.pem"), filepath.Join(cliDir, "alice.key"))) {
		t.Error("a refused ca client changed the files")
	}

	cas, err := stream.ReadCABundle(filepath.Join(srvDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cas[0])
	cert, err := tls.LoadX509KeyPair(filepath.Join(srvDir, "api.pem"), filepath.Join(srvDir, "api.key"))
	if err != nil {
		t.Fatal(err)
	}
	var seen string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaf := r.TLS.VerifiedChains[0][0]
		seen = leaf.Subject.CommonName + "/" + strings.Join(leaf.Subject.Organization, ",")
		if r.URL.Path == "/v1/db/node" {
			_ = json.NewEncoder(w).Encode(clusterapi.ListResult{Seq: 3, Objects: []clusterapi.Object{{Kind: "node", Name: "node1", Props: map[string]any{"id": 1}}}})
			return
		}
		_ = json.NewEncoder(w).Encode(clusterapi.Status{Node: 1, Name: "node1", State: "up"})
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	defer srv.Close()
	out, err = cli(t, nil, "status", "--api", srv.URL, "--ca", filepath.Join(cliDir, "ca.pem"),
		"--cert", filepath.Join(cliDir, "alice.pem"), "--key", filepath.Join(cliDir, "alice.key"), "--json")
	if err != nil || !strings.Contains(out, `"name":"node1"`) || seen != "alice/read-only" {
		t.Errorf("status --api: %v, the server saw %q\n%s", err, seen, out)
	}
	// The object commands take the same flags.
	seen = ""
	out, err = cli(t, nil, "node", "list", "--api", srv.URL, "--ca", filepath.Join(cliDir, "ca.pem"),
		"--cert", filepath.Join(cliDir, "alice.pem"), "--key", filepath.Join(cliDir, "alice.key"))
	if err != nil || !strings.Contains(out, "node1") || seen != "alice/read-only" {
		t.Errorf("node list --api: %v, the server saw %q\n%s", err, seen, out)
	}
}

func TestCAClientServerUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ca", "client", "--ca", dir, "--out", dir}, "ca client: missing --name, --role"},
		{[]string{"ca", "client", "--ca", dir, "--out", dir, "--name", "alice", "--role", "admin"}, `ca client: --role "admin": want operator or read-only`},
		{[]string{"ca", "client", "--ca", dir, "--out", dir, "--name", "../alice", "--role", "operator"}, `ca client: --name "../alice": want letters`},
		{[]string{"ca", "client", "--ca", dir, "--out", dir, "--name", "alice", "--role", "operator", "--host", "h"}, "ca client: --host is for 'ca server'"},
		{[]string{"ca", "server", "--ca", dir, "--out", dir}, "ca server: missing --host"},
		{[]string{"ca", "server", "--ca", dir, "--out", dir, "--host", "h", "--role", "operator"}, "ca server: --name and --role are for 'ca client'"},
		{[]string{"status", "--socket", "s", "--api", "https://h:1"}, "status: --socket and --api together; give one"},
		{[]string{"status", "--socket", "s", "node1"}, "status takes no arguments"},
		{[]string{"status", "--api", "https://h:1", "--ca", "c"}, "--api needs --ca, --cert and --key"},
		{[]string{"status", "--socket", "s", "--cert", "c"}, "--ca, --cert and --key are for --api"},
		{[]string{"group", "list", "--socket", "s", "--api", "https://h:1"}, "--socket and --api together"},
		{[]string{"group", "list", "--api", "https://h:1", "--ca", "c"}, "--api needs --ca, --cert and --key"},
	} {
		out, err := cli(t, nil, tc.args...)
		if !isUsage(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want a usage error with %q\n%s", tc.args, err, tc.want, out)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("usage errors wrote %d files", len(entries))
	}
}
