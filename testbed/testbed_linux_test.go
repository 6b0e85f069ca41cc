package testbed

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
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
// TestIntegrationFaults boots one VM and checks that a frozen node does not
// answer until it is thawed, and that a killed node fails requests at once.
func TestIntegrationFaults(t *testing.T) {
	tb := New(t, Config{Nodes: 1, Logger: testLogger(t)})
	n := tb.Node(1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if err := n.Freeze(); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err := n.Run(short, "true")
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("frozen node answered: err %v", err)
	}
	if err := n.Thaw(); err != nil {
		t.Fatal(err)
	}
	if res, err := n.Run(ctx, "hostname"); err != nil || strings.TrimSpace(string(res.Stdout)) != "node1" {
		t.Errorf("thawed node: %q, %v", res.Stdout, err)
	}

	// Exit status, stderr and timeouts come back as they are.
	_, err = n.Run(ctx, "sh", "-c", "echo oops >&2; exit 3")
	var ee *ExitError
	if !errors.As(err, &ee) || ee.ExitCode != 3 || strings.TrimSpace(string(ee.Stderr)) != "oops" {
		t.Errorf("exit 3: got %v", err)
	}
	short, cancelShort = context.WithTimeout(ctx, 300*time.Millisecond)
	t0 := time.Now()
	_, err = n.Run(short, "sleep", "30")
	cancelShort()
	if err == nil || time.Since(t0) > 5*time.Second {
		t.Errorf("sleep 30 with a 300 ms deadline: %v after %v", err, time.Since(t0))
	}
	pid, err := n.Start(ctx, "sleep", "600")
	if err != nil || pid <= 1 {
		t.Errorf("start in background: pid %d, %v", pid, err)
	}

	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	if _, err := n.Run(ctx, "true"); !errors.Is(err, ErrNodeDown) {
		t.Errorf("killed node: err %v, want ErrNodeDown", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("killed node took %v to fail a request", d)
	}
}

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
