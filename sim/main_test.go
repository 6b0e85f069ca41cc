package sim

import (
	"os"
	"runtime/debug"
	"testing"
)

// TestMain runs the collector less often than the default (GOGC=400,
// unless GOGC is set): a simulation's live heap is a few megabytes and
// it allocates fast, so at the default the collector ran every few
// megabytes and took about a quarter of the simulator's CPU time. The
// heap peaks at about 100 MB instead of 25.
func TestMain(m *testing.M) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	os.Exit(m.Run())
}
