package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ApplianceModules are the kernel modules of the appliance (their
// dependencies are added, loaded first): virtio PCI, SCSI disks with sg
// (the quorum and data LUNs through SG_IO), virtio-scsi, virtio-blk (the
// config disk), virtio-net, the software watchdog resmon can pet, and
// virtio-rng: in a virtual machine whose CPU has no RDRAND (QEMU's TCG)
// the kernel's random pool waits for it, and every getrandom with it
// (docs/appliance.md, "Boot time").
var ApplianceModules = []string{
	"virtio_pci", "virtio_scsi", "sd_mod", "sg", "virtio_net", "virtio_blk", "softdog", "virtio_rng",
}

// ApplianceLateModules are loaded once clusterd is started, off the
// boot's path: the ACPI button and evdev, through which init hears the
// power button.
var ApplianceLateModules = []string{"button", "evdev"}

// Commands are the u-root commands of the appliance (u-root's cmds/core),
// built into one busybox-style binary, /bin/bb, with a symlink per
// command. gosh is /bin/sh too: the generic_application resources run
// their command with /bin/sh -c.
var Commands = []string{
	"cat", "chmod", "cp", "date", "dd", "df", "dmesg", "echo", "false", "find", "free", "gosh",
	"grep", "gzip", "head", "hostname", "insmod", "ip", "kill", "ln", "ls", "lsmod", "mkdir",
	"mknod", "mount", "mv", "netstat", "pidof", "ping", "ps", "pwd", "readlink", "rm",
	"rmmod", "sleep", "sort", "sync", "tail", "tar", "tee", "true", "umount",
	"uname", "uptime", "wc", "which",
}

// DefaultStub is Debian's systemd-boot EFI stub (package systemd-boot-efi).
const DefaultStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// DefaultCmdline is the UKI's kernel command line: the console on the
// first serial port (and the screen), a reboot 10 s after a panic, and
// no_timer_check: in a virtual machine on a busy host (QEMU's TCG here)
// the kernel's check of the IO-APIC timer can miss its ticks and panic
// at boot ("IO-APIC + timer doesn't work"); cloud images pass it too.
const DefaultCmdline = "console=tty0 console=ttyS0,115200 panic=10 no_timer_check quiet " + BootOptions

// BootOptions are the kernel options of the appliance's command line
// that shorten its boot (docs/appliance.md, "Boot time"):
// cryptomgr.notests=1 skips the kernel's self-tests of its own crypto
// algorithms (the appliance uses none of them; fips=1 runs them
// regardless), about 1 s under TCG.
const BootOptions = "cryptomgr.notests=1"

// MaxInitramfsSize is the compressed initramfs's budget, 15 MB
// (BENCHMARKS.md, "Targets"); TestApplianceReproducible holds the build
// to it.
const MaxInitramfsSize = 15_000_000

// Options describe an appliance build.
type Options struct {
	Log       *slog.Logger
	Root      string // the github.com/wolfpack-ha/wolfpack module's directory
	KernelDir string // holds boot/vmlinuz-VERSION and lib/modules/VERSION (an unpacked kernel package)
	Out       string // the output directory
	Version   string // stamped into the binaries (internal/version.Version); "" leaves theirs
	Cmdline   string // the UKI's command line, DefaultCmdline when empty
	Stub      string // the EFI stub, DefaultStub when empty
	// Work is a directory for intermediate files (the built binaries);
	// a new temporary directory when empty.
	Work string
}

// Result names the outputs.
type Result struct {
	Vmlinuz, Initramfs, EFI, Sums string
	KernelVersion                 string
}

// Output file names under Options.Out.
const (
	VmlinuzName   = "vmlinuz"
	InitramfsName = "initramfs.cpio.lz4"
	EFIName       = "wolfpack.efi"
	SumsName      = "SHA256SUMS"
)

// Build builds the appliance: the initramfs (u-root's commands as one
// binary compiled from the u-root module with the module's Go; init,
// clusterd, resmon and cluster as one multi-call binary, cmd/wolfpack;
// the kernel modules in dependency order), the kernel it is for, the single-file UEFI image
// (kernel, initramfs and command line on the systemd-boot stub) and
// SHA256SUMS. The same inputs (sources, Go, kernel, stub, binutils) give
// the same bytes.
func Build(ctx context.Context, o Options) (Result, error) {
	var r Result
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Cmdline == "" {
		o.Cmdline = DefaultCmdline
	}
	if o.Stub == "" {
		o.Stub = DefaultStub
	}
	if o.Root == "" || o.KernelDir == "" || o.Out == "" {
		return r, errors.New("appliance build: Root, KernelDir and Out are required")
	}
	vmlinuz, modDir, kver, err := FindKernel(o.KernelDir)
	if err != nil {
		return r, err
	}
	r.KernelVersion = kver
	if o.Work == "" {
		d, err := os.MkdirTemp("", "wolfpack-appliance-")
		if err != nil {
			return r, fmt.Errorf("appliance build: %w", err)
		}
		defer os.RemoveAll(d)
		o.Work = d
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return r, fmt.Errorf("appliance build: %w", err)
	}
	t0 := time.Now()
	a, err := ApplianceArchive(ctx, o, modDir)
	if err != nil {
		return r, err
	}
	o.Log.Info("archive assembled", "entries", a.Len(), "took", time.Since(t0).Round(time.Millisecond))

	r.Initramfs = filepath.Join(o.Out, InitramfsName)
	t0 = time.Now()
	if err := writeFileWith(r.Initramfs, func(w io.Writer) error { return a.WriteLZ4(ctx, w) }); err != nil {
		return r, fmt.Errorf("write initramfs: %w", err)
	}
	o.Log.Info("initramfs written", "took", time.Since(t0).Round(time.Millisecond))
	r.Vmlinuz = filepath.Join(o.Out, VmlinuzName)
	if err := copyFile(vmlinuz, r.Vmlinuz); err != nil {
		return r, err
	}
	r.EFI = filepath.Join(o.Out, EFIName)
	osrel := fmt.Sprintf("NAME=\"Wolfpack appliance\"\nID=wolfpack\nPRETTY_NAME=\"Wolfpack appliance %s\"\nVERSION_ID=%q\n", o.Version, o.Version)
	if err := BuildUKI(ctx, UKI{Stub: o.Stub, Kernel: r.Vmlinuz, Initrd: r.Initramfs, Cmdline: o.Cmdline, OSRelease: osrel, Work: o.Work}, r.EFI); err != nil {
		return r, err
	}
	r.Sums = filepath.Join(o.Out, SumsName)
	var sums bytes.Buffer
	for _, p := range []string{r.EFI, r.Initramfs, r.Vmlinuz} {
		b, err := os.ReadFile(p)
		if err != nil {
			return r, err
		}
		s := sha256.Sum256(b)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(s[:]), filepath.Base(p))
	}
	if err := os.WriteFile(r.Sums, sums.Bytes(), 0o644); err != nil {
		return r, err
	}
	return r, nil
}

// FindKernel returns the newest vmlinuz under dir/boot, its module
// directory and its version.
func FindKernel(dir string) (vmlinuz, modDir, version string, err error) {
	m, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(m) == 0 {
		return "", "", "", fmt.Errorf("no kernel in %s/boot (run ./scripts/deps.sh)", dir)
	}
	sort.Strings(m)
	vmlinuz = m[len(m)-1]
	version = strings.TrimPrefix(filepath.Base(vmlinuz), "vmlinuz-")
	modDir = filepath.Join(dir, "lib", "modules", version)
	if _, err := os.Stat(modDir); err != nil {
		return "", "", "", fmt.Errorf("kernel %s: no modules: %w", version, err)
	}
	return vmlinuz, modDir, version, nil
}

// ApplianceArchive assembles the appliance's initramfs contents, building
// the Go programs into o.Work.
func ApplianceArchive(ctx context.Context, o Options, modDir string) (*Archive, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	bin := filepath.Join(o.Work, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	// One multi-call binary for the project's programs (cmd/wolfpack):
	// /init and bin/clusterd, bin/resmon, bin/cluster, and bin/poweroff,
	// reboot and halt (which ask init for a shutdown that drains
	// clusterd; u-root's would stop the machine at once) are links to it.
	a := &Archive{}
	out := filepath.Join(bin, "wolfpack")
	t0 := time.Now()
	if err := GoBuild(ctx, o.Root, "./cmd/wolfpack", out, o.Version); err != nil {
		return nil, err
	}
	o.Log.Info("built", "pkg", "./cmd/wolfpack", "took", time.Since(t0).Round(time.Millisecond))
	if err := a.AddFile("bin/wolfpack", out, 0o755); err != nil {
		return nil, err
	}
	for _, c := range []string{"clusterd", "resmon", "cluster", "poweroff", "reboot", "halt"} {
		if err := a.AddSymlink("bin/"+c, "wolfpack"); err != nil {
			return nil, err
		}
	}
	if err := a.AddSymlink("init", "bin/wolfpack"); err != nil {
		return nil, err
	}
	// makebb builds with go build -a, past Go's cache: a persistent Work
	// directory keeps the binary under a key of everything it is made of.
	key, err := busyboxKey(ctx, o.Root, Commands)
	if err != nil {
		return nil, err
	}
	bb := filepath.Join(bin, "bb-"+key)
	if _, err := os.Stat(bb); err != nil {
		t0 := time.Now()
		if err := BuildBusybox(ctx, o.Root, Commands, bb+".tmp"); err != nil {
			return nil, err
		}
		if err := os.Rename(bb+".tmp", bb); err != nil {
			return nil, err
		}
		o.Log.Info("built u-root commands", "commands", len(Commands), "took", time.Since(t0).Round(time.Millisecond))
	}
	if err := a.AddFile("bin/bb", bb, 0o755); err != nil {
		return nil, err
	}
	for _, c := range Commands {
		if err := a.AddSymlink("bin/"+c, "bb"); err != nil {
			return nil, err
		}
	}
	if err := a.AddSymlink("bin/sh", "gosh"); err != nil { // bb follows symlinks to the last one and runs gosh
		return nil, err
	}
	if err := AddModules(a, modDir, ApplianceModules, ApplianceLateModules); err != nil {
		return nil, err
	}
	if err := a.Dirs("dev", "proc", "sys", "tmp", "run", "root", "var/log", "var/lib/wolfpack", "etc/wolfpack", "sbin", "usr/bin", "usr/sbin", "mnt"); err != nil {
		return nil, err
	}
	for _, e := range []Entry{
		{Path: "dev/console", Mode: 0o600, Kind: CharDev, Major: 5, Minor: 1},
		{Path: "dev/null", Mode: 0o666, Kind: CharDev, Major: 1, Minor: 3},
		{Path: "etc/hosts", Kind: File, Mode: 0o644, Data: []byte("127.0.0.1 localhost\n::1 localhost\n")},
		{Path: "etc/passwd", Kind: File, Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/sh\n")},
		{Path: "etc/group", Kind: File, Mode: 0o644, Data: []byte("root:x:0:\n")},
		{Path: "etc/os-release", Kind: File, Mode: 0o644, Data: []byte("NAME=\"Wolfpack appliance\"\nID=wolfpack\nVERSION_ID=\"" + o.Version + "\"\n")},
		{Path: "etc/mtab", Kind: Symlink, Mode: 0o777, Data: []byte("/proc/self/mounts")},
	} {
		if err := a.Add(e); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// busyboxKey names a build of the u-root commands: the Go toolchain, the
// u-root and gobusybox module versions, and the commands.
func busyboxKey(ctx context.Context, root string, commands []string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Path}}@{{.Version}}", "github.com/u-root/u-root", "github.com/u-root/gobusybox/src")
	cmd.Dir = root
	mods, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("u-root and gobusybox versions: go list -m: %w", err)
	}
	ver, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %w", err)
	}
	h := sha256.Sum256([]byte(string(mods) + string(ver) + strings.Join(commands, " ")))
	return hex.EncodeToString(h[:8]), nil
}

// GoBuild builds a main package of the module at root as a static,
// stripped binary with no paths or VCS stamp in it (-trimpath,
// -buildvcs=false, no build id), so the same sources and Go give the same
// bytes.
func GoBuild(ctx context.Context, root, pkg, out, version string) error {
	ldflags := "-s -w -buildid="
	if version != "" {
		ldflags += " -X github.com/wolfpack-ha/wolfpack/internal/version.Version=" + version
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// BuildBusybox compiles u-root's cmds/core commands into one binary with
// gobusybox's makebb, a tool dependency of the module (go.mod's tool
// directive pins it), from the u-root module that go.mod requires, with
// the module's Go. makebb builds with -trimpath and strips the binary
// and its build id.
func BuildBusybox(ctx context.Context, root string, commands []string, out string) error {
	list := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/u-root/u-root")
	list.Dir = root
	b, err := list.Output()
	if err != nil {
		return fmt.Errorf("find the u-root module: go list -m: %w", err)
	}
	uroot := strings.TrimSpace(string(b))
	if uroot == "" {
		return fmt.Errorf("find the u-root module: not downloaded (go mod download github.com/u-root/u-root)")
	}
	// makebb loads the commands' packages without downloading what they
	// import; go list in the u-root module fetches those modules at the
	// versions its go.sum pins.
	pkgs := []string{}
	for _, c := range commands {
		pkgs = append(pkgs, "./cmds/core/"+c)
	}
	deps := exec.CommandContext(ctx, "go", append([]string{"list", "-deps"}, pkgs...)...)
	deps.Dir = uroot
	deps.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
	if b, err := deps.CombinedOutput(); err != nil {
		return fmt.Errorf("download the u-root commands' dependencies (go list -deps in %s): %w\n%s", uroot, err, b)
	}
	// makebb itself is built from the module (the tool directive), and
	// runs in the u-root module so that the commands' imports resolve
	// against u-root's go.mod.
	makebb := out + ".makebb"
	build := exec.CommandContext(ctx, "go", "build", "-o", makebb, "github.com/u-root/gobusybox/src/cmd/makebb")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build makebb (the module's tool dependency): %w\n%s", err, b)
	}
	defer os.Remove(makebb)
	args := []string{"-o", out}
	for _, c := range commands {
		args = append(args, filepath.Join(uroot, "cmds", "core", c))
	}
	cmd := exec.CommandContext(ctx, makebb, args...)
	cmd.Dir = uroot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build u-root commands (makebb): %w\n%s", err, b)
	}
	return nil
}

func writeFileWith(path string, write func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("copy %s: %w", from, err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("copy %s: %w", from, err)
	}
	return os.Rename(to+".tmp", to)
}
