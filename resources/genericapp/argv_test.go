package genericapp

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestDirectArgv(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "app")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	path := "/nonexistent:" + dir
	for _, tc := range []struct {
		command string
		want    []string // nil: through the shell
	}{
		{"app", []string{prog}},
		{"  app  -listen 0.0.0.0:7777 --name=x,y@z +1 50%  ", []string{prog, "-listen", "0.0.0.0:7777", "--name=x,y@z", "+1", "50%"}},
		{prog + " -v", []string{prog, "-v"}},
		{"missing -v", nil},       // not on the path: the shell says so
		{"data", nil},             // not executable
		{"./app", nil},            // relative to the directory: the shell's business
		{"A=1 app", nil},          // an assignment
		{"app $HOME", nil},        // an expansion
		{"app 'quoted arg'", nil}, // quotes
		{"app > /tmp/log", nil},   // a redirection
		{"app; app", nil},         // two commands
		{"exec app", nil},         // a builtin
		{"app *", nil},            // a glob
		{"app\nsecond", nil},      // two commands
		{"", nil},
	} {
		got, ok := directArgv(tc.command, path)
		if ok != (tc.want != nil) || !slices.Equal(got, tc.want) {
			t.Errorf("directArgv(%q) = %q, %v; want %q", tc.command, got, ok, tc.want)
		}
	}
}
