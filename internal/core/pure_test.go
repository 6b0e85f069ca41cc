package core

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCoresArePure: the protocol cores and the node core import nothing
// that does I/O, reads a clock or starts a process (docs/design.md, "The
// node core and its drivers"): no sockets, files, time, SCSI or the
// drivers' packages, no locks (a core is driven by one goroutine). log/slog
// is allowed: a logger is passed in.
func TestCoresArePure(t *testing.T) {
	forbidden := []string{"net", "os", "os/exec", "syscall", "time", "math/rand", "math/rand/v2", "crypto/rand", "sync",
		"golang.org/x/sys", "github.com/wolfpack-ha/wolfpack/scsi", "github.com/wolfpack-ha/wolfpack/quorumdisk",
		"github.com/wolfpack-ha/wolfpack/internal/udp", "github.com/wolfpack-ha/wolfpack/internal/quorumio",
		"github.com/wolfpack-ha/wolfpack/internal/daemon", "github.com/wolfpack-ha/wolfpack/sim",
		"github.com/wolfpack-ha/wolfpack/internal/stream", "github.com/wolfpack-ha/wolfpack/internal/dbfile",
		"github.com/wolfpack-ha/wolfpack/internal/resmon", "github.com/wolfpack-ha/wolfpack/net"}
	for _, dir := range []string{".", "../nodes", "../../regroup", "../../heartbeat", "../../gup", "../../gup/db", "../../resources"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if path == "net/netip" { // values and parsing only
					continue
				}
				for _, bad := range forbidden {
					if path == bad || strings.HasPrefix(path, bad+"/") {
						t.Errorf("%s imports %s", f, path)
					}
				}
			}
		}
	}
}
