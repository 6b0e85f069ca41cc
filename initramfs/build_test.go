package initramfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/initramfs/boot"
)

func TestArchiveCanonical(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "prog")
	if err := os.WriteFile(host, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	build := func(reverse bool) []byte {
		steps := []func(a *Archive) error{
			func(a *Archive) error { return a.AddFile("bin/prog", host, 0o755) },
			func(a *Archive) error { return a.AddSymlink("bin/sh", "prog") },
			func(a *Archive) error { return a.AddData("etc/hosts", []byte("127.0.0.1 localhost\n"), 0o644) },
			func(a *Archive) error {
				return a.Add(Entry{Path: "dev/console", Kind: CharDev, Mode: 0o600, Major: 5, Minor: 1})
			},
		}
		var a Archive
		for i := range steps {
			if reverse {
				i = len(steps) - 1 - i
			}
			if err := steps[i](&a); err != nil {
				t.Fatal(err)
			}
		}
		var buf bytes.Buffer
		if err := a.Write(&buf, 9); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b := build(false), build(true)
	if !bytes.Equal(a, b) {
		t.Fatal("the same entries added in another order gave other bytes")
	}
	var x Archive
	if err := x.AddData("a/b", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := x.AddData("a/b", []byte("2"), 0o644); err == nil || !strings.Contains(err.Error(), "a/b added twice") {
		t.Errorf("conflicting entry: %v", err)
	}
	if err := x.AddData("a", nil, 0o644); err == nil {
		t.Error("a file over an implied directory accepted")
	}
	if got := x.Entries(); len(got) != 2 || got[0].Path != "a" || got[0].Kind != Dir || got[1].Path != "a/b" {
		t.Errorf("entries: %+v", got)
	}
}

func TestResolveModules(t *testing.T) {
	// A fake module tree with modules.dep: c needs b needs a; d needs a.
	dir := t.TempDir()
	for _, m := range []string{"kernel/x/a.ko", "kernel/x/b.ko", "kernel/y/c-dash.ko", "kernel/y/d.ko"} {
		p := filepath.Join(dir, m)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dep := "kernel/x/a.ko:\nkernel/x/b.ko: kernel/x/a.ko\nkernel/y/c-dash.ko: kernel/x/b.ko kernel/x/a.ko\nkernel/y/d.ko: kernel/x/a.ko\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/z/e.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ms, err := ResolveModules(dir, []string{"d", "c_dash", "e"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	if got := strings.Join(names, " "); got != "a d b c_dash" {
		t.Errorf("order %q, want %q", got, "a d b c_dash")
	}
	if _, err := ResolveModules(dir, []string{"nosuch"}); err == nil || !strings.Contains(err.Error(), "kernel module nosuch not found") {
		t.Errorf("missing module: %v", err)
	}

	// The late list holds what the boot list does not: c_dash and b, not
	// a, which d needs at boot.
	var a Archive
	if err := AddModules(&a, dir, []string{"d"}, []string{"c_dash"}); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range a.Entries() {
		files["/"+e.Path] = string(e.Data)
	}
	if got, want := files[boot.ModuleOrder], "a.ko\nd.ko\n"; got != want {
		t.Errorf("%s: %q, want %q", boot.ModuleOrder, got, want)
	}
	if got, want := files[boot.ModuleOrderLate], "b.ko\nc-dash.ko\n"; got != want {
		t.Errorf("%s: %q, want %q", boot.ModuleOrderLate, got, want)
	}
	for _, f := range []string{"a.ko", "b.ko", "c-dash.ko", "d.ko"} {
		if _, ok := files[boot.ModuleDir+"/"+f]; !ok {
			t.Errorf("%s not in the image", f)
		}
	}
}

// TestApplianceReproducible builds the appliance twice from the same
// tree and compares every output byte for byte. It needs the guest kernel
// (scripts/deps.sh), lz4, objcopy and the systemd-boot stub, and takes
// about two minutes the first time (u-root's commands).
func TestApplianceReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the appliance twice: not under -short")
	}
	kdir := filepath.Join("..", ".cache", "kernel")
	if d := os.Getenv("WOLFPACK_KERNEL_DIR"); d != "" {
		kdir = d
	}
	if _, _, _, err := FindKernel(kdir); err != nil {
		t.Skip(err)
	}
	for _, prog := range []string{"lz4", "objcopy"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh)", prog)
		}
	}
	if _, err := os.Stat(DefaultStub); err != nil {
		t.Skipf("no EFI stub (systemd-boot-efi): %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// WOLFPACK_APPLIANCE_WORK: the first build's work directory, where a
	// previous build may have left u-root's commands (make test points it
	// at the testbed's); the second always starts from nothing.
	var outs [2]Result
	for i := range outs {
		work := ""
		if i == 0 {
			work = os.Getenv("WOLFPACK_APPLIANCE_WORK")
		}
		outs[i], err = Build(context.Background(), Options{Root: root, KernelDir: kdir, Work: work, Out: filepath.Join(t.TempDir(), "appliance"), Version: "0.0.0-test"})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, pick := range []func(Result) string{
		func(r Result) string { return r.Initramfs }, func(r Result) string { return r.EFI },
		func(r Result) string { return r.Vmlinuz }, func(r Result) string { return r.Sums },
	} {
		a, err := os.ReadFile(pick(outs[0]))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(pick(outs[1]))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds (%d and %d bytes)", filepath.Base(pick(outs[0])), len(a), len(b))
		} else {
			t.Logf("%s: %d bytes, the same twice", filepath.Base(pick(outs[0])), len(a))
		}
	}
	// The image's budget (BENCHMARKS.md, "Targets"): the initramfs, the
	// part the project builds, at most 15 MB compressed.
	if fi, err := os.Stat(outs[0].Initramfs); err != nil {
		t.Fatal(err)
	} else if fi.Size() > MaxInitramfsSize {
		t.Errorf("%s is %d bytes, over the budget of %d", filepath.Base(outs[0].Initramfs), fi.Size(), MaxInitramfsSize)
	}
}

// TestPEChecksum: fixPEHeader on Debian's stub, with the stub's own time
// stamp, gives back the stub's bytes: the checksum is computed as the
// linker did.
func TestPEChecksum(t *testing.T) {
	b, err := os.ReadFile(DefaultStub)
	if err != nil {
		t.Skipf("no EFI stub (systemd-boot-efi): %v", err)
	}
	orig := bytes.Clone(b)
	if err := fixPEHeader(b, binary.LittleEndian.Uint32(b[int(binary.LittleEndian.Uint32(b[0x3c:]))+8:])); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, orig) {
		t.Error("fixPEHeader changed the stub")
	}
	if err := fixPEHeader([]byte("MZ"), 0); err == nil {
		t.Error("a 2-byte file taken for a PE image")
	}
}
