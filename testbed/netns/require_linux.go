package netns

import (
	"os"
	"os/exec"
	"testing"
)

// Require skips t unless namespaces can be made here: not -short, root,
// and ip (iproute2). who names the rig in the skip message.
func Require(t testing.TB, who string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s: skipped in -short mode", who)
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s: needs root (network namespaces); run as root, e.g. sudo -E go test -run TestIntegration ./...", who)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("%s: ip not found (apt-get install iproute2)", who)
	}
}
