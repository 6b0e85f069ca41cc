package genericapp

import (
	"os"
	"path/filepath"
	"strings"
)

// directArgv splits command into the program and its arguments when the
// shell would do nothing but split it: every word made of letters,
// digits and _ . / : , @ + - = % only, the first with no '=' (the shell
// reads NAME=value first as an assignment), and the program found on
// path (a PATH value) or given as an absolute path to an executable
// file. Then the application is executed directly, with no shell
// between it and resmon's signals, and without a shell's start-up: a
// Go shell such as the appliance's takes hundreds of milliseconds to
// start under emulation. Anything else (quotes, $, redirections, a shell
// builtin) returns false and runs through /bin/sh -c, as documented.
func directArgv(command, path string) ([]string, bool) {
	if strings.ContainsAny(command, "\n\r\v\f") { // a newline ends a shell command
		return nil, false
	}
	words := strings.Fields(command)
	if len(words) == 0 || strings.Contains(words[0], "=") {
		return nil, false
	}
	for _, w := range words {
		for _, r := range w {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_./:,@+-=%", r)) {
				return nil, false
			}
		}
	}
	prog := words[0]
	if strings.Contains(prog, "/") {
		if !filepath.IsAbs(prog) || !executable(prog) {
			return nil, false
		}
		return words, true
	}
	for _, dir := range filepath.SplitList(path) {
		if p := filepath.Join(dir, prog); filepath.IsAbs(dir) && executable(p) {
			words[0] = p
			return words, true
		}
	}
	return nil, false
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
