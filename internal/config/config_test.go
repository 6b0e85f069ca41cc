package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
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
