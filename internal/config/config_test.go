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

const sample = `node_id = 3
admin_socket = "/run/wolfpack/node3.sock"

[cluster]
name = "test"
tag = "574c4650"
key_file = "KEYFILE"
port = 7400

[quorum]
device = "iscsi://10.98.0.1:3260/iqn.2024-01.dev.wolfpack:quorum/1"
initiator_name = "iqn.2024-01.dev.wolfpack:node3"

[timing]
heartbeat_interval = "100ms"
heartbeat_threshold = 5
quorum_check_interval = "1s"

[[networks]]
name = "priv1"
interface = "eth1"

[[networks]]
name = "priv2"
interface = "eth2"

[[nodes]]
id = 1
name = "node1"
addrs = ["10.97.1.11", "10.97.2.11"]

[[nodes]]
id = 2
name = "node2"
addrs = ["10.97.1.12", "10.97.2.12"]

[[nodes]]
id = 3
name = "node3"
addrs = ["10.97.1.13", "10.97.2.13"]
`

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
	p := filepath.Join(dir, "node.toml")
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
	if c.ClusterTag != 0x574c4650 || c.NodeID != 3 || len(c.Key) != 32 || c.Port != 7400 || c.Cluster != "test" {
		t.Fatalf("parsed %+v", c)
	}
	if s := c.Self(); s.Name != "node3" || s.Addrs[1].String() != "10.97.2.13" {
		t.Fatalf("self %+v", s)
	}
	if c.Timing != Profiles["default"] {
		t.Fatalf("timing %+v, want the default profile %+v", c.Timing, Profiles["default"])
	}
	if c.RealtimePriority != DefaultRealtimePriority {
		t.Fatalf("realtime priority %d unset, want the default %d", c.RealtimePriority, DefaultRealtimePriority)
	}
	for _, p := range []int{0, 1, 42, MaxRealtimePriority} {
		c, err := Load(write(t, strings.Replace(sample, "node_id = 3\n", fmt.Sprintf("node_id = 3\nrealtime_priority = %d\n", p), 1)), fakeIfaces)
		if err != nil || c.RealtimePriority != p {
			t.Fatalf("realtime_priority = %d: %v, got %+v", p, err, c)
		}
	}
}

// TestLoadErrors: every validation error names the file, the line of the
// key (or of the nearest enclosing one) and the key.
func TestLoadErrors(t *testing.T) {
	cases := []struct {
		old, new, key string
		line          int
	}{
		{`node_id = 3`, `node_id = 4`, "node_id", 1},
		{`tag = "574c4650"`, `tag = "57"`, "cluster.tag", 6},
		{`name = "test"`, `name = ""`, "cluster.name", 5},
		{`interface = "eth2"`, `interface = "eth9"`, "networks[1].interface", 25},
		{`"10.97.2.12"`, `"10.97.2.x"`, "nodes[1].addrs[1]", 35},
		{`"10.97.2.12"`, `"10.97.2.11"`, "nodes[1].addrs[1]", 35},
		{`"10.97.1.13", "10.97.2.13"]`, `"10.97.1.13"]`, "nodes[2].addrs", 40},
		{"id = 2\n", "id = 1\n", "nodes[1].id", 33},
		{`name = "node2"`, `name = "node1"`, "nodes[1].name", 34},
		{`port = 7400`, `port = 0`, "cluster.port", 8},
		{`device = "iscsi://`, `device = "nbd://`, "quorum.device", 11},
		{`initiator_name = "iqn.2024-01.dev.wolfpack:node3"`, ``, "quorum.initiator_name", 10},
		{`heartbeat_interval = "100ms"`, `heartbeat_interval = "5ms"`, "timing.heartbeat_interval", 15},
		{`heartbeat_threshold = 5`, `heartbeat_threshold = 1`, "timing.heartbeat_threshold", 16},
		{`heartbeat_threshold = 5`, `heartbeat_threshold = 0`, "timing.heartbeat_threshold", 16},
		{`key_file = "KEYFILE"`, `key_file = "/nonexistent/key"`, "cluster.key_file", 7},
		{`admin_socket = "/run/wolfpack/node3.sock"`, `state_dir = "var/lib"`, "state_dir", 2},
		{"[timing]\n", "[resmon]\nwatchdog = \"dev/watchdog\"\n[timing]\n", "resmon.watchdog", 15},
		{"node_id = 3\n", "node_id = 3\nrealtime_priority = 100\n", "realtime_priority", 2},
		{"node_id = 3\n", "node_id = 3\nrealtime_priority = -1\n", "realtime_priority", 2},
	}
	for _, c := range cases {
		if !strings.Contains(sample, c.old) {
			t.Fatalf("case %s: %q not in sample", c.key, c.old)
		}
		p := write(t, strings.Replace(sample, c.old, c.new, 1))
		_, err := Load(p, fakeIfaces)
		var ce *Error
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &ce) {
			t.Errorf("%s: err = %v", c.key, err)
			continue
		}
		if ce.Key != c.key || ce.Line != c.line || ce.File != p {
			t.Errorf("%s: got key %q line %d file %s: %v", c.key, ce.Key, ce.Line, ce.File, err)
		}
		if want := fmt.Sprintf("%s:%d:", p, c.line); !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), " "+c.key+": ") {
			t.Errorf("%s: %q does not start with %q and name the key", c.key, err, want)
		}
	}
}

// TestDecodeErrors: what the TOML decoder refuses, with the line, the
// column and the key, in an operator's words.
func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name, old, new string
		want           []string // one per error: "LINE:COL: KEY: message"
	}{
		{"malformed: unclosed table header", "[timing]\n", "[timing\n",
			[]string{"14:8: expected ']' to close table name"}},
		{"malformed: string not closed", `name = "test"`, `name = "test`,
			[]string{`5:13: basic strings cannot have new lines`}},
		{"unknown key at the top", "node_id = 3\n", "node_id = 3\ncolour = \"blue\"\n",
			[]string{`2:1: colour: unknown key`}},
		{"unknown keys in sections, each reported", "port = 7400\n", "port = 7400\nprot = 7401\n",
			[]string{`9:1: cluster.prot: unknown key`}},
		{"unknown key in an array of tables and an unknown section", "[[nodes]]\nid = 2\n", "[[nodes]]\nid = 2\naddr = \"x\"\n[bogus]\nx = 1\n[[nodes]]\nid = 2\n",
			[]string{`34:1: nodes.addr: unknown key`, `35:2: bogus: unknown key`}},
		{"wrong type: string for an integer", `node_id = 3`, `node_id = "3"`,
			[]string{`1:11: node_id: wrong type: a TOML string, want an integer`}},
		{"wrong type: integer for a duration", `heartbeat_interval = "100ms"`, `heartbeat_interval = 100`,
			[]string{`15:22: timing.heartbeat_interval: wrong type: a TOML integer, want a duration string such as "100ms"`}},
		{"wrong type: a string for the addresses", `addrs = ["10.97.1.11", "10.97.2.11"]`, `addrs = "10.97.1.11"`,
			[]string{`30:9: nodes.addrs: wrong type: a TOML string, want an array of strings`}},
		{"wrong type: a table for a string", `device = "iscsi://10.98.0.1:3260/iqn.2024-01.dev.wolfpack:quorum/1"`, `device = {host = "10.98.0.1"}`,
			[]string{`11:10: quorum.device: wrong type: a TOML inline table, want a string`}},
		{"not a duration", `quorum_check_interval = "1s"`, `quorum_check_interval = "soon"`,
			[]string{`17:1: timing.quorum_check_interval: "soon" is not a duration such as "100ms" or "1.5s"`}},
		{"a duration out of its range", `quorum_check_interval = "1s"`, `quorum_check_interval = "0s"`,
			[]string{`17:1: timing.quorum_check_interval: 0s, want 100ms..1m0s`}},
		{"a key twice", "node_id = 3\n", "node_id = 3\nnode_id = 2\n",
			[]string{`2:1: node_id: key node_id is already defined`}},
	}
	for _, c := range cases {
		if !strings.Contains(sample, c.old) {
			t.Fatalf("%s: %q not in sample", c.name, c.old)
		}
		p := write(t, strings.Replace(sample, c.old, c.new, 1))
		_, err := Load(p, fakeIfaces)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", c.name, err)
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(c.want) {
			t.Errorf("%s: %d errors, want %d:\n%v", c.name, len(lines), len(c.want), err)
			continue
		}
		for i, w := range c.want {
			if !strings.HasPrefix(lines[i], p+":"+w) {
				t.Errorf("%s: error %d is\n  %s\nwant\n  %s:%s", c.name, i, lines[i], p, w)
			}
		}
	}
}

// TestManyProblems: Validate reports every independent problem, each on
// its own line with its key.
func TestManyProblems(t *testing.T) {
	bad := strings.NewReplacer(`tag = "574c4650"`, `tag = "0"`, `port = 7400`, `port = 70000`, `"10.97.2.12"`, `"224.0.0.1"`,
		`heartbeat_threshold = 5`, `heartbeat_threshold = 500`).Replace(sample)
	_, err := Load(write(t, bad), fakeIfaces)
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{":6:1: cluster.tag:", ":8:1: cluster.port:", ":35:24: nodes[1].addrs[1]: 224.0.0.1 is not a unicast address", ":16:1: timing.heartbeat_threshold: 500, want 2..100"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("%q not in\n%v", key, err)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 4 {
		t.Errorf("%d errors, want 4:\n%v", n, err)
	}
}

// TestProfiles: a profile by name, overrides applied to it, an unknown
// profile named with the choices, and the form delay kept longer than the
// quorum check.
func TestProfiles(t *testing.T) {
	dflt, fast := Profiles["default"], Profiles["fast"]
	if dflt.HeartbeatInterval != 100*time.Millisecond || dflt.HeartbeatThreshold != 5 || dflt.QuorumCheckInterval != time.Second ||
		dflt.JoinWindow != 500*time.Millisecond || dflt.DefenceDelay != 150*time.Millisecond || dflt.FormDelay != 1500*time.Millisecond {
		t.Errorf("the default profile changed: %+v (docs/membership.md, \"Timings\")", dflt)
	}
	if fast.HeartbeatInterval != 30*time.Millisecond || fast.HeartbeatThreshold != 4 || fast.QuorumCheckInterval != 500*time.Millisecond ||
		fast.JoinWindow != 500*time.Millisecond || fast.DefenceDelay != 80*time.Millisecond || fast.FormDelay != time.Second ||
		fast.Lease != 120*time.Millisecond {
		t.Errorf("the fast profile changed: %+v (docs/clusterd.md, \"Timing profiles\", and the soak and race in BENCHMARKS.md)", fast)
	}
	noTiming := strings.Replace(sample, "[timing]\nheartbeat_interval = \"100ms\"\nheartbeat_threshold = 5\nquorum_check_interval = \"1s\"\n", "", 1)
	if noTiming == sample {
		t.Fatal("no [timing] to remove")
	}
	withTiming := func(s string) string {
		return strings.Replace(noTiming, "[[networks]]", "[timing]\n"+s+"\n[[networks]]", 1)
	}
	cases := []struct {
		name, cfg string
		want      Timings
	}{
		{"no [timing]", noTiming, dflt},
		{"default by name", withTiming(`profile = "default"`), dflt},
		{"fast", withTiming(`profile = "fast"`), fast},
		{"fast with overrides", withTiming("profile = \"fast\"\nheartbeat_threshold = 6\njoin_window = \"2s\""),
			func() Timings { x := fast; x.HeartbeatThreshold, x.JoinWindow = 6, 2*time.Second; return x }()},
		{"a longer quorum check pushes the form delay out", withTiming(`quorum_check_interval = "3s"`),
			func() Timings {
				x := dflt
				x.QuorumCheckInterval, x.FormDelay = 3*time.Second, 3500*time.Millisecond
				return x
			}()},
		{"every field set", withTiming("heartbeat_interval = \"50ms\"\nheartbeat_threshold = 3\nquorum_check_interval = \"2s\"\njoin_window = \"3s\"\ndefence_delay = \"200ms\"\nform_delay = \"2.5s\"\nlease = \"1s\""),
			Timings{Profile: "default", HeartbeatInterval: 50 * time.Millisecond, HeartbeatThreshold: 3, QuorumCheckInterval: 2 * time.Second,
				JoinWindow: 3 * time.Second, DefenceDelay: 200 * time.Millisecond, FormDelay: 2500 * time.Millisecond, Lease: time.Second}},
		{"a longer heartbeat pushes the lease out to three disk beats", withTiming(`heartbeat_interval = "200ms"`),
			func() Timings {
				x := dflt
				x.HeartbeatInterval, x.Lease = 200*time.Millisecond, 600*time.Millisecond
				return x
			}()},
	}
	for _, c := range cases {
		cfg, err := Load(write(t, c.cfg), fakeIfaces)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if cfg.Timing != c.want {
			t.Errorf("%s: timing %+v, want %+v", c.name, cfg.Timing, c.want)
		}
	}
	for _, c := range []struct{ name, timing, want string }{
		{"unknown profile", `profile = "turbo"`, `:16:1: timing.profile: unknown profile "turbo", want one of default, fast`},
		{"lease shorter than two disk beats", "heartbeat_interval = \"100ms\"\nlease = \"150ms\"",
			`:17:1: timing.lease: 150ms is shorter than two disk heartbeats (timing.heartbeat_interval 100ms)`},
		{"lease not a duration", `lease = "1"`, `:16:1: timing.lease: "1" is not a duration`},
		{"form delay not longer than the quorum check", "quorum_check_interval = \"2s\"\nform_delay = \"2s\"",
			`:17:1: timing.form_delay: 2s is not longer than timing.quorum_check_interval (2s)`},
		{"join window too short", `join_window = "10ms"`, `:16:1: timing.join_window: 10ms, want 100ms..1m0s`},
		{"defence delay too long", `defence_delay = "1m"`, `:16:1: timing.defence_delay: 1m0s, want 10ms..10s`},
	} {
		_, err := Load(write(t, withTiming(c.timing)), fakeIfaces)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

// TestExample: docs/examples/node.toml parses and validates (with its
// files replaced by a test's: a key and stream certificates), and says
// what the default profile says.
func TestExample(t *testing.T) {
	b, err := os.ReadFile("../../docs/examples/node.toml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatalf("docs/examples/node.toml: %v", err)
	}
	if f.Cluster.KeyFile != "/etc/wolfpack/cluster.key" || f.Streams.NodeCert != "/etc/wolfpack/node.pem" || len(f.Nodes) != 2 || len(f.Networks) != 2 {
		t.Fatalf("parsed %+v", f)
	}
	dir := t.TempDir()
	f.Cluster.KeyFile = filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(f.Cluster.KeyFile, []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, err := stream.NewCA(f.Cluster.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ca.Issue(nodes.ID(f.NodeID), 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Streams.CABundle, f.Streams.NodeCert, f.Streams.NodeKey = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node.pem"), filepath.Join(dir, "node.key")
	if err := ca.Save(f.Streams.CABundle, filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	if err := n.Save(f.Streams.NodeCert, f.Streams.NodeKey); err != nil {
		t.Fatal(err)
	}
	c, err := f.Validate(fakeIfaces)
	if err != nil {
		t.Fatalf("docs/examples/node.toml: %v", err)
	}
	if c.Timing != Profiles["default"] || !c.Streams() || c.StateDir != DefaultStateDir {
		t.Errorf("validated %+v", c)
	}
	// Its commented-out timing values are the default profile's.
	d := Profiles["default"]
	for _, line := range []string{
		fmt.Sprintf("# heartbeat_interval = %q", d.HeartbeatInterval), fmt.Sprintf("# heartbeat_threshold = %d ", d.HeartbeatThreshold),
		fmt.Sprintf("# quorum_check_interval = %q", d.QuorumCheckInterval), fmt.Sprintf("# join_window = %q", d.JoinWindow),
		fmt.Sprintf("# defence_delay = %q", d.DefenceDelay), fmt.Sprintf("# form_delay = %q", d.FormDelay),
	} {
		if !strings.Contains(string(b), line) {
			t.Errorf("docs/examples/node.toml lacks %q", line)
		}
	}
}

// TestParseError: Parse alone, without a file, gives LINE:COLUMN.
func TestParseError(t *testing.T) {
	_, err := Parse([]byte("node_id = 1\nnode_id = 2\n"))
	if want := "2:1: node_id: key node_id is already defined"; err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Errorf("err = %v, want %q", err, want)
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
// same file; an empty [timing] is left out and means the default profile.
func TestWriteFileRoundTrip(t *testing.T) {
	p := write(t, sample)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	f0, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	fast := Timing{Profile: "fast", HeartbeatThreshold: new(6), FormDelay: DurationOf(2 * time.Second)}
	for _, tm := range []Timing{f0.Timing, {}, fast} {
		f := *f0
		f.Timing = tm
		f.Resmon = Resmon{Path: "none"}
		out := filepath.Join(t.TempDir(), "out.toml")
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
			t.Errorf("round trip: got %+v, want %+v\n%s", *g, f, b)
		}
		if tm == (Timing{}) && strings.Contains(string(b), "[timing]") {
			t.Errorf("empty timing written out:\n%s", b)
		}
		c, err := Load(out, fakeIfaces)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := tm.Resolve()
		if c.Timing != want || want.HeartbeatInterval == 0 {
			t.Errorf("timing %+v: %+v, want %+v", tm, c.Timing, want)
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
	return strings.Replace(sample, "[[networks]]", fmt.Sprintf("[streams]\nca_bundle = %q\nnode_cert = %q\nnode_key = %q\n\n[[networks]]",
		filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node3.pem"), filepath.Join(dir, "node3.key")), 1)
}

// TestStreams: the stream files load into Credentials, streams.port
// defaults to cluster.port, and the listen and peer addresses are each
// node's first-network address.
func TestStreams(t *testing.T) {
	withStreams := streamFiles(t, t.TempDir())
	for _, tc := range []struct {
		name, cfg string
		streams   bool
		port      int
	}{
		{"none", sample, false, 7400},
		{"default port", withStreams, true, 7400},
		{"own port", strings.Replace(withStreams, "[streams]\n", "[streams]\nport = 7500\n", 1), true, 7500},
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

// TestStreamErrors: each bad stream setting is refused, naming the key
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
		{"streams.port 0 is the default, -1 is not", "[streams]\n", "[streams]\nport = -1\n", "streams.port: -1, want 1..65535"},
		{"streams.port too large", "[streams]\n", "[streams]\nport = 65536\n", "streams.port: 65536, want 1..65535"},
		{"only ca_bundle", "node_cert = " + q("node3.pem") + "\nnode_key = " + q("node3.key") + "\n", ``, "streams.node_cert: missing: streams.ca_bundle set"},
		{"no node_key", "node_key = " + q("node3.key") + "\n", ``, "streams.node_key: missing: streams.ca_bundle and streams.node_cert set"},
		{"missing bundle", q("ca.pem"), q("nonexistent.pem"), "streams.ca_bundle: stat " + p("nonexistent.pem") + ": no such file"},
		{"missing cert", q("node3.pem"), q("nonexistent.pem"), "streams.node_cert: stat " + p("nonexistent.pem") + ": no such file"},
		{"missing key", q("node3.key"), q("nonexistent.key"), "streams.node_key: stat " + p("nonexistent.key") + ": no such file"},
		{"another node's certificate and key", q("node3.pem") + "\nnode_key = " + q("node3.key"), q("node2.pem") + "\nnode_key = " + q("node2.key"), "node certificate " + p("node2.pem") + " is for node 2, not 3"},
		{"key of another certificate", q("node3.key"), q("node2.key"), "key " + p("node2.key") + " does not belong to the node certificate " + p("node3.pem")},
		{"another CA", q("ca.pem"), q("other.pem"), "node certificate " + p("node3.pem") + " is not signed by a CA in the CA bundle " + p("other.pem")},
		{"a key as the bundle", q("ca.pem"), q("ca.key"), "CA bundle " + p("ca.key") + ": PEM block 1 is \"PRIVATE KEY\""},
		{"wrong cluster", `name = "test"`, `name = "prod"`, "is the CA of cluster \"test\", not \"prod\""},
		{"cluster name unfit for a certificate", `name = "test"`, `name = "my cluster"`, "cluster.name: cluster name \"my cluster\": character ' '"},
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
	if _, err := Load(write(t, strings.Replace(sample, `name = "test"`, `name = "my cluster"`, 1)), fakeIfaces); err != nil {
		t.Errorf("a cluster name with a space and no streams: %v", err)
	}
}

// TestWriteFileRoundTripStreams: the stream keys survive WriteFile and
// Parse, and the written file loads the same credentials.
func TestWriteFileRoundTripStreams(t *testing.T) {
	cfg := strings.Replace(streamFiles(t, t.TempDir()), "[streams]\n", "[streams]\nport = 7500\n", 1)
	p := write(t, cfg)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Streams.CABundle == "" || f.Streams.NodeCert == "" || f.Streams.NodeKey == "" || f.Streams.Port != 7500 {
		t.Fatalf("parsed %+v", f)
	}
	out := filepath.Join(t.TempDir(), "out.toml")
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
	// A file without streams writes no [streams].
	f.Streams = Streams{}
	b, err = f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "streams") {
		t.Errorf("[streams] written for a file without streams:\n%s", b)
	}
}
