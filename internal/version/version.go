// Package version says which build of Wolfpack a binary is: the version
// the package build stamps in (make deb: -ldflags -X), else what the Go
// toolchain recorded (the module version and the VCS revision).
package version

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Version is set at link time by the package build:
//
//	-ldflags '-X github.com/wolfpack-ha/wolfpack/internal/version.Version=0.0.0~git20250601.47c0918'
//
// Empty in a plain go build or go run.
var Version string

// String is the line --version prints: the program, the version, and the
// commit and Go release it was built from when the toolchain recorded them.
func String(prog string) string {
	bi, _ := debug.ReadBuildInfo()
	return format(prog, Version, bi)
}

func format(prog, stamped string, bi *debug.BuildInfo) string {
	v := stamped
	var extra []string
	if bi != nil {
		if v == "" {
			v = bi.Main.Version
		}
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			if modified == "true" {
				rev += "+dirty"
			}
			extra = append(extra, "commit "+rev)
		}
		extra = append(extra, bi.GoVersion)
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	if len(extra) == 0 {
		return fmt.Sprintf("%s %s", prog, v)
	}
	return fmt.Sprintf("%s %s (%s)", prog, v, strings.Join(extra, ", "))
}
