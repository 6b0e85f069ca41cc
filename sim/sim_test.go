package sim

import (
	"os"
	"strconv"
	"testing"
)

// Reference: docs/design.md, "Tests: three rings" (ring 1) and "Invariants":
// thousands of seeds, every invariant after
// every step. 10,000 seeds over 2..16 nodes (WOLFPACK_SIM_COUNT=N runs
// seeds 1..N instead: make test's share); -short runs 300 (make mutants),
// 60 under -race (make unit).
func TestSimulatorSeeds(t *testing.T) {
	n := uint64(10000)
	if c := os.Getenv("WOLFPACK_SIM_COUNT"); c != "" {
		v, err := strconv.ParseUint(c, 10, 64)
		if err != nil || v == 0 {
			t.Fatalf("WOLFPACK_SIM_COUNT=%q: want a number of seeds, at least 1", c)
		}
		n = v
	}
	switch {
	case testing.Short() && raceEnabled:
		n = 60 // make unit: the race detector on the same code as make sim
	case testing.Short():
		n = 300 // make mutants' checker
	}
	runSeeds(t, 1, n, func(seed uint64) int { return 2 + int(seed%15) })
}

// The same at 64 nodes, fewer seeds.
func TestSimulatorSeeds64(t *testing.T) {
	n := uint64(20)
	if testing.Short() {
		n = 2
	}
	runSeeds(t, 1_000_000, n, func(uint64) int { return 64 })
}
