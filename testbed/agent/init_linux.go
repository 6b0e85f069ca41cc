package agent

import (
	"bufio"
	"context"
	"encoding/json"
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

// ModuleOrder names the file in the image that lists the kernel modules under
// ModuleDir to load, one file name a line, in load order.
const (
	ModuleDir   = "/lib/modules"
	ModuleOrder = "/lib/modules/load.order"
)

// Interface is one NIC the host asks for on the kernel command line:
// wolfpack.if=<name>,<mac>,<addr/len>.
type Interface struct {
	Name string
	MAC  net.HardwareAddr
	Addr netip.Prefix
}

// String formats the interface as the wolfpack.if= value.
func (i Interface) String() string { return i.Name + "," + i.MAC.String() + "," + i.Addr.String() }

// BootConfig is what the host passes on the kernel command line.
type BootConfig struct {
	Hostname   string      // wolfpack.hostname=
	Interfaces []Interface // wolfpack.if= (repeated)
	Disks      int         // wolfpack.disks=: wait for this many SCSI generic devices
	Port       string      // wolfpack.port=: the protocol serial port, /dev/ttyS1 by default
}

// ParseCmdline reads the wolfpack.* parameters of a kernel command line.
func ParseCmdline(cmdline string) (BootConfig, error) {
	cfg := BootConfig{Port: "/dev/ttyS1"}
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "wolfpack.hostname":
			cfg.Hostname = v
		case "wolfpack.port":
			cfg.Port = v
		case "wolfpack.disks":
			n, err := strconv.Atoi(v)
			if err != nil {
				return cfg, fmt.Errorf("parse %s: %w", f, err)
			}
			cfg.Disks = n
		case "wolfpack.if":
			parts := strings.Split(v, ",")
			if len(parts) != 3 {
				return cfg, fmt.Errorf("parse %s: want name,mac,addr/len", f)
			}
			mac, err := net.ParseMAC(parts[1])
			if err != nil {
				return cfg, fmt.Errorf("parse %s: %w", f, err)
			}
			addr, err := netip.ParsePrefix(parts[2])
			if err != nil {
				return cfg, fmt.Errorf("parse %s: %w", f, err)
			}
			cfg.Interfaces = append(cfg.Interfaces, Interface{Name: parts[0], MAC: mac, Addr: addr})
		}
	}
	return cfg, nil
}

// Main is the agent's init: it prepares the guest and serves the host on the
// protocol port until that fails. It returns only on a fatal error.
func Main(ctx context.Context, log *slog.Logger) error {
	start := time.Now()
	var warnings []string
	warn := func(err error) {
		log.Warn(err.Error())
		warnings = append(warnings, err.Error())
	}
	if err := mountBasics(); err != nil {
		return err
	}
	_ = os.Setenv("PATH", defaultPath)
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read kernel command line: %w", err)
	}
	cfg, err := ParseCmdline(string(raw))
	if err != nil {
		return err
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			warn(fmt.Errorf("set hostname: %w", err))
		}
	}
	for _, err := range loadModules(log) {
		warn(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	if err := setupNet(cfg.Interfaces, deadline); err != nil {
		warn(err)
	}
	if err := waitDisks(cfg.Disks, deadline); err != nil {
		warn(err)
	}
	port, err := OpenPort(cfg.Port)
	if err != nil {
		return err
	}
	defer port.Close()
	hello := Hello{Ready: true, Hostname: cfg.Hostname, Uptime: uptime(), Warnings: warnings}
	b, _ := json.Marshal(hello)
	if _, err := port.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write hello to %s: %w", cfg.Port, err)
	}
	log.Info("ready", "port", cfg.Port, "setup", time.Since(start).Round(time.Millisecond), "uptime", hello.Uptime)
	return NewServer(log).Serve(ctx, port, port)
}

func mountBasics() error {
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

func loadModules(log *slog.Logger) []error {
	f, err := os.Open(ModuleOrder)
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

// setupNet brings lo up, then for each wanted interface waits for the NIC with
// its MAC, names it as asked, gives it its address and brings it up.
func setupNet(want []Interface, deadline time.Time) error {
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
		missing := 0
		for _, w := range want {
			if _, ok := have[w.MAC.String()]; !ok {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("network setup: %d of %d NICs did not appear", missing, len(want))
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

// waitDisks waits until n SCSI generic devices exist, each with its block device.
func waitDisks(n int, deadline time.Time) error {
	for {
		disks, err := ListDisks("/sys")
		if err != nil {
			return err
		}
		ready := 0
		for _, d := range disks {
			if d.Block != "" {
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

// OpenPort opens a serial port in raw mode with its input flushed.
func OpenPort(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open protocol port: %w", err)
	}
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raw mode on %s: %w", path, os.NewSyscallError("ioctl TCGETS", err))
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CRTSCTS | unix.CBAUD
	t.Cflag |= unix.CS8 | unix.CLOCAL | unix.CREAD | unix.B115200
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		f.Close()
		return nil, fmt.Errorf("raw mode on %s: %w", path, os.NewSyscallError("ioctl TCSETS", err))
	}
	if err := unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH); err != nil {
		f.Close()
		return nil, fmt.Errorf("flush %s: %w", path, os.NewSyscallError("ioctl TCFLSH", err))
	}
	return f, nil
}

func uptime() float64 {
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
