package daemon

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
)

// TestAdminLog: GET /v1/log reads the recovery log off the node's LUN
// while the node runs: the checkpoint the new locker took, and a committed
// transaction's operations with its origin.
func TestAdminLog(t *testing.T) {
	c := newTestCluster(t, 1, 2)
	c.adminDir = t.TempDir()
	c.start(1)
	c.waitMembers(5*time.Second, []int{1}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := clusterapi.NewClient(filepath.Join(c.adminDir, "node1.sock"))
	defer cl.Close()
	res, err := cl.Commit(ctx, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "create", Kind: "group", Name: "logged", Props: map[string]any{"failback": "never"}}}})
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := cl.Log(ctx)
	if err != nil {
		t.Fatal(err)
	}
	update := slices.IndexFunc(l.Records, func(r clusterapi.LogRecord) bool {
		return r.Type == "update" && r.GUPSeq <= res.Seq && r.Node == 1 && slices.ContainsFunc(r.Changes, func(c string) bool {
			return strings.HasSuffix(c, ` create group logged: failback="never"`)
		})
	})
	if l.CheckpointSeq == 0 || update < 0 || l.LastLSN < l.Records[update].LSN {
		t.Fatalf("log: no checkpoint or no update (at %d):\n%+v", update, l)
	}
}
