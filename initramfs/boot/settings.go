// Package boot is what the first process of a Wolfpack guest does before
// its real work: the boot settings (the kernel command line's wolfpack.*
// parameters and the config disk), mounts, kernel modules in order, the
// NICs, stable disk names, and a reaper that owns every wait4 of PID 1.
// cmd/wolfpack-init (the appliance's /init) and the testbed's agent
// (testbed/agent) both use it.
package boot

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Interface is one NIC to configure: wolfpack.if=<name>,<mac>,<addr/len>.
// The NIC with that MAC is renamed to name and given the address.
type Interface struct {
	Name string
	MAC  net.HardwareAddr
	Addr netip.Prefix
}

// String formats the interface as the wolfpack.if= value.
func (i Interface) String() string { return i.Name + "," + i.MAC.String() + "," + i.Addr.String() }

// ModuleOrder names the file in the image that lists the kernel modules
// under ModuleDir to load, one file name a line, in load order (the image
// builder resolves the dependencies: package initramfs); ModuleOrderLate
// lists those init loads once clusterd is started, off the boot's path.
const (
	ModuleDir       = "/lib/modules"
	ModuleOrder     = "/lib/modules/load.order"
	ModuleOrderLate = "/lib/modules/load.late"
	// Path is the PATH of the programs PID 1 starts.
	Path = "/bin:/sbin:/usr/bin:/usr/sbin"
)

// Default values of the settings.
const (
	DefaultPort     = "/dev/ttyS1"
	DefaultNodeFile = "/etc/wolfpack/node.toml"
	// ConfigSettingsFile is the file of a config disk that holds boot
	// settings (same keys as the command line) instead of a file for
	// /etc/wolfpack.
	ConfigSettingsFile = "boot.conf"
)

// Settings are the boot settings: the wolfpack.* parameters of the kernel
// command line, or the same keys in a config disk's boot.conf.
type Settings struct {
	Hostname   string      // wolfpack.hostname=
	Interfaces []Interface // wolfpack.if= (repeated)
	Disks      int         // wolfpack.disks=: wait for this many SCSI disks (with a block device)
	Port       string      // wolfpack.port=: the test agent's serial port, /dev/ttyS1 by default
	ConfigDev  string      // wolfpack.config=: the config disk (a block device); found by scanning when empty; "none": no config disk
	NodeFile   string      // wolfpack.node=: clusterd's node file, /etc/wolfpack/node.toml by default

	set map[string]bool // keys given
}

// Keys lists the settings' keys, for error messages and documentation.
var Keys = []string{"wolfpack.hostname", "wolfpack.if", "wolfpack.disks", "wolfpack.port", "wolfpack.config", "wolfpack.node"}

// ParseCmdline reads the wolfpack.* parameters of a kernel command line.
// Other parameters are the kernel's and are ignored; an unknown wolfpack.*
// key or a bad value is an error naming the parameter.
func ParseCmdline(cmdline string) (Settings, error) {
	var s Settings
	for _, f := range strings.Fields(cmdline) {
		if !strings.HasPrefix(f, "wolfpack.") {
			continue
		}
		if err := s.set1(f); err != nil {
			return s, fmt.Errorf("kernel command line: %w", err)
		}
	}
	return s.withDefaults(), nil
}

// ParseFile reads settings from a config disk's boot.conf: one key=value
// a line (the command line's keys, wolfpack. prefix optional), blank lines
// and lines starting with # ignored. Any other line is an error naming
// its number.
func ParseFile(name string, b []byte) (Settings, error) {
	var s Settings
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasPrefix(line, "wolfpack.") {
			line = "wolfpack." + line
		}
		if err := s.set1(line); err != nil {
			return s, fmt.Errorf("%s line %d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("read %s: %w", name, err)
	}
	return s.withDefaults(), nil
}

func (s *Settings) set1(f string) error {
	k, v, ok := strings.Cut(f, "=")
	if !ok || v == "" {
		return fmt.Errorf("%s: want %s=VALUE", f, k)
	}
	if s.set == nil {
		s.set = map[string]bool{}
	}
	s.set[k] = true
	switch k {
	case "wolfpack.hostname":
		if len(v) > 64 || strings.ContainsAny(v, "/ \t") {
			return fmt.Errorf("%s: not a host name", f)
		}
		s.Hostname = v
	case "wolfpack.port":
		s.Port = v
	case "wolfpack.config":
		if v != "none" && !strings.HasPrefix(v, "/dev/") {
			return fmt.Errorf("%s: want a device under /dev/ or none", f)
		}
		s.ConfigDev = v
	case "wolfpack.node":
		if !strings.HasPrefix(v, "/") {
			return fmt.Errorf("%s: want an absolute path", f)
		}
		s.NodeFile = v
	case "wolfpack.disks":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%s: want a count of disks, 0 or more", f)
		}
		s.Disks = n
	case "wolfpack.if":
		ifc, err := parseInterface(v)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		for _, o := range s.Interfaces {
			if o.Name == ifc.Name || o.MAC.String() == ifc.MAC.String() {
				return fmt.Errorf("%s: interface %s or MAC %s given twice", f, ifc.Name, ifc.MAC)
			}
		}
		s.Interfaces = append(s.Interfaces, ifc)
	default:
		return fmt.Errorf("%s: unknown parameter %s (known: %s)", f, k, strings.Join(Keys, ", "))
	}
	return nil
}

func parseInterface(v string) (Interface, error) {
	parts := strings.Split(v, ",")
	if len(parts) != 3 {
		return Interface{}, fmt.Errorf("want name,mac,addr/len, got %d fields", len(parts))
	}
	if parts[0] == "" || len(parts[0]) > 15 || strings.ContainsAny(parts[0], "/ :") {
		return Interface{}, fmt.Errorf("bad interface name %q", parts[0])
	}
	mac, err := net.ParseMAC(parts[1])
	if err != nil || len(mac) != 6 {
		return Interface{}, fmt.Errorf("bad MAC %q: want an Ethernet address like 52:54:00:12:34:56", parts[1])
	}
	addr, err := netip.ParsePrefix(parts[2])
	if err != nil {
		return Interface{}, fmt.Errorf("bad address %q: want an IPv4 address with its prefix length, like 10.0.0.1/24", parts[2])
	}
	if !addr.Addr().Is4() {
		return Interface{}, fmt.Errorf("bad address %q: only IPv4 is supported", parts[2])
	}
	return Interface{Name: parts[0], MAC: mac, Addr: addr}, nil
}

func (s Settings) withDefaults() Settings {
	if s.Port == "" {
		s.Port = DefaultPort
	}
	if s.NodeFile == "" {
		s.NodeFile = DefaultNodeFile
	}
	return s
}

// Has reports whether key (e.g. "wolfpack.if") was given.
func (s Settings) Has(key string) bool { return s.set[key] }

// Over returns the settings of s with every key that over gives replaced
// by over's value: the command line over a config disk's boot.conf. The
// interfaces are one setting: any wolfpack.if in over replaces all of s's.
func (s Settings) Over(over Settings) Settings {
	r := s
	r.set = map[string]bool{}
	for k := range s.set {
		r.set[k] = true
	}
	for k := range over.set {
		r.set[k] = true
		switch k {
		case "wolfpack.hostname":
			r.Hostname = over.Hostname
		case "wolfpack.if":
			r.Interfaces = over.Interfaces
		case "wolfpack.disks":
			r.Disks = over.Disks
		case "wolfpack.port":
			r.Port = over.Port
		case "wolfpack.config":
			r.ConfigDev = over.ConfigDev
		case "wolfpack.node":
			r.NodeFile = over.NodeFile
		}
	}
	return r.withDefaults()
}
