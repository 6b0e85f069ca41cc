package sim

import "testing"

func TestProf(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		Run(Config{Seed: seed, Nodes: 2 + int(seed%15), Faults: true, Clients: 3, Groups: 4})
	}
}
