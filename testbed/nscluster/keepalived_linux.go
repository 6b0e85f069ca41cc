package nscluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// Keepalived configures one keepalived instance (Node.StartKeepalived):
// a single VRRP instance that holds VIP on the node's public interface
// (eth0), as keepalived users configure a floating address. Every
// instance starts in state BACKUP with nopreempt, so a node that comes
// back does not take the address from the master (Wolfpack's groups do
// not fail back by default either); of two nodes started together the
// one with the higher address becomes the master.
type Keepalived struct {
	// Version is the VRRP version, 2 or 3.
	Version int
	// Advert is advert_int: whole seconds (1..255 s) for VRRPv2, a
	// multiple of 10 ms (10 ms..40.95 s) for VRRPv3.
	Advert time.Duration
	// VIP is the virtual address and its prefix length.
	VIP netip.Prefix
	// RouterID is virtual_router_id, 1..255; zero means 51.
	RouterID int
	// Priority is the instance's priority, 1..254; zero means 100.
	Priority int
	// RTPriority, if not 0, is vrrp_rt_priority (1..99): keepalived's
	// VRRP process at SCHED_RR, as clusterd runs by default.
	RTPriority int
}

// KeepalivedBinary is the keepalived the rig runs (Debian's package,
// scripts/deps.sh).
const KeepalivedBinary = "keepalived"

// RequireKeepalived skips t unless keepalived is installed.
func RequireKeepalived(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath(KeepalivedBinary); err != nil {
		t.Skipf("keepalived not installed (scripts/deps.sh installs it): %v", err)
	}
}

// conf renders the configuration file, or says what is wrong with k.
func (k Keepalived) conf(node int) (string, error) {
	if k.RouterID == 0 {
		k.RouterID = 51
	}
	if k.Priority == 0 {
		k.Priority = 100
	}
	var advert string
	switch k.Version {
	case 2:
		if k.Advert < time.Second || k.Advert > 255*time.Second || k.Advert%time.Second != 0 {
			return "", fmt.Errorf("nscluster: keepalived: VRRPv2 advert interval %v: want whole seconds, 1s..255s", k.Advert)
		}
		advert = strconv.Itoa(int(k.Advert / time.Second))
	case 3:
		if k.Advert < 10*time.Millisecond || k.Advert > 40950*time.Millisecond || k.Advert%(10*time.Millisecond) != 0 {
			return "", fmt.Errorf("nscluster: keepalived: VRRPv3 advert interval %v: want a multiple of 10ms, 10ms..40.95s", k.Advert)
		}
		advert = strconv.FormatFloat(k.Advert.Seconds(), 'f', -1, 64)
	default:
		return "", fmt.Errorf("nscluster: keepalived: VRRP version %d: want 2 or 3", k.Version)
	}
	if !k.VIP.IsValid() || !k.VIP.Addr().Is4() {
		return "", fmt.Errorf("nscluster: keepalived: virtual address %v: want an IPv4 prefix", k.VIP)
	}
	if k.RouterID < 1 || k.RouterID > 255 {
		return "", fmt.Errorf("nscluster: keepalived: virtual_router_id %d: want 1..255", k.RouterID)
	}
	if k.Priority < 1 || k.Priority > 254 {
		return "", fmt.Errorf("nscluster: keepalived: priority %d: want 1..254", k.Priority)
	}
	if k.RTPriority < 0 || k.RTPriority > 99 {
		return "", fmt.Errorf("nscluster: keepalived: vrrp_rt_priority %d: want 1..99, or 0 for none", k.RTPriority)
	}
	rt := ""
	if k.RTPriority > 0 {
		rt = fmt.Sprintf("\tvrrp_rt_priority %d\n", k.RTPriority)
	}
	return fmt.Sprintf(`global_defs {
	router_id node%d
	vrrp_version %d
%s}

vrrp_instance VI_1 {
	state BACKUP
	nopreempt
	interface eth0
	virtual_router_id %d
	priority %d
	advert_int %s
	virtual_ipaddress {
		%s dev eth0
	}
}
`, node, k.Version, rt, k.RouterID, k.Priority, advert, k.VIP), nil
}

// KeepalivedProc is a keepalived running in a node's namespace: the
// parent process (run with --dont-fork) and its VRRP child.
type KeepalivedProc struct {
	Node    int
	cmd     *exec.Cmd
	done    chan struct{}
	LogFile string
}

// StartKeepalived starts keepalived (VRRP only) in the node's namespace
// with the configuration k, its own pid files and its log (to the
// console, appended to <Dir>/node<N>-keepalived.log). Crash kills it with
// everything else in the namespace; Close kills it.
func (n *Node) StartKeepalived(k Keepalived) (*KeepalivedProc, error) {
	conf, err := k.conf(n.ID)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(n.c.Dir, fmt.Sprintf("keepalived-node%d", n.ID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("nscluster: node %d: keepalived: %w", n.ID, err)
	}
	// A crashed instance leaves its pid files behind, naming processes
	// that may linger as zombies until the rig reaps them; keepalived
	// would refuse to start ("daemon is already running"). A rebooted
	// machine's /run is empty: so is this.
	for _, f := range []string{"keepalived.pid", "vrrp.pid", "checkers.pid"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("nscluster: node %d: keepalived: %w", n.ID, err)
		}
	}
	cf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("nscluster: node %d: keepalived: %w", n.ID, err)
	}
	logFile := filepath.Join(n.c.Dir, fmt.Sprintf("node%d-keepalived.log", n.ID))
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("nscluster: node %d: keepalived: %w", n.ID, err)
	}
	cmd := netns.Command(context.Background(), n.Netns, KeepalivedBinary,
		"--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp", "--dont-respawn",
		"--use-file", cf, "--pid", filepath.Join(dir, "keepalived.pid"),
		"--vrrp_pid", filepath.Join(dir, "vrrp.pid"), "--checkers_pid", filepath.Join(dir, "checkers.pid"))
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	n.c.mu.Lock()
	if n.c.closed {
		n.c.mu.Unlock()
		f.Close()
		return nil, errors.New("nscluster: rig closed")
	}
	if err := cmd.Start(); err != nil {
		n.c.mu.Unlock()
		f.Close()
		return nil, fmt.Errorf("nscluster: node %d: start keepalived: %w", n.ID, err)
	}
	p := &KeepalivedProc{Node: n.ID, cmd: cmd, done: make(chan struct{}), LogFile: logFile}
	n.c.closers = append(n.c.closers, p.kill)
	n.c.mu.Unlock()
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	n.c.log.Info("keepalived started", "node", n.ID, "pid", cmd.Process.Pid, "vrrp_version", k.Version, "advert", k.Advert)
	return p, nil
}

// Pid is the keepalived parent's pid (ip netns exec execs it).
func (p *KeepalivedProc) Pid() int { return p.cmd.Process.Pid }

// Term sends SIGTERM to the parent: keepalived's planned stop, in which
// a master sends an advertisement with priority 0 (the backup takes over
// after its skew time instead of the master-down interval) and removes
// the address.
func (p *KeepalivedProc) Term() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("nscluster: node %d: keepalived: SIGTERM: %w", p.Node, err)
	}
	return nil
}

// Wait waits for keepalived's parent to exit.
func (p *KeepalivedProc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nscluster: node %d: waiting for keepalived to exit: %w\n%s", p.Node, ctx.Err(), tail(p.LogFile, 20))
	}
}

// kill ends the process if it still runs (Close).
func (p *KeepalivedProc) kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.cmd.Process.Kill()
	<-p.done
	return nil
}

// LogTail returns the last n lines of keepalived's log.
func (p *KeepalivedProc) LogTail(n int) string { return strings.TrimSpace(tail(p.LogFile, n)) }
