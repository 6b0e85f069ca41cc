package testbed

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// tWriter sends log lines to t.Log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestIntegrationBoot(t *testing.T) {
	start := time.Now()
	tb := New(t, Config{Nodes: 2, Initiators: 2, PrivateNets: 1, Logger: testLogger(t)})
	t.Logf("testbed %s up in %v (image %v)", tb.Prefix(), time.Since(start).Round(time.Millisecond), tb.ImageTime.Round(time.Millisecond))
	for _, n := range tb.Nodes() {
		t.Logf("%s: boot %v, disks %+v", n.Name(), n.BootTime.Round(time.Millisecond), n.Disks())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Every nexus of every node reaches the same, empty, LUN of this testbed.
	var wg sync.WaitGroup
	for _, n := range tb.Nodes() {
		for m := 1; m <= 2; m++ {
			wg.Go(func() {
				disk := n.Disk(m)
				res, err := n.Run(ctx, "sg_persist", "-k", disk)
				if err != nil {
					t.Errorf("%s: sg_persist -k %s: %v", n.Name(), disk, err)
					return
				}
				out := string(res.Stdout)
				if !strings.Contains(out, "WOLFPACK") || !strings.Contains(out, "TESTBED-"+tb.ID()) {
					t.Errorf("%s nexus %d (%s): not this testbed's LUN:\n%s", n.Name(), m, disk, out)
				}
				if !strings.Contains(out, "there are NO registered reservation keys") {
					t.Errorf("%s nexus %d (%s): want no keys:\n%s", n.Name(), m, disk, out)
				}
			})
		}
	}
	wg.Wait()

	// A key registered through node1's nexus 1 is seen through node2's nexus 2.
	if _, err := tb.Node(1).Run(ctx, "sg_persist", "--out", "--register", "--param-sark=0x1234", tb.Node(1).Disk(1)); err != nil {
		t.Fatalf("register: %v", err)
	}
	res, err := runRetryUA(ctx, tb.Node(2), "sg_persist", "-k", tb.Node(2).Disk(2))
	if err != nil {
		t.Fatalf("read keys: %v", err)
	}
	if !strings.Contains(string(res.Stdout), "0x1234") {
		t.Errorf("node2 does not see node1's key:\n%s", res.Stdout)
	}

	// The public network: node1 reaches node2 and the client reaches node1.
	if _, err := tb.Node(1).Run(ctx, "ping", "-c", "1", "-W", "5", tb.Node(2).Addr(0).Addr().String()); err != nil {
		t.Errorf("node1 -> node2 public: %v", err)
	}
	if _, err := tb.Node(2).Run(ctx, "ping", "-c", "1", "-W", "5", tb.Node(1).Addr(1).Addr().String()); err != nil {
		t.Errorf("node2 -> node1 private: %v", err)
	}
	if _, err := tb.Client().Run(ctx, "busybox", "ping", "-c", "1", "-W", "5", tb.Node(1).Addr(0).Addr().String()); err != nil {
		t.Errorf("client -> node1: %v", err)
	}
}

// runRetryUA runs an sg3-utils command, again while it reports UNIT ATTENTION
// (exit status 6), which tgt raises after reservation changes.
func runRetryUA(ctx context.Context, n *Node, argv ...string) (Result, error) {
	for i := 0; ; i++ {
		res, err := n.Run(ctx, argv...)
		var ee *ExitError
		if i < 3 && errors.As(err, &ee) && ee.ExitCode == 6 {
			continue
		}
		return res, err
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}
