package boot

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MountBasics mounts /proc, /sys, /dev, /run and /tmp and makes /var/log
// and /dev/shm. A filesystem already mounted there is kept.
func MountBasics() error {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
		err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID, "")
		if err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	for _, d := range []string{"/var/log", "/dev/shm"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	return nil
}

// ReadCmdline reads the kernel command line's settings.
func ReadCmdline() (Settings, error) {
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return Settings{}, fmt.Errorf("read kernel command line: %w", err)
	}
	return ParseCmdline(string(raw))
}

// SetHostname sets the kernel's host name.
func SetHostname(name string) error {
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("set hostname %s: %w", name, err)
	}
	return nil
}

// LoadModules loads the modules the list file (ModuleOrder,
// ModuleOrderLate) names, in its order; a missing list loads nothing. It
// returns one error per module that failed.
func LoadModules(log *slog.Logger, list string) []error {
	f, err := os.Open(list)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return []error{fmt.Errorf("open module list: %w", err)}
	}
	defer f.Close()
	var errs []error
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || strings.HasPrefix(name, "#") {
			continue
		}
		if err := loadModule(filepath.Join(ModuleDir, name)); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Debug("loaded module", "name", name)
	}
	return errs
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", path, os.NewSyscallError("finit_module", err))
	}
	return nil
}

// SetupNet brings lo up, then for each wanted interface waits (until
// deadline) for the NIC with its MAC, names it as asked, gives it its
// address and brings it up.
func SetupNet(want []Interface, deadline time.Time) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network setup: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	if err := ifUp(fd, "lo"); err != nil {
		return err
	}
	byMAC := func() (map[string]string, error) {
		ifs, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", err)
		}
		m := make(map[string]string)
		for _, i := range ifs {
			m[i.HardwareAddr.String()] = i.Name
		}
		return m, nil
	}
	var have map[string]string
	for {
		have, err = byMAC()
		if err != nil {
			return err
		}
		var missing []string
		for _, w := range want {
			if _, ok := have[w.MAC.String()]; !ok {
				missing = append(missing, w.Name+" ("+w.MAC.String()+")")
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("network setup: %d of %d NICs did not appear: %s", len(missing), len(want), strings.Join(missing, ", "))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Rename in two steps so that swapping eth0 and eth1 works.
	for i, w := range want {
		cur := have[w.MAC.String()]
		if cur == w.Name {
			continue
		}
		tmp := fmt.Sprintf("wptmp%d", i)
		if err := ifRename(fd, cur, tmp); err != nil {
			return err
		}
		have[w.MAC.String()] = tmp
	}
	for _, w := range want {
		if cur := have[w.MAC.String()]; cur != w.Name {
			if err := ifRename(fd, cur, w.Name); err != nil {
				return err
			}
		}
		if err := ifAddr(fd, w.Name, w.Addr); err != nil {
			return err
		}
		if err := ifUp(fd, w.Name); err != nil {
			return err
		}
	}
	return nil
}

func ifUp(fd int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring %s up: %w", name, os.NewSyscallError("ioctl SIOCGIFFLAGS", err))
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring %s up: %w", name, os.NewSyscallError("ioctl SIOCSIFFLAGS", err))
	}
	return nil
}

func ifAddr(fd int, name string, p netip.Prefix) error {
	if !p.Addr().Is4() {
		return fmt.Errorf("address %s on %s: only IPv4 is supported here", p, name)
	}
	set := func(req uint, ip []byte) error {
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		if err := ifr.SetInet4Addr(ip); err != nil {
			return err
		}
		return unix.IoctlIfreq(fd, req, ifr)
	}
	a := p.Addr().As4()
	if err := set(unix.SIOCSIFADDR, a[:]); err != nil {
		return fmt.Errorf("address %s on %s: %w", p, name, os.NewSyscallError("ioctl SIOCSIFADDR", err))
	}
	mask := net.CIDRMask(p.Bits(), 32)
	if err := set(unix.SIOCSIFNETMASK, mask); err != nil {
		return fmt.Errorf("netmask %s on %s: %w", p, name, os.NewSyscallError("ioctl SIOCSIFNETMASK", err))
	}
	return nil
}

func ifRename(fd int, from, to string) error {
	var ifr [unix.IFNAMSIZ + 24]byte // struct ifreq: name, then ifr_newname in the union
	if len(from) >= unix.IFNAMSIZ || len(to) >= unix.IFNAMSIZ {
		return fmt.Errorf("rename %s to %s: name too long", from, to)
	}
	copy(ifr[:], from)
	copy(ifr[unix.IFNAMSIZ:], to)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCSIFNAME, uintptr(unsafe.Pointer(&ifr[0]))); errno != 0 {
		return fmt.Errorf("rename %s to %s: %w", from, to, os.NewSyscallError("ioctl SIOCSIFNAME", errno))
	}
	return nil
}

// WaitSCSIDisks waits until n SCSI generic devices exist, each with its
// block device.
func WaitSCSIDisks(sysfs string, n int, deadline time.Time) error {
	for {
		ready := 0
		sgs, _ := os.ReadDir(filepath.Join(sysfs, "class/scsi_generic"))
		for _, e := range sgs {
			if b, err := os.ReadDir(filepath.Join(sysfs, "class/scsi_generic", e.Name(), "device/block")); err == nil && len(b) > 0 {
				ready++
			}
		}
		if ready >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d disks appeared", ready, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Uptime is the seconds since the kernel started.
func Uptime() float64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
