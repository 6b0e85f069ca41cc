package sim

import (
	"os"
	"testing"
)

func TestQuickBoot(t *testing.T) {
	for _, n := range []int{2, 3, 5, 16} {
		r := Run(Config{Seed: 1, Nodes: n})
		if len(r.Violations) > 0 || r.StableAfter < 0 {
			t.Fatalf("%d nodes: %v\n%s", n, r.Violations, r.State)
		}
		t.Logf("%d nodes stable after %s (%d events)", n, fmtDur(r.StableAfter), r.Events)
	}
	_ = os.Stdout
}
