package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wolfpack-ha/wolfpack/testbed/internal/onsignal"
)

// Dir holds the named namespaces (ip netns add).
const Dir = "/run/netns"

// Add creates the named namespace.
func Add(ctx context.Context, name string) error {
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("create netns %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// Exists reports whether the named namespace exists.
func Exists(name string) bool {
	_, err := os.Stat(filepath.Join(Dir, name))
	return err == nil
}

// Delete kills whatever still runs in the named namespace (only ever call it
// on one of ours) and deletes it; the links in it go with it. A namespace
// that does not exist is not an error.
func Delete(name string) error {
	if !Exists(name) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput()
	if err != nil && !bytes.Contains(out, []byte("No such file")) {
		return fmt.Errorf("delete netns %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// Wrap is the argv prefix that runs a program in the named namespace; an
// empty name is the caller's own namespace (nil).
func Wrap(ns string) []string {
	if ns == "" {
		return nil
	}
	return []string{"ip", "netns", "exec", ns}
}

// Command returns a command that runs argv in the named namespace ("": the
// caller's own). Set its SysProcAttr, stdio and WaitDelay as for any
// exec.Cmd.
func Command(ctx context.Context, ns string, argv ...string) *exec.Cmd {
	argv = append(Wrap(ns), argv...)
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

// Exec runs argv in the named namespace and returns its combined output.
func Exec(ctx context.Context, ns string, argv ...string) ([]byte, error) {
	out, err := Command(ctx, ns, argv...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("in netns %s: %s: %w", ns, strings.Join(argv, " "), err)
	}
	return out, nil
}

// Do runs f in the named namespace, on a goroutine of its own that locks
// its OS thread and never unlocks it: when the goroutine ends, the runtime
// terminates the thread instead of handing a thread in another namespace
// back to the scheduler. f must do its namespace work on that goroutine
// (a goroutine f starts runs in the caller's namespace).
func Do(name string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread, on any path: the thread's namespace may have
		// changed.
		fd, err := unix.Open(filepath.Join(Dir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			done <- fmt.Errorf("enter netns %s: %w", name, os.NewSyscallError("setns", err))
			return
		}
		done <- f()
	}()
	return <-done
}

// Visit runs f in the named namespace as Do does, but then moves the
// thread back to the caller's namespace and hands it back to the
// scheduler; only if that fails does the thread die locked, as Do's
// always does. Use it in a process that starts children with
// PR_SET_PDEATHSIG: the signal fires when the thread that forked the child
// exits, and the goroutine Do starts often runs on the very thread of the
// goroutine that called it (blocked waiting for it), so Do's ending kills
// the children that goroutine started before (a rig's daemons, tgtd).
func Visit(name string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open this thread's netns: %w", err)
			return
		}
		defer unix.Close(home)
		fd, err := unix.Open(filepath.Join(Dir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter netns %s: %w", name, os.NewSyscallError("setns", err))
			return
		}
		err = f()
		if unix.Setns(home, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread dies locked, as Do's
		done <- err
	}()
	return <-done
}

// Script is a list of ip(8) commands for one namespace, run in one
// `ip -batch` process.
type Script struct {
	ns   string
	cmds []string
}

// In starts a script for the named namespace ("": the caller's own).
func In(ns string) *Script { return &Script{ns: ns} }

// Add appends one ip command (without the leading "ip").
func (s *Script) Add(format string, args ...any) *Script {
	s.cmds = append(s.cmds, fmt.Sprintf(format, args...))
	return s
}

// Bridge creates bridge name, up. No STP and no multicast snooping: a port
// moved between bridges forwards at once.
func (s *Script) Bridge(name string) *Script {
	return s.Add("link add %s type bridge stp_state 0 mcast_snooping 0", name).Add("link set %s up", name)
}

// Tap creates the persistent tap name (no packet information header, with
// a virtio-net header, as QEMU's -netdev tap wants it) on bridge, up.
func (s *Script) Tap(name, bridge string) *Script {
	return s.Add("tuntap add dev %s mode tap vnet_hdr", name).Add("link set %s master %s up", name, bridge)
}

// Veth creates a veth pair: end port here, on bridge and up, and its peer
// ifname in namespace peerNS (left down: bring it up there with Iface).
func (s *Script) Veth(port, bridge, peerNS, ifname string) *Script {
	return s.Add("link add %s type veth peer name %s netns %s", port, ifname, peerNS).Add("link set %s master %s up", port, bridge)
}

// Iface gives dev the addresses and brings it up.
func (s *Script) Iface(dev string, addrs ...netip.Prefix) *Script {
	for _, a := range addrs {
		s.Add("addr add %s dev %s", a, dev)
	}
	return s.Add("link set %s up", dev)
}

// Run runs the script; it stops at the first command that fails.
func (s *Script) Run(ctx context.Context) error {
	if len(s.cmds) == 0 {
		return nil
	}
	argv := []string{"-batch", "-"}
	if s.ns != "" {
		argv = append([]string{"-n", s.ns}, argv...)
	}
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.Stdin = strings.NewReader(strings.Join(s.cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		where := s.ns
		if where == "" {
			where = "the host namespace"
		}
		return fmt.Errorf("ip -batch in %s: %w: %s", where, err, bytes.TrimSpace(out))
	}
	return nil
}

// Links lists the links of the caller's namespace. The kernel interrupts
// a dump when links change under it (another rig starting or stopping);
// netlink then returns a possibly incomplete list with ErrDumpInterrupted,
// and the cure is to dump again.
func Links() ([]netlink.Link, error) {
	var err error
	for range 20 {
		var links []netlink.Link
		if links, err = netlink.LinkList(); err == nil {
			return links, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("list links: %w", err)
}

// LinksWithPrefix lists the names of the caller's namespace's links that
// start with prefix.
func LinksWithPrefix(prefix string) ([]string, error) {
	links, err := Links()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			names = append(names, l.Attrs().Name)
		}
	}
	return names, nil
}

// DeleteLinks deletes every link of the caller's namespace whose name
// starts with prefix: taps and veths first, then the bridges they were on.
func DeleteLinks(prefix string) error {
	links, err := Links()
	if err != nil {
		return err
	}
	var errs []error
	for _, bridges := range []bool{false, true} {
		for _, l := range links {
			name := l.Attrs().Name
			if !strings.HasPrefix(name, prefix) || (l.Type() == "bridge") != bridges {
				continue
			}
			if err := netlink.LinkDel(l); err != nil && !errors.Is(err, os.ErrNotExist) {
				if _, lerr := netlink.LinkByName(name); lerr == nil { // still there
					errs = append(errs, fmt.Errorf("delete link %s: %w", name, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Set is the namespaces one rig created; Close deletes them all.
type Set struct {
	mu     sync.Mutex
	names  []string
	closed bool
}

// NewSet returns an empty set.
func NewSet() *Set { return &Set{} }

// CloseOnSignal registers the set to be closed on SIGINT and SIGTERM, so
// that an interrupted test leaves no namespace behind. A rig whose own
// closer (registered in the same way) closes the set does not call it:
// that closer decides the order, e.g. stopping tgtd before the namespace
// it runs in goes.
func (s *Set) CloseOnSignal() *Set {
	onsignal.Register(s, onsignal.Kind{Package: "netns", Noun: "namespace set"})
	return s
}

// Add creates the named namespace and adds it to the set.
func (s *Set) Add(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("create netns %s: set closed", name)
	}
	if err := Add(ctx, name); err != nil {
		return err
	}
	s.names = append(s.names, name)
	return nil
}

// Names lists the set's namespaces in the order they were added.
func (s *Set) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.names...)
}

// Close deletes every namespace of the set (Delete: what runs in one is
// killed). It may be called again, and from any goroutine.
func (s *Set) Close() error {
	onsignal.Unregister(s)
	s.mu.Lock()
	names := s.names
	s.names, s.closed = nil, true
	s.mu.Unlock()
	var errs []error
	for _, ns := range names {
		if err := Delete(ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var seq struct {
	sync.Mutex
	n int
}

// Unique returns a fresh prefix "<base><pid>x<n>", unique among this
// process's calls and, through the pid, among live processes.
func Unique(base string) string {
	seq.Lock()
	defer seq.Unlock()
	seq.n++
	return fmt.Sprintf("%s%dx%d", base, os.Getpid(), seq.n)
}

// DeadOwner reports whether name starts with a prefix Unique(base) made in
// a process that is gone (never this one).
func DeadOwner(name, base string) bool {
	rest, ok := strings.CutPrefix(name, base)
	if !ok {
		return false
	}
	pidStr, _, ok := strings.Cut(rest, "x")
	pid, err := strconv.Atoi(pidStr)
	if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// SweepDead deletes the namespaces named by Unique(base) in processes that
// are gone (a run killed before its cleanup) and returns their names.
func SweepDead(log *slog.Logger, base string) []string {
	ents, err := os.ReadDir(Dir)
	if err != nil {
		return nil
	}
	var swept []string
	for _, e := range ents {
		if !DeadOwner(e.Name(), base) {
			continue
		}
		log.Info("sweeping a namespace of a dead run", "netns", e.Name())
		if err := Delete(e.Name()); err != nil {
			log.Warn("sweep incomplete", "netns", e.Name(), "err", err)
			continue
		}
		swept = append(swept, e.Name())
	}
	return swept
}

// Owner is a process, told apart from a later one with the same pid by its
// start time.
type Owner struct {
	Pid int `json:"owner_pid"`
	// Start is field 22 of /proc/<pid>/stat (start time in clock ticks).
	Start string `json:"owner_start"`
}

// Self is the calling process.
func Self() Owner { return Owner{Pid: os.Getpid(), Start: ProcStart(os.Getpid())} }

// Alive reports whether the process still runs (a recorded start time
// that does not match means the pid was reused).
func (o Owner) Alive() bool {
	return o.Start != "" && ProcStart(o.Pid) == o.Start
}

// ProcStart is field 22 of /proc/<pid>/stat (start time in clock ticks),
// or "" if the process is gone.
func ProcStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// Pids lists the processes in the named namespace (as `ip netns pids`
// does, without a child process: every /proc/<pid>/ns/net that is the
// namespace's file), never the calling process.
func Pids(name string) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join(Dir, name), &want); err != nil {
		return nil, fmt.Errorf("netns %s: %w", name, os.NewSyscallError("stat", err))
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue // gone, or a kernel thread
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			out = append(out, pid)
		}
	}
	return out, nil
}
