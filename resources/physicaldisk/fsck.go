package physicaldisk

import (
	"fmt"

	"github.com/wolfpack-ha/wolfpack/resources"
)

// e2fsck's (and fsck(8)'s) exit status bits.
const (
	fsckCorrected   = 1
	fsckReboot      = 2
	fsckUncorrected = 4
	fsckOperational = 8
	fsckUsage       = 16
	fsckCancelled   = 32
	fsckLibrary     = 128
)

// fsckError maps an fsck exit status to an error of the right class, nil
// when the filesystem may be mounted (0, errors corrected, or "reboot",
// which concerns a mounted root only).
//
//   - Errors left uncorrected (4): preen stopped at a problem that needs a
//     human. The problem is on the shared disk, and every node runs the
//     same check on it, so moving the group only repeats the failure on
//     each node in turn: fatal, the resource stays failed until an
//     administrator repairs the filesystem.
//   - Usage error (16): the command line this type built is wrong on
//     every node: fatal.
//   - Operational error (8) or a shared library error (128): fsck could
//     not run here (the device could not be opened, the program is
//     broken): hard, another node may do better.
//   - Cancelled (32), killed, or anything else: soft.
func fsckError(prog string, status int) error {
	switch {
	case status&^(fsckCorrected|fsckReboot) == 0:
		return nil
	case status&fsckUncorrected != 0:
		return resources.Fatal(fmt.Errorf("%s: exit status %d: filesystem errors left uncorrected; repair the filesystem by hand", prog, status))
	case status&fsckUsage != 0:
		return resources.Fatal(fmt.Errorf("%s: exit status %d: usage error", prog, status))
	case status&(fsckOperational|fsckLibrary) != 0:
		return resources.Hard(fmt.Errorf("%s: exit status %d: operational error on this node", prog, status))
	}
	return fmt.Errorf("%s: exit status %d", prog, status)
}
