package clustercli

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationStatusTree runs `cluster status` and `cluster log`
// against a real two-node cluster (clusterd, resmon and the failover
// manager in network namespaces): the tree names the cluster, both nodes
// up, the group online on its owner with its resource, and no problem;
// then, with node 2's second private network cut, the network down,
// marked and summed up. The log shows the group's creation.
func TestIntegrationStatusTree(t *testing.T) {
	c := nscluster.Start(t, nscluster.Config{Nodes: 2, PrivateNets: 2, Timing: nscluster.Timing{Profile: "fast"}})
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	all := nscluster.IDs(2)
	c.WaitMembership(ctx, t, 0, all, all)
	sock := c.Node(1).Socket
	start := time.Now()
	cl := clusterapi.NewClient(sock)
	defer cl.Close()
	for {
		_, err := cl.Commit(ctx, clusterapi.Tx{Ops: []clusterapi.Op{
			{Op: "create", Kind: "group", Name: "web", Props: map[string]any{"preferred_owners": []string{"node1", "node2"}}},
			{Op: "create", Kind: "resource", Name: "app", Props: map[string]any{"group": "web", "type": "generic_application",
				"command": "exec sleep 1000", "looks_alive_ms": 200, "stop_timeout_ms": 2000}},
		}})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("create the group: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // a member still joining answers 503
	}
	// status runs the binary until the tree holds every line of want.
	status := func(what string, want ...string) string {
		t.Helper()
		var out []byte
		for {
			cmd := exec.CommandContext(ctx, c.Config().CLI, "status", "--socket", sock)
			cmd.Env = append(os.Environ(), "NO_COLOR=1")
			var err error
			out, err = cmd.Output()
			missing := ""
			for _, w := range want {
				if !strings.Contains(string(out), w) {
					missing = w
					break
				}
			}
			if err == nil && missing == "" {
				return string(out)
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: status lacks %q: %v\n%s\n%s", what, missing, err, out, c.Recent(0))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	out := status("healthy",
		"\n    node1 (id 1): up, quorum owner, incarnation ",
		"\n    node2 (id 2): up, incarnation ",
		"heard on priv1, priv2\n",
		"\n    priv1: up\n    priv2: up\n",
		"\n    web: online on node1\n      app: online, generic_application\n",
		"\nno problems\n")
	t.Logf("healthy tree after %v:\n%s", time.Since(start).Round(time.Millisecond), out)

	if err := c.Cut(2, nscluster.Private(2)); err != nil {
		t.Fatal(err)
	}
	out = status("priv2 cut at node 2",
		"\n!   priv2: down (node1 hears no other member on it)\n",
		"heard on priv1\n",
		"\n1 problem: network priv2 down\n")
	t.Logf("with priv2 cut:\n%s", out)

	lg, err := exec.CommandContext(ctx, c.Config().CLI, "log", "--socket", sock).Output()
	if err != nil || !strings.Contains(string(lg), "create group web: preferred_owners=") || !strings.Contains(string(lg), "create resource app:") {
		t.Errorf("cluster log: %v\n%s", err, lg)
	}
	t.Logf("status and log: %v", time.Since(start).Round(time.Millisecond))
}
