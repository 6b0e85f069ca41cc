package testbed

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/u-root/u-root/pkg/cpio"
	"github.com/wolfpack-ha/wolfpack/testbed/agent"
)

// Modules are the guest kernel modules, in load order.
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

// entry is one file of the image: a host file, literal content, a directory,
// a symlink or a device node.
type entry struct {
	path    string // in the guest, no leading slash
	src     string // host file
	data    []byte // or literal content
	mode    uint64 // permission bits
	kind    byte   // 'f' file, 'd' dir, 'l' symlink (data = target), 'c' char device
	maj, mi uint64
}

// imageSpec lists the image's contents.
type imageSpec struct{ entries []entry }

func (s *imageSpec) file(guest, host string, mode uint64) {
	s.entries = append(s.entries, entry{path: strings.TrimPrefix(guest, "/"), src: host, mode: mode, kind: 'f'})
}

func (s *imageSpec) has(guest string) bool {
	guest = strings.TrimPrefix(guest, "/")
	for _, e := range s.entries {
		if e.path == guest {
			return true
		}
	}
	return false
}

// buildImage assembles the initramfs and returns its path in the cache.
func buildImage(ctx context.Context, modDir string, nodes int, binaries []string) (string, error) {
	agentBin, err := BuildGo(ctx, "./cmd/wolfpack-agent")
	if err != nil {
		return "", fmt.Errorf("build agent: %w", err)
	}
	var s imageSpec
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "lib", "lib64", "lib/modules", "dev", "proc", "sys", "tmp", "run", "etc", "var", "var/log", "root"} {
		s.entries = append(s.entries, entry{path: d, mode: 0o755, kind: 'd'})
	}
	s.entries = append(s.entries,
		entry{path: "dev/console", mode: 0o600, kind: 'c', maj: 5, mi: 1},
		entry{path: "dev/null", mode: 0o666, kind: 'c', maj: 1, mi: 3})
	s.file("/init", agentBin, 0o755)

	mods, err := findModules(modDir, Modules)
	if err != nil {
		return "", err
	}
	var order strings.Builder
	for _, name := range Modules {
		s.file(filepath.Join(agent.ModuleDir, name+".ko"), mods[name], 0o644)
		fmt.Fprintln(&order, name+".ko")
	}
	s.entries = append(s.entries, entry{path: strings.TrimPrefix(agent.ModuleOrder, "/"), data: []byte(order.String()), mode: 0o644, kind: 'f'})

	var hosts strings.Builder
	fmt.Fprintf(&hosts, "127.0.0.1 localhost\n%s client\n", ClientAddr().Addr())
	for n := 1; n <= nodes; n++ {
		fmt.Fprintf(&hosts, "%s node%d\n", NodeAddr(0, n).Addr(), n)
	}
	s.entries = append(s.entries, entry{path: "etc/hosts", data: []byte(hosts.String()), mode: 0o644, kind: 'f'})

	for _, b := range binaries {
		if _, err := os.Stat(b); err != nil {
			return "", fmt.Errorf("extra binary: %w", err)
		}
		s.file("/bin/"+filepath.Base(b), b, 0o755)
	}
	for _, tool := range guestTools {
		if _, err := os.Stat(tool); err != nil {
			continue
		}
		if err := addDynamic(ctx, &s, tool); err != nil {
			return "", err
		}
	}
	if s.has(e2fsckPath) {
		for _, fs := range []string{"ext2", "ext3", "ext4"} {
			s.entries = append(s.entries, entry{path: "usr/sbin/fsck." + fs, data: []byte("e2fsck"), mode: 0o777, kind: 'l'})
		}
		// e2fsck looks for mounted filesystems in /etc/mtab too.
		s.entries = append(s.entries, entry{path: "etc/mtab", data: []byte("/proc/self/mounts"), mode: 0o777, kind: 'l'})
	}
	if _, err := os.Stat(busyboxPath); err == nil {
		s.file("/bin/busybox", busyboxPath, 0o755)
		out, err := exec.CommandContext(ctx, busyboxPath, "--list").Output()
		if err != nil {
			return "", fmt.Errorf("busybox --list: %w", err)
		}
		for _, applet := range strings.Fields(string(out)) {
			if applet == "busybox" || applet == "init" || applet == "linuxrc" || s.has("/bin/"+applet) {
				continue
			}
			s.entries = append(s.entries, entry{path: "bin/" + applet, data: []byte("busybox"), mode: 0o777, kind: 'l'})
		}
	}

	sum, err := s.hash()
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
	path := filepath.Join(dir, "initramfs-"+sum[:16]+".cpio.gz")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp, err := os.CreateTemp(dir, ".initramfs-*")
	if err != nil {
		return "", fmt.Errorf("create image: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := s.write(tmp); err != nil {
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

func findModules(modDir string, names []string) (map[string]string, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n+".ko"] = true
	}
	found := make(map[string]string)
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && want[d.Name()] {
			found[strings.TrimSuffix(d.Name(), ".ko")] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find kernel modules: %w", err)
	}
	for _, n := range names {
		if found[n] == "" {
			return nil, fmt.Errorf("kernel module %s.ko not found under %s", n, modDir)
		}
	}
	return found, nil
}

// addDynamic adds a dynamically linked program and the libraries ldd lists,
// each at the path ldd prints.
func addDynamic(ctx context.Context, s *imageSpec, prog string) error {
	s.file(prog, prog, 0o755)
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
		if lib == "" || s.has(lib) {
			continue
		}
		for _, dir := range parents(lib) {
			if !s.has(dir) {
				s.entries = append(s.entries, entry{path: strings.TrimPrefix(dir, "/"), mode: 0o755, kind: 'd'})
			}
		}
		s.file(lib, lib, 0o755)
	}
	return nil
}

// parents lists the directories above p, outermost first.
func parents(p string) []string {
	var dirs []string
	for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
		dirs = append([]string{d}, dirs...)
	}
	return dirs
}

// hash identifies the image by the content of everything in it.
func (s *imageSpec) hash() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "wolfpack-testbed-image v1\n")
	for _, e := range s.entries {
		fmt.Fprintf(h, "%s %c %o %d %d %d\n", e.path, e.kind, e.mode, e.maj, e.mi, len(e.data))
		h.Write(e.data)
		if e.src != "" {
			f, err := os.Open(e.src)
			if err != nil {
				return "", fmt.Errorf("hash image input: %w", err)
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return "", fmt.Errorf("hash image input %s: %w", e.src, err)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// write writes the image as a gzip-compressed newc cpio archive.
func (s *imageSpec) write(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	rw := cpio.Newc.Writer(zw)
	var ino uint64 = 1
	for _, e := range s.entries {
		info := cpio.Info{Name: e.path, Ino: ino, NLink: 1}
		ino++
		var rec cpio.Record
		switch e.kind {
		case 'd':
			info.Mode = cpio.S_IFDIR | e.mode
			info.NLink = 2
			rec = cpio.Record{ReaderAt: bytes.NewReader(nil), Info: info}
		case 'l':
			info.Mode = cpio.S_IFLNK | e.mode
			info.FileSize = uint64(len(e.data))
			rec = cpio.Record{ReaderAt: bytes.NewReader(e.data), Info: info}
		case 'c':
			info.Mode = cpio.S_IFCHR | e.mode
			info.Rmajor, info.Rminor = e.maj, e.mi
			rec = cpio.Record{ReaderAt: bytes.NewReader(nil), Info: info}
		case 'f':
			data := e.data
			if e.src != "" {
				if data, err = os.ReadFile(e.src); err != nil {
					return err
				}
			}
			info.Mode = cpio.S_IFREG | e.mode
			info.FileSize = uint64(len(data))
			rec = cpio.Record{ReaderAt: bytes.NewReader(data), Info: info}
		default:
			return fmt.Errorf("image entry %s: unknown kind %c", e.path, e.kind)
		}
		if err := rw.WriteRecord(rec); err != nil {
			return fmt.Errorf("write %s: %w", e.path, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return err
	}
	return zw.Close()
}
