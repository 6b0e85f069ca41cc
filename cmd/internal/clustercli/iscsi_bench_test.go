package clustercli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed"
)

var benchRuns = flag.Int("iscsi-bench-runs", 3, "TestIntegrationISCSIBenchCompare: runs per initiator")
var benchCount = flag.Int("iscsi-bench-count", 1000, "TestIntegrationISCSIBenchCompare: commands per operation and run")

// TestIntegrationISCSIBenchCompare measures 4 KiB WRITE(16) FUA and
// PERSISTENT RESERVE IN (READ KEYS) latency and IOPS on one tgt LUN through
// two initiators with the same code (the hidden `cluster disk bench`
// action): this module's iSCSI initiator from the host over loopback, and
// QEMU's (libiscsi) from a TCG guest over SG_IO (/dev/sgN, scsi-block).
// The runs alternate; the log gives each run and the medians
// (BENCHMARKS.md).
func TestIntegrationISCSIBenchCompare(t *testing.T) {
	testbed.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tb := testbed.New(t, testbed.Config{Nodes: 1, Initiators: 1, Binaries: []string{buildCLI(t)}})
	n := tb.Node(1)
	args := []string{"disk", "bench", "--json", "--timeout", "5m", "--count", strconv.Itoa(*benchCount)}
	parse := func(who string, out []byte) diskBenchResult {
		var r diskBenchResult
		if err := json.Unmarshal(out, &r); err != nil || r.Write4KFUA.Count == 0 {
			t.Fatalf("%s: bench: %v\n%s", who, err, out)
		}
		return r
	}
	var host, guest []diskBenchResult
	for run := 1; run <= *benchRuns; run++ {
		h := parse("host", runInProcess(ctx, openDevice, append(append([]string(nil), args...), "--initiator-name", "iqn.2024-01.dev.wolfpack:bench-host"), tb.LUNURL()))
		g := parse("guest", guestCLI(ctx, t, n, args, n.Disk(1)))
		host, guest = append(host, h), append(guest, g)
		t.Logf("run %d: host  %s", run, benchLine(h))
		t.Logf("run %d: guest %s", run, benchLine(g))
	}
	t.Logf("median of %d runs, %d commands each:", *benchRuns, *benchCount)
	t.Logf("  scsi/iscsi (host, loopback)   %s", benchLine(medianBench(host)))
	t.Logf("  QEMU libiscsi (guest, SG_IO)  %s", benchLine(medianBench(guest)))
}

func benchLine(r diskBenchResult) string {
	f := func(o diskBenchOp) string {
		return fmt.Sprintf("p50 %.0f us p99 %.0f us %.0f IOPS", o.P50us, o.P99us, o.IOPS)
	}
	return "WRITE(16) 4K FUA: " + f(r.Write4KFUA) + " | PRIN READ KEYS: " + f(r.PRINReadKeys)
}

// medianBench takes each figure's median across runs.
func medianBench(rs []diskBenchResult) diskBenchResult {
	med := func(get func(diskBenchResult) float64) float64 {
		var v []float64
		for _, r := range rs {
			v = append(v, get(r))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	op := func(get func(diskBenchResult) diskBenchOp) diskBenchOp {
		return diskBenchOp{
			Count:  get(rs[0]).Count,
			P50us:  med(func(r diskBenchResult) float64 { return get(r).P50us }),
			P99us:  med(func(r diskBenchResult) float64 { return get(r).P99us }),
			MeanUs: med(func(r diskBenchResult) float64 { return get(r).MeanUs }),
			IOPS:   med(func(r diskBenchResult) float64 { return get(r).IOPS }),
		}
	}
	return diskBenchResult{
		Write4KFUA:   op(func(r diskBenchResult) diskBenchOp { return r.Write4KFUA }),
		PRINReadKeys: op(func(r diskBenchResult) diskBenchOp { return r.PRINReadKeys }),
	}
}
