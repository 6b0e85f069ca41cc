package resmon_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/resmon"
	"github.com/wolfpack-ha/wolfpack/resources"
	"github.com/wolfpack-ha/wolfpack/testbed/loadgen"
)

// TestIntegrationBenchResmon (WOLFPACK_BENCH_RESMON=N[,SECONDS], make
// bench-resmon): resmon's CPU and memory with N generic applications
// online, polled at the default intervals (looks-alive 5 s, is-alive
// 60 s), measured over SECONDS (default 60) once every one is online.
func TestIntegrationBenchResmon(t *testing.T) {
	spec := os.Getenv("WOLFPACK_BENCH_RESMON")
	if spec == "" {
		t.Skip("set WOLFPACK_BENCH_RESMON=N[,SECONDS] (make bench-resmon)")
	}
	requireRoot(t)
	parts := strings.Split(spec, ",")
	n, err := strconv.Atoi(parts[0])
	if err != nil || n < 1 {
		t.Fatalf("WOLFPACK_BENCH_RESMON=%q: want N[,SECONDS]", spec)
	}
	secs := 60
	if len(parts) > 1 {
		if secs, err = strconv.Atoi(parts[1]); err != nil || secs < 1 {
			t.Fatalf("WOLFPACK_BENCH_RESMON=%q: want N[,SECONDS]", spec)
		}
	}
	bin := buildResmon(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Its log at warn: a thousand onlines at info are a thousand lines.
	p, err := resmon.Start(ctx, resmon.Config{Path: bin, Args: []string{"-state-dir", t.TempDir(), "-log-level", "warn"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		p.Stop(ctx)
	})
	renew := func() {
		if err := p.LeaseFor(time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	renew()
	start := time.Now()
	for i := range n {
		c := resources.Command{Op: resources.CmdOnline, Resource: fmt.Sprintf("app%04d", i), Type: "generic_application",
			Props:        resources.Props{"command": db.StringValue("exec sleep 100000")},
			LooksAliveMs: resources.DefaultLooksAliveMs, IsAliveMs: resources.DefaultIsAliveMs, PendingTimeoutMs: 60000}
		if err := p.Send(c); err != nil {
			t.Fatal(err)
		}
	}
	online := 0
	deadline := time.After(5 * time.Minute)
	for online < n {
		select {
		case s := <-p.Statuses():
			switch s.State {
			case resources.Online:
				online++
			case resources.Failed:
				t.Fatalf("%s failed: %s", s.Resource, s.Reason)
			}
		case <-deadline:
			t.Fatalf("%d of %d online after 5 minutes", online, n)
		}
	}
	t.Logf("resmon: %d resources online in %v", n, time.Since(start).Round(time.Millisecond))
	cpu0 := procCPU(p.PID)
	t0 := time.Now()
	end := time.After(time.Duration(secs) * time.Second)
	failed := 0
wait:
	for {
		select {
		case s := <-p.Statuses():
			if s.State != resources.Online {
				failed++
			}
		case <-end:
			break wait
		}
	}
	cpu1 := procCPU(p.PID)
	el := time.Since(t0)
	rss, hwm := loadgen.ProcMem(p.PID)
	if failed > 0 {
		t.Fatalf("%d state changes while idle", failed)
	}
	t.Logf("resmon_bench resources=%d seconds=%.0f cpu_percent=%.3f rss_mib=%.1f hwm_mib=%.1f",
		n, el.Seconds(), 100*cpu1.Seconds()/el.Seconds()-100*cpu0.Seconds()/el.Seconds(), rss, hwm)
}

// procCPU is a process's user+system time.
func procCPU(pid int) time.Duration {
	return time.Duration(loadgen.ProcTicks(pid)) * time.Second / 100 // USER_HZ
}
