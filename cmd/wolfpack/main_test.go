package main

import (
	"slices"
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		name string
		args []string
		err  string
	}{
		{argv: []string{"/init"}, name: "init", args: []string{"/init"}},
		{argv: []string{"/bin/clusterd", "-config", "x"}, name: "clusterd", args: []string{"/bin/clusterd", "-config", "x"}},
		{argv: []string{"resmon"}, name: "resmon", args: []string{"resmon"}},
		{argv: []string{"/usr/bin/cluster", "status"}, name: "cluster", args: []string{"/usr/bin/cluster", "status"}},
		{argv: []string{"/bin/wolfpack", "wolfpack-init"}, name: "wolfpack-init", args: []string{"wolfpack-init"}},
		{argv: []string{"wolfpack", "cluster", "--version"}, name: "cluster", args: []string{"cluster", "--version"}},
		{argv: []string{"/bin/wolfpack"}, err: "no command: run wolfpack COMMAND"},
		{argv: []string{"wolfpack", "ls"}, err: `no command "ls": the commands are cluster, clusterd, halt, init, poweroff, reboot, resmon, wolfpack-init`},
		{argv: []string{"/bin/poweroff", "-f"}, name: "poweroff", args: []string{"/bin/poweroff", "-f"}},
		{argv: []string{"/bin/sh"}, err: `no command "sh"`},
		{argv: nil, err: "no program name"},
	} {
		name, args, err := lookup(tc.argv)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("lookup(%q): err %v, want one containing %q", tc.argv, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name || !slices.Equal(args, tc.args) {
			t.Errorf("lookup(%q) = %q, %q, %v; want %q, %q", tc.argv, name, args, err, tc.name, tc.args)
		}
	}
}
