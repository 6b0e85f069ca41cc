package clusterapi

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// serve answers GET /v1/status on a unix socket with body and code.
func serve(t *testing.T, code int, body string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+StatusPath, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		w.Write([]byte(body))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestGetStatus(t *testing.T) {
	want := Status{Node: 2, Name: "node2", State: "up", Epoch: "4.2", Members: []int{1, 2}, QuorumOwner: true,
		Networks: map[string]NetworkStatus{"priv1": {Up: []int{1}}},
		Counters: Counters{HeartbeatAccepted: 7, HeartbeatDropped: map[string]uint64{"stale": 1}}}
	b, _ := json.Marshal(want)
	st, raw, err := GetStatus(context.Background(), serve(t, http.StatusOK, string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, want) || string(raw) != string(b) {
		t.Errorf("GetStatus = %+v, %s; want %+v", st, raw, want)
	}
}

func TestGetStatusErrors(t *testing.T) {
	ctx := context.Background()
	if _, _, err := GetStatus(ctx, serve(t, http.StatusServiceUnavailable, "daemon: not running\n")); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("503: err %v, want one carrying the body", err)
	}
	_, _, err := GetStatus(ctx, serve(t, http.StatusForbidden, `{"error": "the admin socket is root's: uid 1000 refused", "code": "forbidden"}`))
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusForbidden || se.ErrCode != CodeForbidden || se.Message != "the admin socket is root's: uid 1000 refused" {
		t.Errorf("403: err %#v, want a *StatusError with the body's code and message", err)
	}
	if _, _, err := GetStatus(ctx, serve(t, http.StatusOK, "{")); err == nil {
		t.Error("truncated JSON: no error")
	}
	_, _, err = GetStatus(ctx, filepath.Join(t.TempDir(), "none.sock"))
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("no socket: err %v, want a *net.OpError", err)
	}
}
