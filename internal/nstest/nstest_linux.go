package nstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const prefix = "wpnet"

// Bridge is the bridge's name in the fabric namespace.
const Bridge = "pub"

// Require skips t unless namespaces can be built: root, ip (iproute2), and
// not -short.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespace test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespace test skipped: needs root; run as root, e.g. sudo -E go test -run TestIntegration ./net/...")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network namespace test skipped: ip not found (apt-get install iproute2)")
	}
}

// RequireCommand skips t unless name is on PATH, naming the Debian package.
func RequireCommand(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not found: apt-get install %s (scripts/deps.sh does)", name, pkg)
	}
}

// Rig is one fabric namespace with a bridge and the namespaces on it.
type Rig struct {
	// Prefix starts every namespace name; Fabric holds the bridge.
	Prefix, Fabric string

	t         testing.TB
	mu        sync.Mutex
	netns     []string
	procs     []*proc
	closeOnce sync.Once
	closeErr  error
}

var seq struct {
	sync.Mutex
	n int
}

// New builds an empty rig: the fabric namespace and its bridge. It skips t
// when it cannot run here; Close runs at t's cleanup.
func New(t testing.TB) *Rig {
	t.Helper()
	Require(t)
	Sweep()
	seq.Lock()
	seq.n++
	pfx := fmt.Sprintf("%s%dx%d", prefix, os.Getpid(), seq.n)
	seq.Unlock()
	r := &Rig{Prefix: pfx, Fabric: pfx + "-fab", t: t}
	register(r)
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("nstest: close: %v", err)
		}
	})
	if err := r.addNetns(r.Fabric); err != nil {
		t.Fatalf("nstest: %v", err)
	}
	// No STP and no snooping: a port forwards at once, multicast floods.
	if err := IPBatch(r.Fabric, "link set lo up",
		"link add "+Bridge+" type bridge stp_state 0 mcast_snooping 0", "link set "+Bridge+" up"); err != nil {
		t.Fatalf("nstest: %v", err)
	}
	return r
}

func (r *Rig) addNetns(name string) error {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	r.mu.Lock()
	r.netns = append(r.netns, name)
	r.mu.Unlock()
	return nil
}

// NS is one namespace on the rig's bridge, with eth0 up.
type NS struct {
	// Name is the namespace's name (ip netns); Port the fabric end of its veth.
	Name, Port string
	rig        *Rig
}

// Node adds namespace <prefix>-<name> with eth0 on the bridge (its fabric
// end is named name), lo and eth0 up and addrs ("10.77.0.1/24",
// "fd77::1/64") on eth0; IPv6 addresses skip DAD (nodad).
func (r *Rig) Node(name string, addrs ...string) *NS {
	r.t.Helper()
	n := &NS{Name: r.Prefix + "-" + name, Port: name, rig: r}
	if err := r.addNetns(n.Name); err != nil {
		r.t.Fatalf("nstest: %v", err)
	}
	if err := IPBatch(r.Fabric,
		fmt.Sprintf("link add name %s type veth peer name eth0 netns %s", name, n.Name),
		fmt.Sprintf("link set dev %s master %s up", name, Bridge)); err != nil {
		r.t.Fatalf("nstest: %v", err)
	}
	cmds := []string{"link set lo up"}
	for _, a := range addrs {
		c := "addr add " + a + " dev eth0"
		if strings.Contains(a, ":") {
			c += " nodad"
		}
		cmds = append(cmds, c)
	}
	cmds = append(cmds, "link set eth0 up")
	if err := IPBatch(n.Name, cmds...); err != nil {
		r.t.Fatalf("nstest: %v", err)
	}
	return n
}

// SetPort sets the fabric end of a namespace's veth up or down: down, both
// ends lose carrier, like a pulled cable.
func (r *Rig) SetPort(port string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return IPBatch(r.Fabric, fmt.Sprintf("link set dev %s %s", port, state))
}

// IPBatch runs ip commands in namespace ns.
func IPBatch(ns string, cmds ...string) error {
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -n %s -batch (%s): %v: %s", ns, strings.Join(cmds, "; "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Do runs f on an OS thread moved into the namespace; the thread exits
// afterwards instead of going back to the scheduler. Sockets and netlink
// handles f opens stay in the namespace and may be used from any goroutine.
//
// Never the process's main thread: Go does not end it when a locked
// goroutine exits but parks it, so the process itself would stay in the
// namespace (and ip netns pids would list it).
func (n *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	work := func() {
		// No UnlockOSThread: the thread dies with this goroutine.
		h, err := netns.GetFromName(n.Name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", n.Name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		errc <- f()
	}
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			work()
			return
		}
		// On the main thread: hold it while another goroutine locks a
		// thread of its own, which therefore is not this one.
		locked := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(locked)
			work()
		}()
		<-locked
		runtime.UnlockOSThread() // unchanged: fine to give back
	}()
	return <-errc
}

// Handle is a netlink handle in the namespace, opened on a Do thread (not
// with netlink.NewHandleAt, which switches a thread there and back);
// closed at the test's cleanup.
func (n *NS) Handle() *netlink.Handle {
	n.rig.t.Helper()
	var h *netlink.Handle
	if err := n.Do(func() (err error) { h, err = netlink.NewHandle(unix.NETLINK_ROUTE); return err }); err != nil {
		n.rig.t.Fatalf("nstest: netlink handle in %s: %v", n.Name, err)
	}
	n.rig.t.Cleanup(h.Close)
	return h
}

// MAC is eth0's hardware address.
func (n *NS) MAC() net.HardwareAddr {
	n.rig.t.Helper()
	l, err := n.Handle().LinkByName("eth0")
	if err != nil {
		n.rig.t.Fatalf("nstest: eth0 in %s: %v", n.Name, err)
	}
	return l.Attrs().HardwareAddr
}

// Interface is eth0 as a net.Interface (looked up in the namespace).
func (n *NS) Interface() *net.Interface {
	n.rig.t.Helper()
	var ifi *net.Interface
	if err := n.Do(func() (err error) { ifi, err = net.InterfaceByName("eth0"); return err }); err != nil {
		n.rig.t.Fatalf("nstest: eth0 in %s: %v", n.Name, err)
	}
	return ifi
}

// Run runs argv in the namespace and returns its combined output.
func (n *NS) Run(ctx context.Context, argv ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, argv...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("in %s: %s: %w: %s", n.Name, strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Start starts argv in the namespace in the background, output to the
// files given (nil: discarded); Close kills it.
//
// The child gets SIGKILL when the OS thread that forked it exits
// (PR_SET_PDEATHSIG), and Go ends the threads that Do moved into a
// namespace: so the fork happens on a thread of its own, locked until the
// child has exited.
func (n *NS) Start(stdout, stderr *os.File, argv ...string) (*exec.Cmd, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, argv...)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// This thread's namespace was never changed: it may go back.
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("in %s: start %s: %w", n.Name, strings.Join(argv, " "), err)
	}
	n.rig.mu.Lock()
	n.rig.procs = append(n.rig.procs, p)
	n.rig.mu.Unlock()
	return cmd, nil
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returned
}

// Close kills the processes started, deletes every namespace (and with
// them the bridge and veths). Idempotent.
func (r *Rig) Close() error {
	r.closeOnce.Do(func() {
		unregister(r)
		r.mu.Lock()
		procs, names := r.procs, r.netns
		r.procs, r.netns = nil, nil
		r.mu.Unlock()
		for _, p := range procs {
			p.cmd.Process.Kill()
			<-p.done
		}
		var errs []error
		for i := len(names) - 1; i >= 0; i-- {
			if err := removeNetns(names[i]); err != nil {
				errs = append(errs, err)
			}
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

// removeNetns kills whatever still runs in namespace ns (only ever one of
// ours) and deletes it.
func removeNetns(ns string) error {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") {
		return fmt.Errorf("ip netns delete %s: %v: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// Sweep deletes the namespaces of rigs whose process is gone.
func Sweep() {
	ents, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "x")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		removeNetns(filepath.Base(e.Name()))
	}
}

// WaitFor polls cond every 2 ms until it holds, fails, or timeout passes.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Open rigs, closed on SIGINT or SIGTERM before the signal takes its course.
var live struct {
	sync.Mutex
	once sync.Once
	set  map[*Rig]bool
}

func register(r *Rig) {
	live.Lock()
	defer live.Unlock()
	if live.set == nil {
		live.set = map[*Rig]bool{}
	}
	live.set[r] = true
	live.once.Do(func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			s := <-sig
			live.Lock()
			var rigs []*Rig
			for r := range live.set {
				rigs = append(rigs, r)
			}
			live.Unlock()
			fmt.Fprintf(os.Stderr, "nstest: %v: closing %d rig(s)\n", s, len(rigs))
			for _, r := range rigs {
				r.Close()
			}
			signal.Reset(s)
			syscall.Kill(os.Getpid(), s.(syscall.Signal))
		}()
	})
}

func unregister(r *Rig) {
	live.Lock()
	defer live.Unlock()
	delete(live.set, r)
}
