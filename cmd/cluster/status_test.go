package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
)

func TestStatus(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "node3.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	want := clusterapi.Status{Node: 3, Name: "node3", State: "up", Stage: "stabilized", Epoch: "4.2", Members: []int{1, 2, 3},
		QuorumOwner: true, Networks: map[string]clusterapi.NetworkStatus{"priv1": {Up: []int{1, 2}}, "priv2": {Up: []int{2}}}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(want)
	})}
	go srv.Serve(l)
	defer srv.Close()

	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"status", "--socket", sock}, &out, &errb, nil); err != nil {
		t.Fatalf("status: %v %s", err, errb.String())
	}
	for _, s := range []string{"node3", "members", "1,2,3", "network priv1", "hears 1,2", "network priv2", "quorum owner"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"status", "--socket", sock, "--json"}, &out, &errb, nil); err != nil {
		t.Fatal(err)
	}
	var got clusterapi.Status
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got.Epoch != "4.2" {
		t.Fatalf("--json: %v %+v", err, got)
	}
	if err := run(context.Background(), []string{"status"}, &out, &errb, nil); err == nil {
		t.Fatal("status without --socket succeeded")
	}
}
