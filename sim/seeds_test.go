package sim

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// runSeeds runs Run over seeds [from, from+count) with nodes(seed) nodes
// on a worker pool, and fails the test with the replay command of every
// seed that broke an invariant.
func runSeeds(t *testing.T, from, count uint64, nodes func(seed uint64) int) (maxStable int64) {
	t.Helper()
	start := time.Now()
	seeds := make(chan uint64)
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	var writes, reads int
	var fm FMStats
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range seeds {
				k := nodes(seed)
				r := Run(Config{Seed: seed, Nodes: k, Faults: true, Clients: 3, Groups: 4})
				mu.Lock()
				maxStable = max(maxStable, r.StableAfter)
				writes += r.Writes
				reads += r.Reads
				fm.add(r.FM)
				if len(r.Violations) > 0 {
					failed = append(failed, fmt.Sprintf("seed %d, %d nodes: %s\n  replay: go run ./cmd/wolfpack-sim -seed %d -nodes %d -v",
						seed, k, r.Violations[0], seed, k))
				}
				mu.Unlock()
			}
		}()
	}
	// WOLFPACK_SIM_STOP_FIRST (make mutants) stops at the first failing seed.
	stopFirst := os.Getenv("WOLFPACK_SIM_STOP_FIRST") != ""
	for seed := from; seed < from+count; seed++ {
		mu.Lock()
		stop := stopFirst && len(failed) > 0
		mu.Unlock()
		if stop {
			break
		}
		seeds <- seed
	}
	close(seeds)
	wg.Wait()
	t.Logf("%d seeds in %v, slowest stabilisation %s after faults stopped; GUP clients: %d writes and %d reads acknowledged",
		count, time.Since(start).Round(time.Millisecond), fmtDur(maxStable), writes, reads)
	t.Logf("failover manager: %v", fm)
	// The workload must have run: some seeds stop the clients' nodes for
	// long, but a few operations a seed is the least.
	if writes < int(count)*5 || reads < int(count)*2 {
		t.Errorf("the GUP clients did little: %d writes and %d reads over %d seeds", writes, reads, count)
	}
	// So must the failover manager's: over many seeds, every kind of
	// move and restart the checks look at happened.
	if count >= 60 && (fm.Failovers == 0 || fm.LeaseWaits == 0 || fm.Pushes == 0 || fm.Failbacks == 0 ||
		fm.AdminMoves == 0 || fm.Restarts == 0 || fm.HardFailures == 0 || fm.FatalFailures == 0 || fm.Online < fm.Groups/2) {
		t.Errorf("the failover manager's workload did little: %v", fm)
	}
	if len(failed) > 0 {
		n := min(len(failed), 10)
		t.Fatalf("%d of %d seeds broke an invariant; first %d:\n%s", len(failed), count, n, fmt.Sprint(failed[:n]))
	}
	return maxStable
}
