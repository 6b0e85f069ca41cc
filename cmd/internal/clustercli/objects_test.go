package clustercli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// dbServer serves the /v1/db endpoints on a unix socket from a real
// database (gup/db), so that the transactions the commands build meet the
// database's own checks; it records the transactions it was sent.
type dbServer struct {
	sock string
	mu   sync.Mutex
	d    *db.DB
	txs  []clusterapi.Tx
}

func newDBServer(t *testing.T) *dbServer {
	t.Helper()
	s := &dbServer{sock: filepath.Join(t.TempDir(), "clusterd.sock"), d: db.New()}
	l, err := net.Listen("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/db", s.commit)
	mux.HandleFunc("GET /v1/db/{kind}", func(w http.ResponseWriter, r *http.Request) {
		k, _ := db.ParseKind(r.PathValue("kind"))
		s.mu.Lock()
		defer s.mu.Unlock()
		res := clusterapi.ListResult{Seq: s.d.Seq(), Objects: []clusterapi.Object{}}
		for _, o := range s.d.List(k) {
			res.Objects = append(res.Objects, clusterapi.FromObject(o))
		}
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("GET /v1/db/{kind}/{name}", func(w http.ResponseWriter, r *http.Request) {
		k, _ := db.ParseKind(r.PathValue("kind"))
		s.mu.Lock()
		defer s.mu.Unlock()
		o, ok := s.d.Get(k, r.PathValue("name"))
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(clusterapi.ErrorBody{Error: "no " + r.PathValue("kind") + " " + r.PathValue("name"), Code: clusterapi.CodeNotFound, Seq: s.d.Seq()})
			return
		}
		json.NewEncoder(w).Encode(clusterapi.ObjectResult{Seq: s.d.Seq(), Object: clusterapi.FromObject(o)})
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		f, _, err := clusterapi.ParseEventFilter(r.URL.Query())
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(clusterapi.ErrorBody{Error: err.Error(), Code: clusterapi.CodeBadRequest})
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		json.NewEncoder(w).Encode(clusterapi.EventsResult{Seq: s.d.Seq(), Events: clusterapi.EventLog(s.d, f)})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *dbServer) commit(w http.ResponseWriter, r *http.Request) {
	var t clusterapi.Tx
	if err := json.NewDecoder(r.Body).Decode(&t); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.txs = append(s.txs, t)
	err := s.apply(t)
	if err != nil {
		w.WriteHeader(http.StatusConflict)
		json.NewEncoder(w).Encode(clusterapi.ErrorBody{Error: err.Error(), Code: clusterapi.CodeTxFailed, Seq: s.d.Seq()})
		return
	}
	json.NewEncoder(w).Encode(clusterapi.TxResult{Seq: s.d.Seq()})
}

func (s *dbServer) apply(t clusterapi.Tx) error {
	dt, err := t.DBTx()
	if err != nil {
		return err
	}
	b, err := dt.MarshalBinary()
	if err != nil {
		return err
	}
	return s.d.Apply(s.d.Seq()+1, b)
}

func (s *dbServer) get(t *testing.T, k db.Kind, name string) db.Object {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.d.Get(k, name)
	if !ok {
		t.Fatalf("no %s %s", k, name)
	}
	return o
}

func (s *dbServer) lastTx() clusterapi.Tx {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txs[len(s.txs)-1]
}

// cli runs the cluster command against s and returns its stdout and error.
func (s *dbServer) cli(args ...string) (string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), append(args, "--socket", s.sock), &out, &errb, nil)
	return out.String(), err
}

func (s *dbServer) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.cli(args...)
	if err != nil {
		t.Fatalf("cluster %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func exitCode(err error) int {
	var ue usageError
	var ec interface{ ExitCode() int }
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	case errors.As(err, &ec):
		return ec.ExitCode()
	}
	return 1
}

func seedNodes(t *testing.T, s *dbServer) {
	t.Helper()
	err := s.apply(clusterapi.Tx{Ops: []clusterapi.Op{
		{Op: "create", Kind: "node", Name: "n1", Props: map[string]any{"id": 1}},
		{Op: "create", Kind: "node", Name: "n2", Props: map[string]any{"id": 2}},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGroupCommands(t *testing.T) {
	s := newDBServer(t)
	seedNodes(t, s)
	s.mustCLI(t, "group", "create", "web", "--preferred", "n2,n1", "--failback", "window", "--window", "22-6", "failover_threshold=4", "description=the web")
	g := s.get(t, db.KindGroup, "web")
	for k, want := range map[string]db.Value{
		"preferred_owners": db.ListValue("n2", "n1"), "failback": db.StringValue("window"),
		"failback_window_start": db.IntValue(22), "failback_window_end": db.IntValue(6),
		"failover_threshold": db.IntValue(4), "description": db.StringValue("the web"),
	} {
		if !g.Props[k].Equal(want) {
			t.Errorf("web.%s = %v, want %v", k, g.Props[k], want)
		}
	}

	// Bad values are refused before anything is sent, or by the database;
	// either way the group is unchanged.
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"group", "set", "web", "failover_threshold=many"}, 2, `failover_threshold: "many" is not an integer`},
		{[]string{"group", "set", "web", "failover_threshold=5000"}, 3, "failover_threshold"},
		{[]string{"group", "set", "web", "failback"}, 2, `"failback" is not KEY=VALUE`},
		{[]string{"group", "set", "nosuch", "failback=never"}, 4, "nosuch"},
		{[]string{"group", "move", "web"}, 2, "the target NODE is required"},
		{[]string{"group", "move", "web", "n1", "--to", "n2"}, 2, "two targets"},
		{[]string{"group", "move", "nosuch", "n1"}, 4, "nosuch"},
		{[]string{"group", "move", "web", "--to", "n9"}, 3, "n9"},
		{[]string{"group", "create", "web"}, 3, "web"},
		{[]string{"group", "create", "db", "--window", "1-2"}, 2, "--window needs --failback window"},
		{[]string{"group", "frobnicate", "web"}, 2, `unknown action "frobnicate" (want create, set, delete, move, online, offline, list, show)`},
		{[]string{"group", "show", "nosuch"}, 4, "nosuch"},
	} {
		_, err := s.cli(c.args...)
		if exitCode(err) != c.code || err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("cluster %s: %v (exit %d), want exit %d naming %q", strings.Join(c.args, " "), err, exitCode(err), c.code, c.msg)
		}
	}
	if after := s.get(t, db.KindGroup, "web"); after.Version != g.Version {
		t.Errorf("refused commands changed web: version %d -> %d", g.Version, after.Version)
	}

	s.mustCLI(t, "group", "move", "web", "--to", "n1", "--no-wait")
	s.mustCLI(t, "group", "offline", "web")
	g = s.get(t, db.KindGroup, "web")
	if g.Props["moving_to"].Str != "n1" || g.Props["target_state"].Str != "offline" {
		t.Errorf("after move and offline: %v", g.Props)
	}

	out := s.mustCLI(t, "group", "list")
	if !strings.Contains(out, "web") || !strings.Contains(out, "n2,n1") {
		t.Errorf("group list:\n%s", out)
	}
	var objs []clusterapi.Object
	if err := json.Unmarshal([]byte(s.mustCLI(t, "group", "list", "--json")), &objs); err != nil || len(objs) != 1 || objs[0].Name != "web" {
		t.Errorf("group list --json: %v %+v", err, objs)
	}
	var obj clusterapi.Object
	if err := json.Unmarshal([]byte(s.mustCLI(t, "group", "show", "web", "--json")), &obj); err != nil || obj.Props["target_state"] != "offline" {
		t.Errorf("group show --json: %v %+v", err, obj)
	}
	if out := s.mustCLI(t, "group", "show", "web"); !strings.Contains(out, "failback_window_start  22") {
		t.Errorf("group show:\n%s", out)
	}
	s.mustCLI(t, "group", "delete", "web")
	if _, err := s.cli("group", "show", "web"); exitCode(err) != 4 {
		t.Errorf("show after delete: %v", err)
	}
}

func TestResourceCommands(t *testing.T) {
	s := newDBServer(t)
	seedNodes(t, s)
	s.mustCLI(t, "group", "create", "web")
	s.mustCLI(t, "resource", "create", "ip", "--group", "web", "--type", "ip_address", "address=10.1.0.5", "prefix_len=24", "probe=true", "possible_owners=n1,n2")
	ip := s.get(t, db.KindResource, "ip")
	for k, want := range map[string]db.Value{"prefix_len": db.IntValue(24), "probe": db.BoolValue(true), "possible_owners": db.ListValue("n1", "n2")} {
		if !ip.Props[k].Equal(want) {
			t.Errorf("ip.%s = %v, want %v", k, ip.Props[k], want)
		}
	}
	s.mustCLI(t, "resource", "create", "app", "--group", "web", "--type", "generic_application", "--depends-on", "ip", "command=sleep 1000")
	if _, err := s.cli("resource", "create", "bad", "--group", "web", "--type", "generic_application", "command=true", "colour=blue"); exitCode(err) != 3 || !strings.Contains(err.Error(), `"colour"`) {
		t.Errorf("unknown property: %v", err)
	}
	if _, err := s.cli("resource", "create", "bad", "--type", "generic_application"); exitCode(err) != 2 {
		t.Errorf("no --group: %v", err)
	}
	s.mustCLI(t, "resource", "set", "app", "stop_timeout_ms=500", "restart_threshold=1")
	if _, err := s.cli("resource", "set", "app", "stop_timeout_ms=soon"); exitCode(err) != 2 {
		t.Errorf("bad int: %v", err)
	}
	s.mustCLI(t, "resource", "offline", "app")
	app := s.get(t, db.KindResource, "app")
	if app.Props["stop_timeout_ms"].Int != 500 || app.Props["restart_threshold"].Int != 1 || app.Props["target_state"].Str != "offline" {
		t.Errorf("app: %v", app.Props)
	}

	// Dependencies: a read-modify-write at the version read.
	s.mustCLI(t, "dependency", "remove", "app", "ip")
	if tx := s.lastTx(); tx.Ops[0].IfVersion != app.Version {
		t.Errorf("dependency remove sent %+v, want if_version %d", tx.Ops[0], app.Version)
	}
	if _, ok := s.get(t, db.KindResource, "app").Props["depends_on"]; ok {
		t.Error("depends_on still set after removing the last dependency")
	}
	s.mustCLI(t, "dependency", "add", "app", "ip")
	if got := s.get(t, db.KindResource, "app").Props["depends_on"]; !got.Equal(db.ListValue("ip")) {
		t.Errorf("depends_on = %v", got)
	}
	if _, err := s.cli("dependency", "add", "app", "ip"); err == nil || !strings.Contains(err.Error(), "already depends on ip") {
		t.Errorf("second add: %v", err)
	}
	if _, err := s.cli("dependency", "add", "ip", "app"); exitCode(err) != 3 {
		t.Errorf("a cycle: %v", err)
	}

	out := s.mustCLI(t, "resource", "list", "--group", "web")
	if !strings.Contains(out, "ip_address") || !strings.Contains(out, "generic_application") {
		t.Errorf("resource list:\n%s", out)
	}
	var objs []clusterapi.Object
	if err := json.Unmarshal([]byte(s.mustCLI(t, "resource", "list", "--json", "--group", "other")), &objs); err != nil || len(objs) != 0 {
		t.Errorf("resource list --group other: %v %+v", err, objs)
	}
	if _, err := s.cli("group", "delete", "web"); exitCode(err) != 3 || !strings.Contains(err.Error(), "app") {
		t.Errorf("delete of a group with resources: %v", err)
	}
	s.mustCLI(t, "resource", "delete", "app")
	if _, err := s.cli("resource", "show", "app"); exitCode(err) != 4 {
		t.Errorf("show after delete: %v", err)
	}
}

const testAgentMeta = `<?xml version="1.0"?>
<resource-agent name="Echo">
<version>1.1</version>
<shortdesc lang="en">Echo agent</shortdesc>
<parameters>
<parameter name="msg" required="1"><content type="string"/></parameter>
<parameter name="count"><content type="integer"/></parameter>
<parameter name="loud"><content type="boolean"/></parameter>
</parameters>
<actions>
<action name="start" timeout="20s"/>
<action name="stop" timeout="20s"/>
<action name="monitor" timeout="20s" interval="10s"/>
<action name="meta-data" timeout="5s"/>
</actions>
</resource-agent>
`

func TestResourceCreateOCF(t *testing.T) {
	s := newDBServer(t)
	s.mustCLI(t, "group", "create", "web")
	root := t.TempDir()
	dir := filepath.Join(root, "resource.d", "test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	agent := "#!/bin/sh\n[ \"$1\" = meta-data ] && cat <<'EOF'\n" + testAgentMeta + "EOF\nexit 0\n"
	if err := os.WriteFile(filepath.Join(dir, "Echo"), []byte(agent), 0o755); err != nil {
		t.Fatal(err)
	}
	s.mustCLI(t, "resource", "create", "e1", "--group", "web", "--type", "ocf:test:Echo", "--ocf-root", root, "msg=hi", "count=3", "param.loud=yes", "restart_threshold=2")
	rt := s.get(t, db.KindResourceType, "test.Echo")
	if rt.Props["agent"].Str != "ocf" || !slices.Contains(rt.Props["ocf_parameters"].List, "count integer") {
		t.Errorf("resourcetype test.Echo: %v", rt.Props)
	}
	e1 := s.get(t, db.KindResource, "e1")
	for k, want := range map[string]db.Value{"type": db.StringValue("test.Echo"), "param.msg": db.StringValue("hi"),
		"param.count": db.IntValue(3), "param.loud": db.BoolValue(true), "restart_threshold": db.IntValue(2)} {
		if !e1.Props[k].Equal(want) {
			t.Errorf("e1.%s = %v, want %v", k, e1.Props[k], want)
		}
	}
	// The second resource reads the type from the database (no agent
	// needed: the root is empty now).
	s.mustCLI(t, "resource", "create", "e2", "--group", "web", "--type", "ocf:test:Echo", "--ocf-root", t.TempDir(), "msg=ho")
	s.mustCLI(t, "resource", "set", "e2", "count=7")
	if got := s.get(t, db.KindResource, "e2").Props["param.count"]; !got.Equal(db.IntValue(7)) {
		t.Errorf("e2 param.count = %v", got)
	}
	if _, err := s.cli("resource", "set", "e2", "colour=blue"); exitCode(err) != 3 || !strings.Contains(err.Error(), "param.colour") {
		t.Errorf("unknown parameter: %v", err)
	}
	if _, err := s.cli("resource", "create", "e3", "--group", "web", "--type", "ocf:test:Missing", "--ocf-root", root, "msg=x"); exitCode(err) != 1 || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("missing agent: %v", err)
	}
}

func TestNodeCommands(t *testing.T) {
	s := newDBServer(t)
	seedNodes(t, s)
	s.mustCLI(t, "node", "pause", "n2")
	if !s.get(t, db.KindNode, "n2").Props["paused"].Equal(db.BoolValue(true)) {
		t.Error("n2 not paused")
	}
	out := s.mustCLI(t, "node", "list")
	if !strings.Contains(out, "n2    2   true") {
		t.Errorf("node list:\n%s", out)
	}
	s.mustCLI(t, "node", "resume", "n2")
	if !s.get(t, db.KindNode, "n2").Props["paused"].Equal(db.BoolValue(false)) {
		t.Error("n2 still paused")
	}
	if _, err := s.cli("node", "pause", "n9"); exitCode(err) != 4 {
		t.Errorf("pause of an unknown node: %v", err)
	}
	// drain --no-wait writes paused and draining; resume clears both.
	s.mustCLI(t, "node", "drain", "n2", "--no-wait")
	if p := s.get(t, db.KindNode, "n2").Props; !p["paused"].Equal(db.BoolValue(true)) || !p["draining"].Equal(db.BoolValue(true)) {
		t.Errorf("after drain: %v", p)
	}
	s.mustCLI(t, "node", "resume", "n2")
	if p := s.get(t, db.KindNode, "n2").Props; !p["paused"].Equal(db.BoolValue(false)) || p["draining"].Type != 0 {
		t.Errorf("after resume: %v", p)
	}
	// add clears an eviction (evict itself needs a cluster: the failover
	// tests in testbed/nscluster/failover run it).
	if err := s.apply(clusterapi.Tx{Ops: []clusterapi.Op{{Op: "set", Kind: "node", Name: "n2",
		Props: map[string]any{"evicted": true, "draining": true, "paused": true}}}}); err != nil {
		t.Fatal(err)
	}
	s.mustCLI(t, "node", "add", "n2")
	if p := s.get(t, db.KindNode, "n2").Props; !p["paused"].Equal(db.BoolValue(false)) || p["draining"].Type != 0 || p["evicted"].Type != 0 {
		t.Errorf("after add: %v", p)
	}
	if _, err := s.cli("node", "add", "n9"); exitCode(err) != 4 {
		t.Errorf("add of an unknown node: %v (exit %d), want 4", err, exitCode(err))
	}
}

// TestHelpAndUsage: every level prints its usage on -h and exits 0; an
// unknown action or a missing argument is a usage error (exit 2).
func TestHelpAndUsage(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"status", "-h"}, {"status", "--help"}, {"group", "-h"}, {"group", "create", "-h"},
		{"resource", "--help"}, {"resource", "create", "--help"}, {"dependency", "-h"}, {"node", "list", "-h"}, {"completion", "-h"},
		{"quorum", "format", "-h"}, {"disk", "show", "--help"}, {"ca", "init", "-h"}, {"leave", "-h"}, {"node", "drain", "-h"}, {"group", "move", "-h"}} {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, &out, &errb, nil)
		if err != nil || !strings.HasPrefix(out.String(), "usage: cluster") || errb.Len() != 0 {
			t.Errorf("cluster %s: %v, stdout %q, stderr %q", strings.Join(args, " "), err, out.String(), errb.String())
		}
	}
	for _, args := range [][]string{{"group"}, {"group", "show"}, {"group", "list", "extra"}, {"node", "pause"}, {"bogus"}, {"completion", "zsh"}, {"group", "list", "--nope"}} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, &out, &errb, nil); exitCode(err) != 2 {
			t.Errorf("cluster %s: %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}

func TestCompletionBash(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"completion", "bash"}, &out, &out, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"complete -F _cluster cluster", "group) actions=\"create set delete move online offline list show\"", "dependency"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("completion lacks %q", s)
		}
	}
}

// TestTimeoutFlag: a --timeout that is not a duration (a bare number) is a
// usage error that says what a duration looks like, before anything is
// sent; a duration is taken.
func TestTimeoutFlag(t *testing.T) {
	s := newDBServer(t)
	for _, bad := range []string{"10", "ten", "5 s"} {
		_, err := s.cli("group", "list", "--timeout", bad)
		if exitCode(err) != 2 || err == nil || !strings.Contains(err.Error(), `invalid value "`+bad+`" for flag -timeout: not a duration: want a number with a unit, such as 10s`) {
			t.Errorf("--timeout %q: %v (exit %d), want exit 2 saying what a duration is", bad, err, exitCode(err))
		}
	}
	if len(s.txs) != 0 {
		t.Errorf("sent %d transactions", len(s.txs))
	}
	s.mustCLI(t, "group", "list", "--timeout", "2s")
}
