package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

const sample = `{
  "cluster": "test", "cluster_tag": "574c4650",
  "key_file": "KEYFILE",
  "node_id": 3,
  "nodes": [
    {"id": 1, "name": "node1", "addrs": ["10.97.1.11", "10.97.2.11"]},
    {"id": 2, "name": "node2", "addrs": ["10.97.1.12", "10.97.2.12"]},
    {"id": 3, "name": "node3", "addrs": ["10.97.1.13", "10.97.2.13"]}
  ],
  "networks": [ {"name": "priv1", "interface": "eth1"}, {"name": "priv2", "interface": "eth2"} ],
  "port": 7400,
  "quorum": {"device": "iscsi://10.98.0.1:3260/iqn.2024-01.dev.wolfpack:quorum/1", "initiator_name": "iqn.2024-01.dev.wolfpack:node3"},
  "admin_socket": "/run/wolfpack/node3.sock",
  "timing": {"heartbeat_interval": "100ms", "heartbeat_threshold": 5, "quorum_check_interval": "1s"}
}`

var fakeIfaces = Options{InterfaceExists: func(name string) error {
	if name == "eth1" || name == "eth2" {
		return nil
	}
	return errors.New("no such network interface")
}}

func write(t *testing.T, cfg string) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "node.json")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(cfg, "KEYFILE", key)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadSample(t *testing.T) {
	c, err := Load(write(t, sample), fakeIfaces)
	if err != nil {
		t.Fatal(err)
	}
	if c.ClusterTag != 0x574c4650 || c.NodeID != 3 || len(c.Key) != 32 || c.Port != 7400 {
		t.Fatalf("parsed %+v", c)
	}
	if s := c.Self(); s.Name != "node3" || s.Addrs[1].String() != "10.97.2.13" {
		t.Fatalf("self %+v", s)
	}
	if c.HeartbeatInterval != 100*time.Millisecond || c.HeartbeatThreshold != 5 || c.QuorumCheckInterval != time.Second {
		t.Fatalf("timing %+v", c)
	}
}

// Every error names the field.
func TestLoadErrors(t *testing.T) {
	cases := []struct{ old, new, field string }{
		{`"cluster": "test",`, `"cluster": "test", "colour": 1,`, "unknown field"},
		{`"node_id": 3`, `"node_id": 4`, "node_id"},
		{`"cluster_tag": "574c4650"`, `"cluster_tag": "57"`, "cluster_tag"},
		{`"interface": "eth2"`, `"interface": "eth9"`, "networks[1].interface"},
		{`"10.97.2.12"`, `"10.97.2.x"`, "nodes[1].addrs[1]"},
		{`"10.97.2.12"`, `"10.97.2.11"`, "nodes[1].addrs[1]"},
		{`, "10.97.2.13"]`, `]`, "nodes[2].addrs"},
		{`{"id": 2,`, `{"id": 1,`, "nodes[1].id"},
		{`"port": 7400`, `"port": 0`, "port"},
		{`"device": "iscsi://`, `"device": "nbd://`, "quorum.device"},
		{`, "initiator_name": "iqn.2024-01.dev.wolfpack:node3"`, ``, "quorum.initiator_name"},
		{`"heartbeat_interval": "100ms"`, `"heartbeat_interval": "soon"`, "timing.heartbeat_interval"},
		{`"heartbeat_threshold": 5`, `"heartbeat_threshold": 1`, "timing.heartbeat_threshold"},
		{`"key_file": "KEYFILE"`, `"key_file": "/nonexistent/key"`, "key_file"},
	}
	for _, c := range cases {
		if !strings.Contains(sample, c.old) {
			t.Fatalf("case %s: %q not in sample", c.field, c.old)
		}
		_, err := Load(write(t, strings.Replace(sample, c.old, c.new, 1)), fakeIfaces)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: err = %v", c.field, err)
		}
	}
}

func TestShortKey(t *testing.T) {
	p := write(t, sample)
	key := filepath.Join(filepath.Dir(p), "cluster.key")
	os.WriteFile(key, []byte("abcd"), 0o600)
	if _, err := Load(p, fakeIfaces); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short key: %v", err)
	}
}

// TestWriteFileRoundTrip: what WriteFile writes, Parse reads back as the
// same file; a zero Timing is left out and means the defaults.
func TestWriteFileRoundTrip(t *testing.T) {
	p := write(t, sample)
	f0, err := Parse([]byte(strings.ReplaceAll(sample, "KEYFILE", filepath.Join(filepath.Dir(p), "cluster.key"))))
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range []Timing{f0.Timing, {}} {
		f := *f0
		f.Timing = tm
		out := filepath.Join(t.TempDir(), "out.json")
		if err := f.WriteFile(out); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		g, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(WriteFile): %v\n%s", err, b)
		}
		if !reflect.DeepEqual(*g, f) {
			t.Errorf("round trip: got %+v, want %+v", *g, f)
		}
		if tm == (Timing{}) && strings.Contains(string(b), "heartbeat_interval") {
			t.Errorf("zero timing written out:\n%s", b)
		}
		c, err := Load(out, fakeIfaces)
		if err != nil {
			t.Fatal(err)
		}
		if c.HeartbeatInterval != DefaultHeartbeatInterval || c.HeartbeatThreshold != DefaultHeartbeatThreshold || c.QuorumCheckInterval != DefaultQuorumCheckInterval {
			t.Errorf("timing %+v: %v %d %v", tm, c.HeartbeatInterval, c.HeartbeatThreshold, c.QuorumCheckInterval)
		}
	}
}

// streamFiles writes a CA bundle and certificates for nodes 2 and 3 of
// cluster "test" into dir and returns the sample with node 3's files set.
func streamFiles(t *testing.T, dir string) string {
	t.Helper()
	ca, err := stream.NewCA("test", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []nodes.ID{2, 3} {
		n, err := ca.Issue(id, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Save(filepath.Join(dir, fmt.Sprintf("node%d.pem", id)), filepath.Join(dir, fmt.Sprintf("node%d.key", id))); err != nil {
			t.Fatal(err)
		}
	}
	return strings.Replace(sample, `"port": 7400,`, fmt.Sprintf(`"port": 7400,
  "ca_bundle": %q, "node_cert": %q, "node_key": %q,`,
		filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node3.pem"), filepath.Join(dir, "node3.key")), 1)
}

// TestStreams: the stream files load into Credentials, stream_port
// defaults to port, and the listen and peer addresses are each node's
// first-network address.
func TestStreams(t *testing.T) {
	withStreams := streamFiles(t, t.TempDir())
	for _, tc := range []struct {
		name, cfg string
		streams   bool
		port      int
	}{
		{"none", sample, false, 7400},
		{"default port", withStreams, true, 7400},
		{"own port", strings.Replace(withStreams, `"port": 7400,`, `"port": 7400, "stream_port": 7500,`, 1), true, 7500},
	} {
		c, err := Load(write(t, tc.cfg), fakeIfaces)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.Streams() != tc.streams || c.StreamPort != tc.port {
			t.Errorf("%s: Streams() = %v, StreamPort = %d", tc.name, c.Streams(), c.StreamPort)
		}
		if tc.streams && (c.Credentials.Node != 3 || c.Credentials.Cluster != "test" || len(c.Credentials.CAs) != 1) {
			t.Errorf("%s: credentials %+v", tc.name, c.Credentials)
		}
		if got, want := c.StreamListen(), fmt.Sprintf("10.97.1.13:%d", tc.port); got != want {
			t.Errorf("%s: StreamListen() = %q, want %q", tc.name, got, want)
		}
		want := map[nodes.ID]string{1: fmt.Sprintf("10.97.1.11:%d", tc.port), 2: fmt.Sprintf("10.97.1.12:%d", tc.port)}
		if got := c.StreamAddrs(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: StreamAddrs() = %v, want %v", tc.name, got, want)
		}
	}
	v6 := strings.NewReplacer("10.97.1.11", "fd00::11", "10.97.1.12", "fd00::12", "10.97.1.13", "fd00::13").Replace(sample)
	c, err := Load(write(t, v6), fakeIfaces)
	if err != nil {
		t.Fatal(err)
	}
	if c.StreamListen() != "[fd00::13]:7400" || c.StreamAddrs()[1] != "[fd00::11]:7400" {
		t.Errorf("IPv6: %q %v", c.StreamListen(), c.StreamAddrs())
	}
}

// TestStreamErrors: each bad stream setting is refused, naming the field
// and, for a file, the file.
func TestStreamErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := streamFiles(t, dir)
	other, err := stream.NewCA("test", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Save(filepath.Join(dir, "other.pem"), filepath.Join(dir, "other.key")); err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	q := func(name string) string { return fmt.Sprintf("%q", p(name)) }
	cases := []struct{ name, old, new, want string }{
		{"stream_port 0 is the default, -1 is not", `"port": 7400,`, `"port": 7400, "stream_port": -1,`, "stream_port: -1, want 1..65535"},
		{"stream_port too large", `"port": 7400,`, `"port": 7400, "stream_port": 65536,`, "stream_port: 65536, want 1..65535"},
		{"only ca_bundle", `"node_cert": ` + q("node3.pem") + `, "node_key": ` + q("node3.key") + `,`, ``, "node_cert: missing: ca_bundle set"},
		{"no node_key", `, "node_key": ` + q("node3.key"), ``, "node_key: missing: ca_bundle and node_cert set"},
		{"missing bundle", q("ca.pem"), q("nonexistent.pem"), "ca_bundle: stat " + p("nonexistent.pem") + ": no such file"},
		{"missing cert", q("node3.pem"), q("nonexistent.pem"), "node_cert: stat " + p("nonexistent.pem") + ": no such file"},
		{"missing key", q("node3.key"), q("nonexistent.key"), "node_key: stat " + p("nonexistent.key") + ": no such file"},
		{"another node's certificate and key", q("node3.pem") + `, "node_key": ` + q("node3.key"), q("node2.pem") + `, "node_key": ` + q("node2.key"), "node certificate " + p("node2.pem") + " is for node 2, not 3"},
		{"key of another certificate", q("node3.key"), q("node2.key"), "key " + p("node2.key") + " does not belong to the node certificate " + p("node3.pem")},
		{"another CA", q("ca.pem"), q("other.pem"), "node certificate " + p("node3.pem") + " is not signed by a CA in the CA bundle " + p("other.pem")},
		{"a key as the bundle", q("ca.pem"), q("ca.key"), "CA bundle " + p("ca.key") + ": PEM block 1 is \"PRIVATE KEY\""},
		{"wrong cluster", `"cluster": "test"`, `"cluster": "prod"`, "is the CA of cluster \"test\", not \"prod\""},
		{"cluster name unfit for a certificate", `"cluster": "test"`, `"cluster": "my cluster"`, "cluster: cluster name \"my cluster\": character ' '"},
	}
	for _, c := range cases {
		if !strings.Contains(cfg, c.old) {
			t.Fatalf("%s: %q not in the config", c.name, c.old)
		}
		_, err := Load(write(t, strings.Replace(cfg, c.old, c.new, 1)), fakeIfaces)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, c.want)
		}
	}
	// Without stream files, the cluster name is not checked.
	if _, err := Load(write(t, strings.Replace(sample, `"cluster": "test"`, `"cluster": "my cluster"`, 1)), fakeIfaces); err != nil {
		t.Errorf("a cluster name with a space and no streams: %v", err)
	}
}

// TestWriteFileRoundTripStreams: the stream fields survive WriteFile and
// Parse, and the written file loads the same credentials.
func TestWriteFileRoundTripStreams(t *testing.T) {
	cfg := strings.Replace(streamFiles(t, t.TempDir()), `"port": 7400,`, `"port": 7400, "stream_port": 7500,`, 1)
	p := write(t, cfg)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.CABundle == "" || f.NodeCert == "" || f.NodeKey == "" || f.StreamPort != 7500 {
		t.Fatalf("parsed %+v", f)
	}
	out := filepath.Join(t.TempDir(), "out.json")
	if err := f.WriteFile(out); err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(WriteFile): %v\n%s", err, b)
	}
	if !reflect.DeepEqual(g, f) {
		t.Errorf("round trip: got %+v, want %+v", g, f)
	}
	c, err := Load(out, fakeIfaces)
	if err != nil || !c.Streams() || c.StreamPort != 7500 || c.Credentials.Node != 3 {
		t.Fatalf("Load(WriteFile): %v %+v", err, c)
	}
	// A file without streams writes none of their fields.
	f.CABundle, f.NodeCert, f.NodeKey, f.StreamPort = "", "", "", 0
	b, err = f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ca_bundle", "node_cert", "node_key", "stream_port"} {
		if strings.Contains(string(b), k) {
			t.Errorf("%s written for a file without streams:\n%s", k, b)
		}
	}
}
