package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

// apiFiles writes a CA, an API server certificate, a client certificate
// and node certificates into dir and returns the sample with an [api]
// section (at line 10) using the CA and the server's files.
func apiFiles(t *testing.T, dir string) string {
	t.Helper()
	streamFiles(t, dir) // the CA, ca.pem and ca.key
	ca, err := stream.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueServer([]string{"node3", "10.97.1.13"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Save(filepath.Join(dir, "api.pem"), filepath.Join(dir, "api.key")); err != nil {
		t.Fatal(err)
	}
	cl, err := ca.IssueClient("alice", "operator", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Save(filepath.Join(dir, "alice.pem"), filepath.Join(dir, "alice.key")); err != nil {
		t.Fatal(err)
	}
	section := fmt.Sprintf("[api]\nlisten = \"10.97.1.13:7443\"\nca_bundle = %q\ncert = %q\nkey = %q\n\n",
		filepath.Join(dir, "ca.pem"), filepath.Join(dir, "api.pem"), filepath.Join(dir, "api.key"))
	return strings.Replace(sample, "[quorum]", section+"[quorum]", 1)
}

// TestAPI: an [api] section loads its files; without one there is no
// remote API.
func TestAPI(t *testing.T) {
	c, err := Load(write(t, apiFiles(t, t.TempDir())), fakeIfaces)
	if err != nil {
		t.Fatal(err)
	}
	if c.API == nil || c.API.Listen.String() != "10.97.1.13:7443" || len(c.API.ClientCAs) != 1 || c.API.Cert.Leaf == nil ||
		c.API.Cert.Leaf.Subject.CommonName != "node3" {
		t.Errorf("API = %+v", c.API)
	}
	if c, err := Load(write(t, sample), fakeIfaces); err != nil || c.API != nil {
		t.Errorf("no [api]: API = %+v, %v", c.API, err)
	}
}

// TestAPIErrors: each bad [api] setting is refused naming the file, the
// line and column, and the key (and, for a file, the file).
func TestAPIErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := apiFiles(t, dir)
	p := func(name string) string { return filepath.Join(dir, name) }
	q := func(name string) string { return fmt.Sprintf("%q", p(name)) }
	cases := []struct{ name, old, new, want string }{
		{"listen without a port", `"10.97.1.13:7443"`, `"10.97.1.13"`, `:11:1: api.listen: "10.97.1.13": want ADDRESS:PORT`},
		{"listen on a host name", `"10.97.1.13:7443"`, `"node3:7443"`, `:11:1: api.listen: "node3:7443": want ADDRESS:PORT`},
		{"listen on port 0", `"10.97.1.13:7443"`, `"10.97.1.13:0"`, `:11:1: api.listen: "10.97.1.13:0": want ADDRESS:PORT with an IP address and a port 1..65535`},
		{"no listen", "listen = \"10.97.1.13:7443\"\n", "", `:10:2: api.listen: missing: api.ca_bundle and api.cert and api.key set, and the remote admin API needs all four`},
		{"no key", "key = " + q("api.key") + "\n", "", `:10:2: api.key: missing: api.listen and api.ca_bundle and api.cert set`},
		{"missing bundle", q("ca.pem"), q("nonexistent.pem"), ":12:1: api.ca_bundle: stat " + p("nonexistent.pem") + ": no such file"},
		{"a key as the bundle", "ca_bundle = " + q("ca.pem"), "ca_bundle = " + q("ca.key"), ":12:1: api.ca_bundle: CA bundle " + p("ca.key") + ": PEM block 1 is \"PRIVATE KEY\""},
		{"key of another certificate", q("api.key"), q("alice.key"), ":13:1: api.cert: " + p("api.pem") + " with the key " + p("alice.key") + ": private key does not match public key"},
		{"a client's certificate", q("api.pem") + "\nkey = " + q("api.key"), q("alice.pem") + "\nkey = " + q("alice.key"), ":13:1: api.cert: " + p("alice.pem") + " is not a server certificate"},
		{"unknown key", "[api]\n", "[api]\nroles = \"x\"\n", `:11:1: api.roles: unknown key`},
		{"wrong type", `"10.97.1.13:7443"`, `7443`, `:11:10: api.listen: wrong type: a TOML integer, want a string`},
	}
	for _, c := range cases {
		if !strings.Contains(cfg, c.old) {
			t.Fatalf("%s: %q not in the config", c.name, c.old)
		}
		path := write(t, strings.Replace(cfg, c.old, c.new, 1))
		_, err := Load(path, fakeIfaces)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), path+c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, path+c.want)
		}
	}
	// Nothing in the files was changed by a refused load.
	for _, f := range []string{"ca.pem", "api.pem", "api.key"} {
		if _, err := os.Stat(p(f)); err != nil {
			t.Error(err)
		}
	}
}
