package matrix

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/loadgen"
	"github.com/wolfpack-ha/wolfpack/testbed/probe"
)

// TestIntegrationBenchVM (WOLFPACK_BENCH_VM=N, N ≥ 1; make bench-vm) is
// the node crash and the planned move of the namespace rig's
// TestIntegrationBenchFailover in the QEMU guests: N times the owner's VM
// is killed (its power pulled) and the client's outage measured, the VM
// powered on again and rejoined; then N planned moves, alternating
// between the nodes. It reports each run and the median and p95 (nearest
// rank) of each.
func TestIntegrationBenchVM(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("WOLFPACK_BENCH_VM"))
	if runs < 1 {
		t.Skip("set WOLFPACK_BENCH_VM=N (make bench-vm) to run the VM failover benchmark")
	}
	c := get(t, 2)
	ctx, cancel := context.WithTimeout(t.Context(), time.Duration(runs)*4*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if t.Failed() {
			c.mu.Lock()
			c.broken = true
			c.mu.Unlock()
			t.Logf("logs:\n%s", c.logs(context.Background()))
		}
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// outage runs fault with a fresh prober and returns the longest
	// silence once the group is online on to and answers from there.
	outage := func(to int, fault func() error) time.Duration {
		t.Helper()
		p, err := probe.Start(c.tb.Client().Netns(), netip.AddrPortFrom(vip, echoPort), probeEvery)
		must(err)
		defer p.Close()
		if _, err := p.WaitReply(ctx, time.Time{}, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		t0 := time.Now()
		must(fault())
		_, err = c.waitOnline(ctx, to, 120*time.Second)
		must(err)
		if _, err := p.WaitReply(ctx, time.Now(), func(r probe.Reply) bool { return r.ID() == fmt.Sprintf("node%d", to) }); err != nil {
			t.Fatal(err)
		}
		o, err := p.Outage(t0, time.Time{})
		must(err)
		return o.Gap
	}
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	var crash, move []int64
	for k := 1; k <= runs; k++ {
		owner, err := c.waitOnline(ctx, 0, 60*time.Second)
		must(err)
		to := owner%2 + 1
		o := outage(to, c.tb.Node(owner).Kill)
		crash = append(crash, ms(o))
		t.Logf("crash run=%d node%d killed: outage_ms=%d", k, owner, ms(o))
		must(c.reboot(ctx, owner))
		must(c.waitMembers(ctx, 120*time.Second))
	}
	for k := 1; k <= runs; k++ {
		owner, err := c.waitOnline(ctx, 0, 60*time.Second)
		must(err)
		to := owner%2 + 1
		o := outage(to, func() error {
			_, err := c.cli(ctx, to, "group", "move", group, fmt.Sprintf("node%d", to), "--timeout", "60s")
			return err
		})
		move = append(move, ms(o))
		t.Logf("move run=%d node%d -> node%d: outage_ms=%d", k, owner, to, ms(o))
	}
	for _, m := range []struct {
		name string
		xs   []int64
	}{{"node crash", crash}, {"planned move", move}} {
		t.Logf("%s in the VMs, %d runs: outage_ms median=%d p95=%d min=%d max=%d", m.name, len(m.xs),
			loadgen.Median(m.xs), loadgen.Percentile(m.xs, 95), loadgen.Percentile(m.xs, 0), loadgen.Percentile(m.xs, 100))
	}
}
