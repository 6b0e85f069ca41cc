// Package packaging holds the tests of the Debian package that make deb
// builds (scripts/deb.sh, packaging/nfpm.yaml).
package packaging

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// chrootEnv is the environment of every command run in the chroot: the
// host's would leak its locale and Go variables into it.
var chrootEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "HOME=/root"}

// TestIntegrationDebInstall builds the package twice (the two must be
// byte-identical), installs it into a copy of a clean Debian 12 root made
// by debootstrap --variant=minbase, runs clusterd --version, cluster
// --help and resmon there, checks the unit and the man pages, and removes
// and purges it, leaving none of its files.
//
// The clean root is cached in .cache/debroot, keyed on the month, and
// rebuilt when the month changes (about 2.5 minutes); the copy the test
// installs into is thrown away.
func TestIntegrationDebInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: builds the package and a Debian root; skipped under -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (debootstrap, chroot)")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Skip("needs debootstrap (scripts/deps.sh installs it)")
	}
	top, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	deb := build(t, top, t.TempDir())
	again := build(t, top, t.TempDir())
	t.Logf("two builds: %v", time.Since(start).Round(time.Millisecond))
	a, b := readFile(t, deb), readFile(t, again)
	if !bytes.Equal(a, b) {
		t.Fatalf("two builds of the same tree differ: %s and %s", deb, again)
	}
	version := strings.TrimSpace(run(t, "", "dpkg-deb", "-f", deb, "Version"))
	files := packageFiles(t, deb)

	base := cleanRoot(t, top)
	start = time.Now()
	root := filepath.Join(t.TempDir(), "root")
	run(t, "", "cp", "-a", base, root)
	t.Logf("copy of the clean root: %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if err := os.WriteFile(filepath.Join(root, "tmp", filepath.Base(deb)), a, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, root, "dpkg", "-i", "/tmp/"+filepath.Base(deb))
	if got := run(t, root, "dpkg-query", "-W", "-f", "${Status} ${Version}", "wolfpack"); got != "install ok installed "+version {
		t.Fatalf("dpkg-query after dpkg -i: %q", got)
	}

	// The commands, as an operator runs them.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"clusterd", "--version"}, "clusterd " + version + " ("},
		{[]string{"cluster", "--version"}, "cluster " + version + " ("},
		{[]string{"resmon", "--version"}, "resmon " + version + " ("},
		{[]string{"cluster", "--help"}, "usage: cluster <command>"},
	} {
		if out := run(t, root, c.args...); !strings.HasPrefix(out, c.want) {
			t.Errorf("%s: %q, want it to start with %q", strings.Join(c.args, " "), out, c.want)
		}
	}
	// -h prints the usage (on stderr, as the flag package does) and exits 0.
	for _, cmd := range []string{"clusterd", "resmon"} {
		out, err := combined(root, cmd, "-h")
		if err != nil || !strings.Contains(out, "-version") || strings.Contains(out, "help requested") {
			t.Errorf("%s -h: %v\n%s", cmd, err, out)
		}
	}

	// The unit is the repository's, and systemd reads it without a
	// warning (verified against the installed binary).
	unit := readFile(t, filepath.Join(root, "lib/systemd/system/clusterd.service"))
	if !bytes.Equal(unit, readFile(t, filepath.Join(top, "packaging/clusterd.service"))) {
		t.Error("/lib/systemd/system/clusterd.service differs from packaging/clusterd.service")
	}
	verifyUnit(t, unit, root)

	// The man pages: gzipped, section 8, and groff finds nothing wrong.
	for _, page := range []string{"clusterd", "cluster", "resmon"} {
		checkManPage(t, filepath.Join(root, "usr/share/man/man8", page+".8.gz"), page)
	}
	if !bytes.Equal(readFile(t, filepath.Join(root, "usr/share/doc/wolfpack/examples/node.toml")), readFile(t, "../docs/examples/node.toml")) {
		t.Error("the installed sample node file differs from docs/examples/node.toml")
	}
	// Nothing is enabled: the operator writes the node file first.
	if m, _ := filepath.Glob(filepath.Join(root, "etc/systemd/system/*/clusterd.service")); len(m) > 0 {
		t.Errorf("the unit was enabled at install: %v", m)
	}
	t.Logf("install and checks: %v", time.Since(start).Round(time.Millisecond))

	run(t, root, "dpkg", "-r", "wolfpack")
	run(t, root, "dpkg", "--purge", "wolfpack")
	if out, err := combined(root, "dpkg-query", "-W", "-f", "${Status}", "wolfpack"); err == nil && out != "" && !strings.Contains(out, "not-installed") {
		t.Errorf("dpkg-query after purge: %q", out)
	}
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(root, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there after dpkg --purge (%v)", f, err)
		}
	}
}

// build runs scripts/deb.sh into out and returns the package's path.
func build(t *testing.T, top, out string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(top, "scripts/deb.sh"))
	cmd.Dir = top
	cmd.Env = append(os.Environ(), "DEB_OUT="+out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/deb.sh: %v\n%s", err, stderr.Bytes())
	}
	deb := strings.TrimSpace(string(b))
	if filepath.Dir(deb) != out || !strings.HasPrefix(filepath.Base(deb), "wolfpack_") || !strings.HasSuffix(deb, "_amd64.deb") {
		t.Fatalf("scripts/deb.sh printed %q, want %s/wolfpack_VERSION_amd64.deb", deb, out)
	}
	return deb
}

// packageFiles lists the package's regular files and the directories
// only it creates (/etc/wolfpack, /usr/share/doc/wolfpack...), from
// dpkg-deb -c.
func packageFiles(t *testing.T, deb string) []string {
	t.Helper()
	var files []string
	for _, line := range strings.Split(run(t, "", "dpkg-deb", "-c", deb), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		p := strings.TrimPrefix(f[5], ".")
		if f[0][0] == '-' || strings.Contains(p, "wolfpack") {
			files = append(files, strings.TrimSuffix(p, "/"))
		}
	}
	if !slices.Contains(files, "/usr/sbin/clusterd") || !slices.Contains(files, "/etc/wolfpack") {
		t.Fatalf("dpkg-deb -c %s: no /usr/sbin/clusterd or /etc/wolfpack in %v", deb, files)
	}
	return files
}

// cleanRoot returns a minbase Debian 12 root in .cache/debroot, made
// once a month from the mirror this machine's apt uses.
func cleanRoot(t *testing.T, top string) string {
	t.Helper()
	dir := filepath.Join(top, ".cache", "debroot")
	key := "bookworm-minbase-" + time.Now().UTC().Format("2006-01")
	root := filepath.Join(dir, key)
	if _, err := os.Stat(filepath.Join(root, "var/lib/dpkg/status")); err == nil {
		t.Logf("clean root: cached %s", root)
		return root
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mirror := aptMirror(t)
	tmp, err := os.MkdirTemp(dir, key+".tmp-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	run(t, "", "debootstrap", "--variant=minbase", "bookworm", tmp, mirror)
	// Older months' roots go; the new one takes their place atomically.
	old, _ := filepath.Glob(filepath.Join(dir, "bookworm-minbase-*"))
	for _, o := range old {
		if !strings.Contains(filepath.Base(o), ".tmp-") {
			os.RemoveAll(o)
		}
	}
	if err := os.Rename(tmp, root); err != nil {
		t.Fatal(err)
	}
	t.Logf("clean root: debootstrap from %s into %s: %v", mirror, root, time.Since(start).Round(time.Second))
	return root
}

// aptMirror is the Debian archive this machine's apt uses for bookworm.
func aptMirror(t *testing.T) string {
	t.Helper()
	var files []string
	for _, g := range []string{"/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := mirrorIn(string(b), "bookworm"); m != "" {
			return m
		}
	}
	t.Fatalf("no apt source for Debian bookworm in %v", files)
	return ""
}

// mirrorIn finds the first archive serving suite, in one-line (deb URI
// SUITE COMPONENTS) or deb822 (URIs:, Suites:) sources.
func mirrorIn(src, suite string) string {
	var uris, suites []string
	check := func() string {
		if slices.Contains(suites, suite) && len(uris) > 0 {
			return uris[0]
		}
		return ""
	}
	sc := bufio.NewScanner(strings.NewReader(src))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		f := strings.Fields(line)
		switch {
		case line == "":
			if m := check(); m != "" {
				return m
			}
			uris, suites = nil, nil
		case f[0] == "deb":
			f = f[1:]
			if len(f) > 0 && strings.HasPrefix(f[0], "[") {
				for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
					f = f[1:]
				}
				f = f[1:]
			}
			if len(f) >= 2 && f[1] == suite {
				return f[0]
			}
		case strings.EqualFold(f[0], "URIs:"):
			uris = f[1:]
		case strings.EqualFold(f[0], "Suites:"):
			suites = f[1:]
		}
	}
	return check()
}

// verifyUnit runs systemd-analyze verify on the unit with ExecStart
// pointed at the chroot's clusterd; any output is a finding.
func verifyUnit(t *testing.T, unit []byte, root string) {
	t.Helper()
	const exec = "ExecStart=/usr/sbin/clusterd "
	if !bytes.Contains(unit, []byte(exec)) {
		t.Fatalf("the unit has no %q", exec)
	}
	p := filepath.Join(t.TempDir(), "clusterd.service")
	moved := bytes.Replace(unit, []byte(exec), []byte("ExecStart="+filepath.Join(root, "usr/sbin/clusterd")+" "), 1)
	if err := os.WriteFile(p, moved, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := combined("", "systemd-analyze", "verify", "--man=no", p); err != nil || out != "" {
		t.Errorf("systemd-analyze verify clusterd.service: %v\n%s", err, out)
	}
}

func checkManPage(t *testing.T, path, name string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	page, err := io.ReadAll(z)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if want := fmt.Sprintf(".TH %s 8 ", strings.ToUpper(name)); !bytes.HasPrefix(page, []byte(want)) {
		t.Errorf("%s does not start with %q", path, want)
	}
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = bytes.NewReader(page)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("groff -man -ww on %s: %v\n%s", path, err, out)
	}
}

// run runs a command (in the chroot root, unless root is "") and returns
// its standard output; a failure fails the test.
func run(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, err := combined(root, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// combined runs a command (inside the chroot root unless root is "")
// and returns its output, both streams.
func combined(root string, args ...string) (string, error) {
	var cmd *exec.Cmd
	if root == "" {
		cmd = exec.Command(args[0], args[1:]...)
	} else {
		cmd = exec.Command("chroot", append([]string{root}, args...)...)
		cmd.Env = chrootEnv
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMirrorIn(t *testing.T) {
	deb822 := `Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
`
	for _, c := range []struct{ name, src, want string }{
		{"deb822", deb822, "http://mirror.example/debian"},
		{"deb822, security first", "URIs: http://s.example/sec\nSuites: bookworm-security\n\nURIs: http://m.example/debian\nSuites: bookworm\n", "http://m.example/debian"},
		{"one-line", "deb http://m.example/debian bookworm main\n", "http://m.example/debian"},
		{"one-line with options", "deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n", "http://m.example/debian"},
		{"other suites only", "deb http://m.example/debian bullseye main\ndeb https://vendor.example/apt cloud-sdk-bookworm main\n", ""},
	} {
		if got := mirrorIn(c.src, "bookworm"); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
