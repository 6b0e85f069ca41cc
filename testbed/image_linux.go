package testbed

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/wolfpack-ha/wolfpack/initramfs"
)

// Modules are the guest kernel modules (the image adds what they depend
// on, loaded first: initramfs.ResolveModules).
var Modules = []string{
	"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
	"scsi_common", "scsi_mod", "virtio_scsi", "sd_mod", "sg",
	"failover", "net_failover", "virtio_net",
}

// guestTools are host programs copied into the image with their shared
// libraries, when installed: sg3-utils (an independent reader of the
// LUNs) and e2fsck (the physical disk type checks ext filesystems).
var guestTools = []string{"/usr/bin/sg_persist", "/usr/bin/sg_inq", "/usr/bin/sg_turs", "/usr/bin/sg_readcap", e2fsckPath}

const e2fsckPath = "/usr/sbin/e2fsck"

const busyboxPath = "/usr/bin/busybox"

// ModuleRoot returns the root directory of this Go module, found from the
// working directory (go test runs in the package directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/wolfpack-ha/wolfpack\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the github.com/wolfpack-ha/wolfpack module")
		}
		dir = parent
	}
}

// KernelDir is where scripts/deps.sh unpacks the guest kernel, unless
// WOLFPACK_KERNEL_DIR says otherwise.
func KernelDir() (string, error) {
	if d := os.Getenv("WOLFPACK_KERNEL_DIR"); d != "" {
		return d, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "kernel"), nil
}

// kernelImage returns the vmlinuz and the module directory under dir.
func kernelImage(dir string) (vmlinuz, modDir string, err error) {
	m, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(m) == 0 {
		return "", "", fmt.Errorf("no kernel in %s/boot (run ./scripts/deps.sh)", dir)
	}
	sort.Strings(m)
	vmlinuz = m[len(m)-1]
	ver := strings.TrimPrefix(filepath.Base(vmlinuz), "vmlinuz-")
	return vmlinuz, filepath.Join(dir, "lib", "modules", ver), nil
}

func cacheDir() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	d := filepath.Join(root, ".cache", "testbed")
	return d, os.MkdirAll(d, 0o755)
}

// BuildGo builds a main package of this module (e.g. "./cmd/cluster") as a
// static binary under .cache/testbed/bin and returns its path. Go's build cache
// and its up-to-date check on the output keep repeated builds cheap.
func BuildGo(ctx context.Context, pkg string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	binDir := filepath.Join(cache, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(binDir, filepath.Base(pkg))
	unlock, err := flock(filepath.Join(binDir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

func flock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, os.NewSyscallError("flock", err))
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// buildImage assembles the initramfs and returns its path in the cache.
func buildImage(ctx context.Context, modDir string, nodes int, binaries []string) (string, error) {
	agentBin, err := BuildGo(ctx, "./cmd/wolfpack-agent")
	if err != nil {
		return "", fmt.Errorf("build agent: %w", err)
	}
	var s initramfs.Archive
	if err := s.Dirs("bin", "sbin", "usr/bin", "usr/sbin", "lib64", "lib/modules", "dev", "proc", "sys", "tmp", "run", "etc", "var/log", "root"); err != nil {
		return "", err
	}
	for _, e := range []initramfs.Entry{
		{Path: "dev/console", Mode: 0o600, Kind: initramfs.CharDev, Major: 5, Minor: 1},
		{Path: "dev/null", Mode: 0o666, Kind: initramfs.CharDev, Major: 1, Minor: 3},
		{Path: "init", Src: agentBin, Mode: 0o755, Kind: initramfs.File},
	} {
		if err := s.Add(e); err != nil {
			return "", err
		}
	}
	if err := initramfs.AddModules(&s, modDir, Modules, nil); err != nil {
		return "", err
	}
	if err := s.AddData("etc/hosts", hostsFile(nodes), 0o644); err != nil {
		return "", err
	}
	if err := addGuestTools(ctx, &s, binaries); err != nil {
		return "", err
	}
	if _, err := os.Stat(busyboxPath); err == nil {
		if err := s.AddFile("/bin/busybox", busyboxPath, 0o755); err != nil {
			return "", err
		}
		out, err := exec.CommandContext(ctx, busyboxPath, "--list").Output()
		if err != nil {
			return "", fmt.Errorf("busybox --list: %w", err)
		}
		for _, applet := range strings.Fields(string(out)) {
			if applet == "busybox" || applet == "init" || applet == "linuxrc" || s.Has("/bin/"+applet) {
				continue
			}
			if err := s.AddSymlink("bin/"+applet, "busybox"); err != nil {
				return "", err
			}
		}
	}
	return cacheArchive(ctx, &s, "initramfs", false)
}

// hostsFile is the guests' /etc/hosts: the nodes and the client by name.
func hostsFile(nodes int) []byte {
	var hosts strings.Builder
	fmt.Fprintf(&hosts, "127.0.0.1 localhost\n%s client\n", ClientAddr().Addr())
	for n := 1; n <= nodes; n++ {
		fmt.Fprintf(&hosts, "%s node%d\n", NodeAddr(0, n).Addr(), n)
	}
	return []byte(hosts.String())
}

// addGuestTools adds binaries to /bin and the host's guestTools, when
// installed, with their shared libraries.
func addGuestTools(ctx context.Context, s *initramfs.Archive, binaries []string) error {
	for _, b := range binaries {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("extra binary: %w", err)
		}
		if err := s.AddFile("/bin/"+filepath.Base(b), b, 0o755); err != nil {
			return err
		}
	}
	for _, tool := range guestTools {
		if _, err := os.Stat(tool); err != nil {
			continue
		}
		if err := addDynamic(ctx, s, tool); err != nil {
			return err
		}
	}
	if s.Has(e2fsckPath) {
		for _, fs := range []string{"ext2", "ext3", "ext4"} {
			if err := s.AddSymlink("usr/sbin/fsck."+fs, "e2fsck"); err != nil {
				return err
			}
		}
		// e2fsck looks for mounted filesystems in /etc/mtab too.
		if err := s.AddSymlink("etc/mtab", "/proc/self/mounts"); err != nil {
			return err
		}
	}
	return nil
}

// cacheArchive writes the archive, gzip-compressed (or, with lz4,
// LZ4-compressed), into the image cache under a name made of its content
// hash, unless it is there, and returns its path.
func cacheArchive(ctx context.Context, s *initramfs.Archive, name string, lz4 bool) (string, error) {
	sum, err := s.Hash()
	if err != nil {
		return "", err
	}
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name+"-"+sum[:16]+".cpio.gz")
	if lz4 {
		path = strings.TrimSuffix(path, ".gz") + ".lz4"
	}
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return "", fmt.Errorf("create image: %w", err)
	}
	defer os.Remove(tmp.Name())
	write := func(w io.Writer) error { return s.Write(w, gzip.BestSpeed) }
	if lz4 {
		write = func(w io.Writer) error { return s.WriteLZ4(ctx, w) }
	}
	if err := write(tmp); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write image: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write image: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", fmt.Errorf("write image: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("install image: %w", err)
	}
	return path, nil
}

// addDynamic adds a dynamically linked program and the libraries ldd lists,
// each at the path ldd prints.
func addDynamic(ctx context.Context, s *initramfs.Archive, prog string) error {
	if err := s.AddFile(prog, prog, 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "ldd", prog).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", prog, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var lib string
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>":
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0]
		}
		if lib == "" || s.Has(lib) {
			continue
		}
		if err := s.AddFile(lib, lib, 0o755); err != nil {
			return err
		}
	}
	return nil
}
