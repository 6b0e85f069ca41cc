package clustercli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
)

// healthyView is a two-node cluster with one group of three resources,
// everything up: the base of the tree's golden cases.
func healthyView() clusterView {
	st := clusterapi.Status{Node: 1, Name: "node1", Incarnation: 1700000000000000001, State: "up", Stage: "stabilized", Epoch: "3.7",
		Members: []int{1, 2}, Registered: true, QuorumOwner: true, UptimeMS: 3*3600*1000 + 5*60*1000,
		Networks: map[string]clusterapi.NetworkStatus{"priv1": {Up: []int{2}}, "priv2": {Up: []int{2}}},
		Cluster:  "prod", QuorumDevice: "iscsi://10.0.0.9/iqn.2024-01.org.example:quorum/1",
		Peers: []clusterapi.PeerStatus{{Node: 2, Name: "node2", Alive: true, Incarnation: 1700000000000000002, NetworksUp: []string{"priv1", "priv2"}}}}
	obj := func(kind, name string, props map[string]any) clusterapi.Object {
		return clusterapi.Object{Kind: kind, Name: name, Props: props}
	}
	return clusterView{Status: st,
		Nodes: []clusterapi.Object{obj("node", "node1", map[string]any{"id": 1.0, "paused": false}), obj("node", "node2", map[string]any{"id": 2.0})},
		Groups: []clusterapi.Object{obj("group", "web", map[string]any{"owner": "node1", "state": "online", "target_state": "online",
			"preferred_owners": []any{"node1", "node2"}})},
		Resources: []clusterapi.Object{
			obj("resource", "app", map[string]any{"group": "web", "type": "generic_application", "state": "online", "depends_on": []any{"ip", "name"}}),
			obj("resource", "ip", map[string]any{"group": "web", "type": "ip_address", "state": "online"}),
			obj("resource", "name", map[string]any{"group": "web", "type": "network_name", "state": "online", "depends_on": []any{"ip"}}),
		}}
}

func resource(v *clusterView, name string) *clusterapi.Object {
	for i := range v.Resources {
		if v.Resources[i].Name == name {
			return &v.Resources[i]
		}
	}
	panic(name)
}

// TestStatusTree renders the tree of fixed views and holds each to its
// golden text (testdata/status_*.golden; -update rewrites them).
func TestStatusTree(t *testing.T) {
	cases := map[string]func(v *clusterView){
		"healthy": func(*clusterView) {},
		"failed_resource": func(v *clusterView) {
			v.Groups[0].Props["state"] = "failed"
			app := resource(v, "app")
			app.Props["state"] = "failed"
			app.Props["reason"] = "exited with status 1 three times within 15 minutes"
		},
		"node_down": func(v *clusterView) {
			v.Status.Members = []int{1}
			v.Status.Peers[0].Alive, v.Status.Peers[0].NetworksUp = false, []string{}
			v.Status.Networks = map[string]clusterapi.NetworkStatus{"priv1": {Up: []int{}}, "priv2": {Up: []int{}}}
			v.Nodes[1].Props["paused"] = true
		},
		"network_down": func(v *clusterView) {
			v.Status.Networks["priv2"] = clusterapi.NetworkStatus{Up: []int{}}
			v.Status.Peers[0].NetworksUp = []string{"priv1"}
		},
		"evicted": func(v *clusterView) {
			v.Status.Members = []int{1}
			v.Status.Peers[0].Alive, v.Status.Peers[0].NetworksUp = false, []string{}
			v.Status.Networks = map[string]clusterapi.NetworkStatus{"priv1": {Up: []int{}}, "priv2": {Up: []int{}}}
			v.Nodes[1].Props["paused"], v.Nodes[1].Props["evicted"] = true, true
		},
		"draining": func(v *clusterView) {
			v.Nodes[0].Props["paused"], v.Nodes[0].Props["draining"] = true, true
			v.Groups[0].Props["moving_to"] = "node2"
		},
		"move": func(v *clusterView) {
			v.Groups[0].Props["moving_to"] = "node2"
			resource(v, "app").Props["state"] = "offline-pending"
		},
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			v := healthyView()
			edit(&v)
			var b bytes.Buffer
			if err := renderStatus(&b, v, false); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "status_"+name+".golden")
			if *update {
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (rewrite with -update)", err)
			}
			if b.String() != string(want) {
				t.Errorf("tree differs from %s:\n%s\nwant:\n%s", golden, b.String(), want)
			}
			// In colour the same problems are red and carry no marker.
			var c bytes.Buffer
			if err := renderStatus(&c, v, true); err != nil {
				t.Fatal(err)
			}
			problems := strings.Count(b.String(), "\n! ")
			if n := strings.Count(c.String(), "\x1b[1;31m"); n != problems || strings.Contains(c.String(), "\n! ") {
				t.Errorf("colour: %d red lines, want %d, and no markers:\n%s", n, problems, c.String())
			}
			if ok := name == "healthy" || name == "move" || name == "evicted" || name == "draining"; ok != strings.Contains(b.String(), "\nno problems") || ok != (problems == 0) {
				t.Errorf("summary line of %s:\n%s", name, b.String())
			}
		})
	}
}

// TestDependencyOrder: dependencies first, the ready one with the
// smallest name next, as the failover manager brings them online.
func TestDependencyOrder(t *testing.T) {
	var rs []clusterapi.Object
	for _, r := range [][2]string{{"a", "c"}, {"b", ""}, {"c", "b"}, {"d", ""}} {
		o := clusterapi.Object{Name: r[0], Props: map[string]any{}}
		if r[1] != "" {
			o.Props["depends_on"] = []any{r[1]}
		}
		rs = append(rs, o)
	}
	var got []string
	for _, o := range dependencyOrder(rs) {
		got = append(got, o.Name)
	}
	if strings.Join(got, " ") != "b c a d" {
		t.Errorf("order %v, want b c a d", got)
	}
}

// TestStatus runs the command against a server that answers GET /v1/status
// and the database's lists as clusterd does.
func TestStatus(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "node1.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	v := healthyView()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(v.Status) })
	lists := map[string][]clusterapi.Object{"node": v.Nodes, "group": v.Groups, "resource": v.Resources}
	mux.HandleFunc("GET /v1/db/{kind}", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(clusterapi.ListResult{Seq: 9, Objects: lists[r.PathValue("kind")]})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	defer srv.Close()

	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"status", "--socket", sock}, &out, &errb, nil); err != nil {
		t.Fatalf("status: %v %s", err, errb.String())
	}
	var want bytes.Buffer
	renderStatus(&want, v, false)
	if out.String() != want.String() {
		t.Errorf("status printed:\n%s\nwant:\n%s", out.String(), want.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"status", "--socket", sock, "--json"}, &out, &errb, nil); err != nil {
		t.Fatal(err)
	}
	var got clusterapi.Status
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got.Epoch != "3.7" || len(got.Peers) != 1 || got.Peers[0].Name != "node2" {
		t.Fatalf("--json: %v %+v", err, got)
	}
	// Without --socket it asks the default socket.
	if err := run(context.Background(), []string{"status", "--timeout", "1s"}, &out, &errb, nil); err != nil && !strings.Contains(err.Error(), defaultSocket) {
		t.Errorf("status without --socket: %v, want an error naming %s", err, defaultSocket)
	}
	if err := run(context.Background(), []string{"status", "--socket", sock, "--api", "https://x:1"}, &out, &errb, nil); err == nil {
		t.Error("status with --socket and --api succeeded")
	}
}
