package version

import (
	"runtime/debug"
	"testing"
)

func TestFormat(t *testing.T) {
	vcs := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/wolfpack-ha/wolfpack", Version: "v0.0.0-20250601120000-47c0918aaaaa"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "47c0918aaaaa"},
			{Key: "vcs.modified", Value: "false"},
		},
	}
	dirty := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Version: "(devel)"},
		Settings:  []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}},
	}
	for _, c := range []struct {
		name, stamped string
		bi            *debug.BuildInfo
		want          string
	}{
		{"stamped wins", "0.0.0~git20250601.47c0918", vcs, "clusterd 0.0.0~git20250601.47c0918 (commit 47c0918aaaaa, go1.26.8)"},
		{"module version", "", vcs, "clusterd v0.0.0-20250601120000-47c0918aaaaa (commit 47c0918aaaaa, go1.26.8)"},
		{"devel, dirty tree", "", dirty, "clusterd devel (commit abc+dirty, go1.26.8)"},
		{"no build info", "", nil, "clusterd devel"},
	} {
		if got := format("clusterd", c.stamped, c.bi); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
