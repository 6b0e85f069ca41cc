package clustercli

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationObjectCommands drives a real two-node cluster (clusterd,
// resmon and the failover manager in network namespaces) with the cluster
// binary alone: create a group and an application, see it online on its
// preferred owner, move it, pause a node, take the group offline, and the
// exit statuses of a refused transaction (3) and a missing object (4).
func TestIntegrationObjectCommands(t *testing.T) {
	c := nscluster.Start(t, nscluster.Config{Nodes: 2, Timing: nscluster.Timing{Profile: "fast"}})
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	all := nscluster.IDs(2)
	c.WaitMembership(ctx, t, 0, all, all)
	cli := c.Config().CLI
	sock := c.Node(1).Socket
	// try runs the binary through node 1's socket, retrying what did not
	// reach the cluster (exit 1: a node still joining answers 503).
	try := func(args ...string) (string, int) {
		t.Helper()
		for {
			cmd := exec.CommandContext(ctx, cli, append(args, "--socket", sock)...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != 1 || ctx.Err() != nil {
				return string(out) + stderr.String(), code
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	cluster := func(want int, args ...string) string {
		t.Helper()
		out, code := try(args...)
		if code != want {
			t.Fatalf("cluster %s: exit %d, want %d: %s\n%s", strings.Join(args, " "), code, want, out, c.Recent(0))
		}
		return out
	}
	// wait polls show --json until ok accepts the object (not there yet:
	// exit 4).
	wait := func(kind, name, what string, ok func(clusterapi.Object) bool) {
		t.Helper()
		for {
			var o clusterapi.Object
			out, code := try(kind, "show", name, "--json")
			err := json.Unmarshal([]byte(out), &o)
			if code == 0 && err == nil && ok(o) {
				return
			}
			if (code != 0 && code != exitNotFound) || ctx.Err() != nil {
				t.Fatalf("%s %s: %s: exit %d: %s %+v\n%s", kind, name, what, code, out, o.Props, c.Recent(0))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The failover manager creates the node objects.
	for _, n := range []string{"node1", "node2"} {
		wait("node", n, "created", func(clusterapi.Object) bool { return true })
	}
	owned := func(owner, state string) func(clusterapi.Object) bool {
		return func(o clusterapi.Object) bool { return o.Props["owner"] == owner && o.Props["state"] == state }
	}

	start := time.Now()
	cluster(0, "group", "create", "web", "--preferred", "node1,node2")
	cluster(0, "resource", "create", "app", "--group", "web", "--type", "generic_application",
		"command=exec sleep 1000", "looks_alive_ms=200", "stop_timeout_ms=2000")
	wait("group", "web", "online on node1", owned("node1", "online"))
	cluster(0, "group", "move", "web", "--to", "node2")
	wait("group", "web", "online on node2", owned("node2", "online"))
	wait("resource", "app", "online on node2", func(o clusterapi.Object) bool {
		return o.Props["state"] == "online" && o.Props["state_node"] == "node2"
	})

	cluster(0, "node", "pause", "node1")
	var nodes []clusterapi.Object
	if err := json.Unmarshal([]byte(cluster(0, "node", "list", "--json")), &nodes); err != nil || len(nodes) != 2 || nodes[0].Props["paused"] != true {
		t.Errorf("node list --json after pausing node1: %v %+v", err, nodes)
	}
	cluster(0, "group", "offline", "web")
	wait("group", "web", "offline", func(o clusterapi.Object) bool { return o.Props["state"] == "offline" })

	if out := cluster(3, "resource", "create", "bad", "--group", "web", "--type", "generic_application", "command=true", "colour=blue"); !strings.Contains(out, `"colour"`) {
		t.Errorf("an unknown property: %s", out)
	}
	cluster(4, "group", "show", "nosuch")
	cluster(0, "node", "resume", "node1")
	t.Logf("from group create to offline: %v", time.Since(start).Round(time.Millisecond))
}
