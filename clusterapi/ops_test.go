package clusterapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// moveOutcome reads a move's outcome from what the failover manager
// wrote: each case is a group as the database shows it during or after a
// move of web from node1 to node2.
func TestMoveOutcome(t *testing.T) {
	for _, c := range []struct {
		name   string
		props  map[string]any
		res    []ResourceState
		done   bool
		reason string // "" : no error
	}{
		{"under way", map[string]any{"owner": "node1", "moving_to": "node2", "state": "online"}, nil, false, ""},
		{"handed over", map[string]any{"owner": "node2", "state": "pending"}, nil, false, ""},
		{"online", map[string]any{"owner": "node2", "state": "online"}, nil, true, ""},
		{"offline by target_state", map[string]any{"owner": "node2", "state": "offline"}, nil, true, ""},
		{"cancelled with a reason", map[string]any{"owner": "node1", "state": "online", "move_error": "move to node2 cancelled: node node2 is paused"},
			nil, false, "move to node2 cancelled: node node2 is paused"},
		{"cancelled", map[string]any{"owner": "node1", "state": "online"}, nil, false, "the move was cancelled"},
		{"replaced", map[string]any{"owner": "node1", "moving_to": "node3"}, nil, false, "another move, to node3, replaced it"},
		{"failed there", map[string]any{"owner": "node2", "state": "failed"},
			[]ResourceState{{Name: "app", State: "failed", Reason: "exit status 1"}, {Name: "ip", State: "online"}},
			false, "the group failed on node2: app: exit status 1"},
		{"went elsewhere", map[string]any{"owner": "node3", "state": "pending"}, nil, false, "the group went to node3 instead (pending)"},
	} {
		g := Object{Kind: "group", Name: "web", Props: c.props}
		p := Progress{Group: "web", Owner: str(g, "owner"), MovingTo: str(g, "moving_to"), State: str(g, "state"), Resources: c.res}
		done, err := moveOutcome("move web to node2", g, p, "node1", "node2")
		var oe *OpError
		switch {
		case done != c.done:
			t.Errorf("%s: done %v, want %v", c.name, done, c.done)
		case c.reason == "" && err != nil:
			t.Errorf("%s: %v, want no error", c.name, err)
		case c.reason != "" && (!errors.As(err, &oe) || oe.Reason != c.reason):
			t.Errorf("%s: %v, want an OpError %q", c.name, err, c.reason)
		case err != nil && !strings.HasPrefix(err.Error(), "move web to node2 failed: "):
			t.Errorf("%s: %q does not name the operation", c.name, err)
		}
	}
}

// TestFollowStartRefusedWatchEnded: the watch runs start, then its stream
// ends at once (a daemon stopping, or one that ends the stream): follow
// reports start's refusal, never "the watch ended", however the two
// goroutines are scheduled.
func TestFollowStartRefusedWatchEnded(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DBPath+"/watch", func(w http.ResponseWriter, _ *http.Request) {})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c := NewClient(sock)
	refused := errors.New("no group nosuch")
	// On one P the watch's goroutine sends start's answer, reads the empty
	// stream's end and returns without yielding: follow then finds both
	// answers waiting.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for i := range 200 {
		err := c.follow(context.Background(), "move nosuch to n1", func() error { return refused },
			func() (bool, error) { return true, nil })
		if !errors.Is(err, refused) {
			t.Fatalf("round %d: follow = %v, want start's error %v", i, err, refused)
		}
	}
}
