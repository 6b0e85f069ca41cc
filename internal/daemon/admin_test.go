package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
)

// childSocketEnv makes the test binary an admin API client of the socket
// it names (TestMain), for TestIntegrationAdminSocketNonRoot.
const childSocketEnv = "WOLFPACK_TEST_ADMIN_CLIENT"

func TestMain(m *testing.M) {
	if sock := os.Getenv(childSocketEnv); sock != "" {
		adminChild(sock)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// adminChild tries a read and a write on sock and prints what it got.
func adminChild(sock string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := clusterapi.GetStatus(ctx, sock)
	fmt.Printf("uid %d: status: %v\n", os.Getuid(), err)
	cl := clusterapi.NewClient(sock)
	defer cl.Close()
	_, err = cl.Commit(ctx, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "create", Kind: "group", Name: "intruder"}}})
	fmt.Printf("uid %d: commit: %v\n", os.Getuid(), err)
}

// examplePath is a request path of a route's pattern.
func examplePath(pattern string) string {
	return strings.NewReplacer("{kind}", "group", "{name}", "web").Replace(pattern)
}

func decodeError(t *testing.T, b []byte) clusterapi.ErrorBody {
	t.Helper()
	var eb clusterapi.ErrorBody
	if err := json.Unmarshal(b, &eb); err != nil || eb.Error == "" || eb.Code == "" {
		t.Fatalf("not the API's error shape {error, code}: %s (%v)", b, err)
	}
	return eb
}

// Every endpoint, under a fake identity: a read-only caller's write is
// refused naming its role and never reaches the endpoint; everything else
// reaches it (here a daemon that is not running: 503). A caller the
// listener refuses gets 403 with the listener's reason everywhere.
func TestAdminRoles(t *testing.T) {
	d := &Daemon{stopped: make(chan struct{}), calls: make(chan func()), status: make(chan chan Status)}
	close(d.stopped)
	serve := func(identify Identify, method, path string) (int, clusterapi.ErrorBody) {
		var body io.Reader
		switch {
		case method == http.MethodPost && path == clusterapi.LeavePath:
			body = strings.NewReader(`{}`)
		case method == http.MethodPost:
			body = strings.NewReader(`{"ops": [{"op": "create", "kind": "group", "name": "web"}]}`)
		}
		rec := httptest.NewRecorder()
		d.adminHandler(identify).ServeHTTP(rec, httptest.NewRequest(method, path, body))
		return rec.Code, decodeError(t, rec.Body.Bytes())
	}
	for _, role := range []Role{RoleReadOnly, RoleOperator} {
		identify := func(*http.Request) (Role, error) { return role, nil }
		for _, rt := range adminRoutes {
			code, eb := serve(identify, rt.method, examplePath(rt.path))
			if rt.write && role == RoleReadOnly {
				if code != http.StatusForbidden || eb.Code != clusterapi.CodeForbidden || !strings.Contains(eb.Error, "read-only") ||
					!strings.Contains(eb.Error, "operator") {
					t.Errorf("%s %s as %v: %d %+v, want 403 naming the roles", rt.method, rt.path, role, code, eb)
				}
				continue
			}
			if code != http.StatusServiceUnavailable || eb.Code != clusterapi.CodeNotServing {
				t.Errorf("%s %s as %v: %d %+v, want the endpoint's 503 (not running)", rt.method, rt.path, role, code, eb)
			}
		}
	}
	refuse := func(*http.Request) (Role, error) {
		return RoleNone, errors.New("the admin socket is root's: uid 1000 refused")
	}
	for _, rt := range append(adminRoutes, route{method: http.MethodGet, path: "/v1/nothing"}) {
		code, eb := serve(refuse, rt.method, examplePath(rt.path))
		if code != http.StatusForbidden || eb.Code != clusterapi.CodeForbidden || eb.Error != "the admin socket is root's: uid 1000 refused" {
			t.Errorf("%s %s refused: %d %+v, want 403 with the reason", rt.method, rt.path, code, eb)
		}
	}
}

// unixHTTP is an HTTP client of a unix socket.
func unixHTTP(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
}

// TestAdminAPI: a running daemon's admin socket: mode 0600; the errors'
// shape and codes (bad JSON, an oversized body, an unknown endpoint or
// kind or object, a wrong method, a failed transaction) with nothing
// changed by them; GET /v1/metrics in the exposition format with the key
// series and sane values.
func TestAdminAPI(t *testing.T) {
	c := newTestCluster(t, 1, 2)
	c.adminDir = t.TempDir()
	c.start(1)
	c.waitMembers(5*time.Second, []int{1}, 1)
	sock := filepath.Join(c.adminDir, "node1.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, mode %v; want 0600", err, fi.Mode())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := clusterapi.NewClient(sock)
	defer cl.Close()
	setup := clusterapi.Tx{Ops: []clusterapi.Op{
		{Op: "create", Kind: "group", Name: "web"},
		{Op: "create", Kind: "resource", Name: "ip", Props: map[string]any{"group": "web", "type": "ip_address", "address": "10.1.0.5"}},
	}}
	if _, err := cl.Commit(ctx, setup); err != nil {
		t.Fatalf("setup: %v", err)
	}
	before, err := cl.List(ctx, "group", false)
	if err != nil {
		t.Fatal(err)
	}

	hc := unixHTTP(sock)
	defer hc.CloseIdleConnections()
	do := func(method, path string, body []byte) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, "http://clusterd"+path, bytes.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for _, tc := range []struct {
		method, path string
		body         []byte
		code         int
		errCode      string
		says         []string
		allow        string
	}{
		{"POST", "/v1/db", []byte(`{"ops": [`), 400, clusterapi.CodeBadRequest, []string{"bad JSON", "unexpected EOF"}, ""},
		{"POST", "/v1/db", []byte(`{"ops": [], "extra": 1}`), 400, clusterapi.CodeBadRequest, []string{"bad JSON", `unknown field "extra"`}, ""},
		{"POST", "/v1/db", []byte(`{"ops": []} {}`), 400, clusterapi.CodeBadRequest, []string{"bad JSON"}, ""},
		{"POST", "/v1/db", nil, 400, clusterapi.CodeBadRequest, []string{"empty"}, ""},
		{"POST", "/v1/db", []byte(`{"ops": [{"op": "rename", "kind": "group", "name": "web"}]}`), 400, clusterapi.CodeBadRequest, []string{`"rename"`}, ""},
		{"POST", "/v1/db", append([]byte(`{"ops": [{"op": "set", "kind": "group", "name": "web", "props": {"x": "`),
			bytes.Repeat([]byte("a"), maxTxBody)...), 413, clusterapi.CodeTooLarge, []string{fmt.Sprint(maxTxBody), "bytes"}, ""},
		{"POST", "/v1/db", []byte(`{"ops": [{"op": "create", "kind": "group", "name": "web"}]}`), 409, clusterapi.CodeTxFailed, []string{"web"}, ""},
		// Refused by the database's checks before it is proposed, as one
		// refused when applied: 409 (the CLI's exit 3), not 400.
		{"POST", "/v1/db", []byte(`{"ops": [{"op": "set", "kind": "group", "name": "web", "props": {"failover_threshold": 5000}}]}`), 409, clusterapi.CodeTxFailed, []string{`group "web"`, "failover_threshold", "5000"}, ""},
		{"GET", "/v1/nothing", nil, 404, clusterapi.CodeNotFound, []string{"/v1/nothing"}, ""},
		{"GET", "/status", nil, 404, clusterapi.CodeNotFound, []string{"/status", "/v1/"}, ""},
		{"GET", "/v1/db/spaceship", nil, 404, clusterapi.CodeNotFound, []string{"spaceship"}, ""},
		{"GET", "/v1/db/group/none", nil, 404, clusterapi.CodeNotFound, []string{`"none"`}, ""},
		{"DELETE", "/v1/status", nil, 405, clusterapi.CodeMethodNotAllowed, []string{"DELETE", "GET"}, "GET"},
		{"PUT", "/v1/db", []byte(`{}`), 405, clusterapi.CodeMethodNotAllowed, []string{"PUT"}, "GET, POST"},
		{"POST", "/v1/metrics", nil, 405, clusterapi.CodeMethodNotAllowed, []string{"POST"}, "GET"},
	} {
		resp, b := do(tc.method, tc.path, tc.body)
		eb := decodeError(t, b)
		name := fmt.Sprintf("%s %s (%d bytes)", tc.method, tc.path, len(tc.body))
		if resp.StatusCode != tc.code || eb.Code != tc.errCode || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %s %s %+v, want %d %s", name, resp.Status, resp.Header.Get("Content-Type"), eb, tc.code, tc.errCode)
		}
		for _, s := range tc.says {
			if !strings.Contains(eb.Error, s) {
				t.Errorf("%s: %q does not say %q", name, eb.Error, s)
			}
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s: Allow %q, want %q", name, got, tc.allow)
		}
		if (tc.code == 409 || tc.path == "/v1/db/group/none") && eb.Seq == 0 {
			t.Errorf("%s: no seq in %s", name, b)
		}
	}
	after, err := cl.List(ctx, "group", false)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before.Objects) != fmt.Sprint(after.Objects) {
		t.Fatalf("the bad requests changed the groups: %+v -> %+v", before.Objects, after.Objects)
	}

	resp, b := do("GET", "/v1/metrics", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("metrics: %s %s: %s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	series, err := parseProm(string(b))
	if err != nil {
		t.Fatalf("metrics: %v\n%s", err, b)
	}
	for k, ok := range map[string]func(float64) bool{
		`wolfpack_node_state{state="up"}`:                                    func(v float64) bool { return v == 1 },
		`wolfpack_node_state{state="joining"}`:                               func(v float64) bool { return v == 0 },
		`wolfpack_membership_members`:                                        func(v float64) bool { return v == 1 },
		`wolfpack_membership_epoch`:                                          func(v float64) bool { return v >= 1 },
		`wolfpack_quorum_owner`:                                              func(v float64) bool { return v == 1 },
		`wolfpack_regroups_total`:                                            func(v float64) bool { return v == 0 },
		`wolfpack_uptime_seconds`:                                            func(v float64) bool { return v > 0.5 && v < 60 },
		`wolfpack_heartbeats_dropped_total{reason="bad MAC"}`:                func(v float64) bool { return v == 0 },
		`wolfpack_network_peers_up{network="priv2"}`:                         func(v float64) bool { return v == 0 },
		`wolfpack_network_down_total{network="priv1"}`:                       func(v float64) bool { return v == 0 },
		`wolfpack_network_send_errors_total{network="priv2"}`:                func(v float64) bool { return v == 0 },
		`wolfpack_gup_applied_seq`:                                           func(v float64) bool { return v >= 2 },
		`wolfpack_gup_locker`:                                                func(v float64) bool { return v == 1 },
		`wolfpack_gup_commit_seconds_count`:                                  func(v float64) bool { return v == 2 }, // setup and the 409
		`wolfpack_gup_commit_seconds_sum`:                                    func(v float64) bool { return v > 0 && v < 10 },
		`wolfpack_group_state{group="web",owner="unknown",state="unknown"}`:  func(v float64) bool { return v == 1 },
		`wolfpack_resource_state{group="web",resource="ip",state="unknown"}`: func(v float64) bool { return v == 1 },
		`wolfpack_failover_seconds_count`:                                    func(v float64) bool { return v == 0 },
		`wolfpack_failover_seconds_bucket{le="+Inf"}`:                        func(v float64) bool { return v == 0 },
	} {
		if v, present := series[k]; !present || !ok(v) {
			t.Errorf("metrics: %s = %v (present: %v)", k, v, present)
		}
	}
}

// TestIntegrationAdminSocketNonRoot: a user other than root cannot use the
// admin socket. At mode 0600 the kernel refuses the connection; with the
// mode opened by mistake, clusterd refuses the peer (SO_PEERCRED) with
// 403, reads and writes alike, and the database is unchanged.
func TestIntegrationAdminSocketNonRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a daemon and a client process as uid 65534")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a client as uid 65534")
	}
	// A directory uid 65534 may enter, holding the socket and a copy of
	// this test binary (go test's own directory is not open to it).
	dir, err := os.MkdirTemp("", "wolfpack-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "daemon.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	c := newTestCluster(t, 1, 1)
	c.adminDir = dir
	c.start(1)
	c.waitMembers(5*time.Second, []int{1}, 1)
	sock := filepath.Join(dir, "node1.sock")
	child := func() string {
		t.Helper()
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), childSocketEnv+"="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as uid 65534: %v\n%s", err, out)
		}
		return string(out)
	}
	out := child()
	if strings.Count(out, "permission denied") != 2 {
		t.Errorf("socket mode 0600: want the connections refused by the kernel, got:\n%s", out)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	out = child()
	if strings.Count(out, "403 Forbidden (forbidden): the admin socket is root's: uid 65534 refused") != 2 {
		t.Errorf("socket mode 0666: want both requests refused with 403 naming uid 65534, got:\n%s", out)
	}
	t.Logf("uid 65534:\n%s", out)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := clusterapi.NewClient(sock)
	defer cl.Close()
	if _, err := cl.Get(ctx, "group", "intruder", false); err == nil {
		t.Fatal("uid 65534's write was committed")
	} else if se := new(clusterapi.StatusError); !errors.As(err, &se) || se.Code != 404 {
		t.Fatalf("root reads the database: %v", err)
	}
}
