package sim

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"hash"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// runSeeds runs Run over seeds [from, from+count) with nodes(seed) nodes
// on a worker pool, and fails the test with the replay command of every
// seed that broke an invariant.
//
// WOLFPACK_SIM_SEEDS=FROM:COUNT runs those seeds instead (to time or
// compare a fixed range). WOLFPACK_SIM_DIGEST=FILE writes one line a seed
// to FILE: everything a run's Result says of it (events, stabilisation,
// the clients' and the failover manager's counts, violations, the final
// state and the random stream's next draw), so that two builds can be
// shown to simulate every seed identically; WOLFPACK_SIM_DIGEST_TRACE=1
// adds a hash of the seed's whole event trace.
func runSeeds(t *testing.T, from, count uint64, nodes func(seed uint64) int) (maxStable int64) {
	t.Helper()
	if r := os.Getenv("WOLFPACK_SIM_SEEDS"); r != "" {
		f, c, ok := strings.Cut(r, ":")
		var err1, err2 error
		from, err1 = strconv.ParseUint(f, 10, 64)
		count, err2 = strconv.ParseUint(c, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			t.Fatalf("WOLFPACK_SIM_SEEDS=%q: want FROM:COUNT", r)
		}
	}
	digestFile := os.Getenv("WOLFPACK_SIM_DIGEST")
	traceDigest := os.Getenv("WOLFPACK_SIM_DIGEST_TRACE") != ""
	var digests []string
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
				cfg := Config{Seed: seed, Nodes: k, Faults: true, Clients: 3, Groups: 4}
				var th hash.Hash
				if digestFile != "" && traceDigest {
					th = sha256.New()
					cfg.Trace = th
				}
				r := Run(cfg)
				mu.Lock()
				if digestFile != "" {
					digests = append(digests, digest(r, th))
				}
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
	if digestFile != "" {
		slices.SortFunc(digests, func(a, b string) int {
			x, _, _ := strings.Cut(a, " ")
			y, _, _ := strings.Cut(b, " ")
			xi, _ := strconv.ParseUint(x, 10, 64)
			yi, _ := strconv.ParseUint(y, 10, 64)
			return cmp.Compare(xi, yi)
		})
		if err := os.WriteFile(digestFile, []byte(strings.Join(digests, "")), 0o644); err != nil {
			t.Fatalf("write the digest: %v", err)
		}
	}
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

// digest is one seed's line for WOLFPACK_SIM_DIGEST; trace, if not nil,
// hashed the seed's event trace.
func digest(r Result, trace hash.Hash) string {
	tr := "-"
	if trace != nil {
		tr = fmt.Sprintf("%x", trace.Sum(nil))
	}
	return fmt.Sprintf("%d nodes=%d events=%d stable=%d writes=%d reads=%d rng=%x state=%x trace=%s violations=%q faults=%x fm={%+v}\n",
		r.Seed, r.Nodes, r.Events, r.StableAfter, r.Writes, r.Reads, r.rngEnd, sha256.Sum256([]byte(r.State)), tr,
		r.Violations, sha256.Sum256([]byte(strings.Join(r.Faults, "\n"))), fmFields(r.FM))
}

// fmFields prints FMStats' fields by name.
type fmFields FMStats
