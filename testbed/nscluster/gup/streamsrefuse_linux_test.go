package gup

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// TestIntegrationStreamsRefuse: strangers dial node 1's stream port from
// node 2's namespace (the streams listen on the first private network)
// with openssl s_client, an implementation independent of the product:
// once without a certificate, once with a self-signed one. Node 1 refuses
// both, counts them by reason (GET /v1/status, gup.streams.refused) and
// logs them, and the cluster's own streams go on. Reference:
// docs/streams.md, "Identity".
func TestIntegrationStreamsRefuse(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed (scripts/deps.sh installs it)")
	}
	c := newCluster(t, nscluster.Config{Nodes: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	waitMembership(ctx, t, c, 0, []int{1, 2}, []int{1, 2})
	lockerOf(ctx, t, c, []int{1, 2})
	cl1, cl2 := clientOf(t, c, 1), clientOf(t, c, 2)
	mustCommit(ctx, t, cl2, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "create", Kind: "cluster", Name: "cluster"}}})

	// A self-signed certificate of the right shape (ECDSA P-256, the
	// cluster's URI) that no CA of the cluster signed.
	dir := t.TempDir()
	key, cert := filepath.Join(dir, "stranger.key"), filepath.Join(dir, "stranger.pem")
	if out, err := exec.CommandContext(ctx, openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-days", "1", "-subj", "/CN=stranger", "-addext", "subjectAltName=URI:wolfpack://"+nscluster.ClusterName+"/node/2",
		"-keyout", key, "-out", cert).CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v: %s", err, out)
	}

	target := fmt.Sprintf("%s:%d", nscluster.Addr(nscluster.Priv1, 1), c.Node(1).Config.Cluster.Port)
	if p := c.Node(1).Config.Streams.Port; p != 0 {
		target = fmt.Sprintf("%s:%d", nscluster.Addr(nscluster.Priv1, 1), p)
	}
	refused := func() map[string]uint64 {
		st, err := c.Node(1).Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.GUP.Streams.Refused
	}
	for _, tc := range []struct {
		name, reason string
		args         []string
	}{
		{"no certificate", "no certificate", nil},
		{"self-signed certificate", "wrong CA", []string{"-cert", cert, "-key", key}},
	} {
		before := refused()
		mark := c.Mark()
		argv := append([]string{"timeout", "10", openssl, "s_client", "-connect", target, "-tls1_3"}, tc.args...)
		// Standard input is empty: s_client ends once the handshake is
		// over (or refused).
		out, err := c.Node(2).Exec(ctx, argv...)
		t.Logf("%s: openssl s_client from node 2's namespace to %s: exit %v; %s", tc.name, target, err, lastLine(out))
		e, werr := c.WaitEvent(ctx, 1, msgRefused, nscluster.And(nscluster.After(mark), func(e nscluster.Event) bool {
			return e.String("reason") == tc.reason
		}))
		if werr != nil {
			t.Fatalf("%s: node 1 logged no refusal %q: %v\n%s", tc.name, tc.reason, werr, recent(c, mark))
		}
		after := refused()
		if after[tc.reason] != before[tc.reason]+1 {
			t.Errorf("%s: node 1 counts %q %d times, %d before: want one more (all counts: %v)", tc.name, tc.reason, after[tc.reason], before[tc.reason], after)
		}
		t.Logf("%s: node 1 refused it as %q (remote %s), count %d → %d", tc.name, tc.reason, e.String("remote"), before[tc.reason], after[tc.reason])
	}

	// The cluster's own streams still carry updates both ways.
	seq := mustCommit(ctx, t, cl2, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "set", Kind: "cluster", Name: "cluster", Props: map[string]any{"description": "after the strangers"}}}})
	o, err := cl1.Get(ctx, "cluster", "cluster", false)
	if err != nil || o.Object.Version != seq {
		t.Fatalf("node 1 reads the cluster object %+v, %v; want version %d", o, err, seq)
	}
	st, err := c.Node(1).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GUP.Streams.Refused) != 2 || st.GUP.Streams.BadRecords != 0 {
		t.Errorf("node 1's stream counters: %+v", st.GUP.Streams)
	}
}

func lastLine(b []byte) string {
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	return l[len(l)-1]
}
