package systemdrig

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/internal/onsignal"
	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// prefix starts every rig's name (netns.Unique: wpsd<pid>x<n>).
const prefix = "wpsd"

// marker is the init argument naming the rig (for Sweep).
const marker = "wolfpack.rig="

// propagateDir is where nspawn keeps a directory per container.
const propagateDir = "/run/systemd/nspawn/propagate"

// HaltWait bounds the container's orderly halt in Close.
const HaltWait = 5 * time.Second

// Bind is a host directory or file bound read-only into the container.
type Bind struct{ Host, Container string }

// Config configures Start.
type Config struct {
	// UnitDir is bound onto the container's /etc/systemd/system: the
	// units the test provides. "" makes an empty one in Dir.
	UnitDir string
	// Binds are bound read-only (the test's binaries).
	Binds []Bind
	// StartTimeout bounds the boot (default 30 s).
	StartTimeout time.Duration
	// Logger (nil: discard).
	Logger *slog.Logger
}

// Rig is one running container.
type Rig struct {
	// Name is the machine's name and hostname (wpsd<pid>x<n>).
	Name string
	// Dir is the rig's own directory: machine-id, console.log.
	Dir string
	// UnitDir is the host directory bound onto /etc/systemd/system.
	UnitDir string
	// Leader is the host pid of the container's init (systemd).
	Leader int

	log       *slog.Logger
	cmd       *exec.Cmd
	exited    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Require skips t unless a container can be booted here: not -short,
// root, systemd-nspawn and systemd.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("systemdrig: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("systemdrig: needs root (systemd-nspawn); run as root, e.g. sudo -E go test -run TestIntegration ./...")
	}
	if _, err := exec.LookPath("systemd-nspawn"); err != nil {
		t.Skip("systemdrig: systemd-nspawn not found: apt-get install systemd-container (scripts/deps.sh does)")
	}
	if _, err := os.Stat("/usr/lib/systemd/systemd"); err != nil {
		t.Skip("systemdrig: /usr/lib/systemd/systemd not found: apt-get install systemd")
	}
}

// New boots a container for t (skipping t when it cannot run here) and
// closes it at t's cleanup, logging the console's tail if t failed.
func New(t testing.TB, cfg Config) *Rig {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("systemdrig %s: console:\n%s", r.Name, r.Console())
		}
		if err := r.Close(); err != nil {
			t.Errorf("systemdrig: %v", err)
		}
	})
	return r
}

// Start boots the container and waits until its systemd is up. On an
// error, what was started is removed again.
func Start(ctx context.Context, cfg Config) (*Rig, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	Sweep(cfg.Logger)
	name := netns.Unique(prefix)
	dir, err := os.MkdirTemp("", name+"-")
	if err != nil {
		return nil, fmt.Errorf("systemdrig: %w", err)
	}
	r := &Rig{Name: name, Dir: dir, UnitDir: cfg.UnitDir, log: cfg.Logger.With("rig", name), exited: make(chan struct{})}
	if err := r.start(ctx, cfg); err != nil {
		err = fmt.Errorf("systemdrig %s: %w", name, err)
		if cerr := r.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return r, nil
}

func (r *Rig) start(ctx context.Context, cfg Config) error {
	if r.UnitDir == "" {
		r.UnitDir = filepath.Join(r.Dir, "units")
		if err := os.Mkdir(r.UnitDir, 0o755); err != nil {
			return err
		}
	}
	id := make([]byte, 16)
	rand.Read(id)
	machineID := filepath.Join(r.Dir, "machine-id")
	if err := os.WriteFile(machineID, []byte(hex.EncodeToString(id)+"\n"), 0o444); err != nil {
		return err
	}
	console, err := os.Create(filepath.Join(r.Dir, "console.log"))
	if err != nil {
		return err
	}
	defer console.Close()
	args := []string{"-D", "/", "--volatile=yes", "-b", "--register=no", "--keep-unit", "--private-network",
		"-M", r.Name, "--console=pipe", "--quiet",
		"--bind=" + r.UnitDir + ":/etc/systemd/system", "--bind=" + machineID + ":/etc/machine-id"}
	for _, b := range cfg.Binds {
		if strings.ContainsAny(b.Host+b.Container, ":,") || !filepath.IsAbs(b.Host) || !filepath.IsAbs(b.Container) {
			return fmt.Errorf("bind %q -> %q: want absolute paths without ':' or ','", b.Host, b.Container)
		}
		args = append(args, "--bind-ro="+b.Host+":"+b.Container)
	}
	args = append(args, "systemd.firstboot=off", "systemd.unit=basic.target",
		"systemd.mask=systemd-machine-id-commit.service", marker+r.Name)
	r.cmd = exec.Command("systemd-nspawn", args...)
	r.cmd.Stdout, r.cmd.Stderr = console, console
	// SIGTERM, not SIGKILL: nspawn halts the container on it, where a
	// killed nspawn would leave the container's init running.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	t0 := time.Now()
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("start systemd-nspawn: %w", err)
	}
	onsignal.Register(r, onsignal.Kind{Package: "systemdrig", Noun: "container"})
	go func() {
		r.cmd.Wait()
		close(r.exited)
	}()
	r.log.Info("booting", "nspawn_pid", r.cmd.Process.Pid, "dir", r.Dir)

	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	state := ""
	for {
		if r.Leader == 0 {
			r.Leader = r.findLeader()
		}
		if r.Leader != 0 {
			out, _ := exec.CommandContext(ctx, "nsenter", r.Enter("systemctl", "is-system-running")...).Output()
			state = strings.TrimSpace(string(out))
			if state == "running" || state == "degraded" {
				break
			}
		}
		select {
		case <-r.exited:
			return fmt.Errorf("systemd-nspawn exited during the boot (%v); console:\n%s", r.cmd.ProcessState, r.Console())
		case <-ctx.Done():
			return fmt.Errorf("systemd not up within %v (is-system-running: %q); console:\n%s", cfg.StartTimeout, state, r.Console())
		case <-tick.C:
		}
	}
	if state == "degraded" {
		out, _ := r.Systemctl(ctx, "--failed", "--no-legend", "--plain")
		r.log.Warn("booted degraded", "failed_units", strings.TrimSpace(out))
	}
	r.log.Info("booted", "state", state, "leader", r.Leader, "took", time.Since(t0))
	return nil
}

// findLeader returns the host pid of the container's init: a process
// other than nspawn whose command line carries the rig's marker.
func (r *Rig) findLeader() int {
	for _, p := range markedProcs() {
		if p.name == r.Name && p.pid != r.cmd.Process.Pid && strings.HasSuffix(p.argv0, "/systemd") {
			return p.pid
		}
	}
	return 0
}

type markedProc struct {
	pid         int
	name, argv0 string
}

// markedProcs lists the processes whose command line carries a rig's
// marker: nspawn and the containers' inits.
func markedProcs() []markedProc {
	ents, _ := os.ReadDir("/proc")
	var ps []markedProc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		for _, a := range args[1:] {
			if n, ok := strings.CutPrefix(a, marker); ok && strings.HasPrefix(n, prefix) {
				ps = append(ps, markedProc{pid: pid, name: n, argv0: args[0]})
			}
		}
	}
	return ps
}

// Enter returns the arguments of nsenter that run args in the container's
// namespaces (mount, pid, UTS, IPC, network).
func (r *Rig) Enter(args ...string) []string {
	return append([]string{"--target", strconv.Itoa(r.Leader), "--mount", "--pid", "--uts", "--ipc", "--net", "--"}, args...)
}

// Systemctl runs systemctl in the container and returns its output.
func (r *Rig) Systemctl(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "nsenter", r.Enter(append([]string{"systemctl"}, args...)...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Proc is a process of the container.
type Proc struct {
	HostPID, PID int // in the host's pid namespace and in the container's
	Cmdline      string
}

// Procs lists the container's processes.
func (r *Rig) Procs() ([]Proc, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", r.Leader))
	if err != nil {
		return nil, fmt.Errorf("the container's pid namespace: %w", err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var ps []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if n, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err != nil || n != ns {
			continue
		}
		status, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		p := Proc{HostPID: pid}
		for _, l := range strings.Split(string(status), "\n") {
			if f, ok := strings.CutPrefix(l, "NSpid:"); ok {
				fs := strings.Fields(f)
				p.PID, _ = strconv.Atoi(fs[len(fs)-1])
			}
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		p.Cmdline = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		ps = append(ps, p)
	}
	return ps, nil
}

// HostPID returns the host pid of the container's process pid.
func (r *Rig) HostPID(pid int) (int, error) {
	ps, err := r.Procs()
	if err != nil {
		return 0, err
	}
	for _, p := range ps {
		if p.PID == pid {
			return p.HostPID, nil
		}
	}
	return 0, fmt.Errorf("no process %d in container %s", pid, r.Name)
}

// Console returns what the container wrote to its console.
func (r *Rig) Console() string {
	b, err := os.ReadFile(filepath.Join(r.Dir, "console.log"))
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// Close halts the container (see the package comment) and removes what
// the rig made. It returns an error if anything is left.
func (r *Rig) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.close() })
	return r.closeErr
}

func (r *Rig) close() error {
	onsignal.Unregister(r)
	t0 := time.Now()
	var errs []error
	if r.cmd != nil && r.cmd.Process != nil {
		pid := r.cmd.Process.Pid
		// Halt, then terminate at once, then kill.
		for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGTERM, syscall.SIGKILL} {
			if sig == syscall.SIGKILL {
				r.log.Warn("nspawn did not end: SIGKILL to nspawn and the container's init")
				if r.Leader != 0 {
					syscall.Kill(r.Leader, syscall.SIGKILL)
				}
			}
			syscall.Kill(pid, sig)
			select {
			case <-r.exited:
			case <-time.After(HaltWait):
				continue
			}
			r.log.Info("container stopped", "signals", i+1, "took", time.Since(t0))
			break
		}
		select {
		case <-r.exited:
		case <-time.After(HaltWait):
			errs = append(errs, fmt.Errorf("systemd-nspawn %d did not exit after SIGKILL", pid))
		}
	}
	for _, p := range markedProcs() {
		if p.name == r.Name {
			syscall.Kill(p.pid, syscall.SIGKILL)
			errs = append(errs, fmt.Errorf("process %d (%s) of the container was left after nspawn exited; killed", p.pid, p.argv0))
		}
	}
	if err := os.RemoveAll(filepath.Join(propagateDir, r.Name)); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(r.Dir); err != nil {
		errs = append(errs, err)
	}
	r.log.Info("closed", "took", time.Since(t0))
	return errors.Join(errs...)
}

// Sweep kills the containers of rigs whose process is gone and removes
// their directories (a run killed before its cleanup). Start calls it.
func Sweep(log *slog.Logger) {
	for _, p := range markedProcs() {
		if netns.DeadOwner(p.name, prefix) {
			log.Info("sweeping a container of a dead run", "name", p.name, "pid", p.pid, "argv0", p.argv0)
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
	for _, dir := range []string{os.TempDir(), propagateDir} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			n, _, _ := strings.Cut(e.Name(), "-")
			if e.IsDir() && netns.DeadOwner(n, prefix) {
				log.Info("sweeping the directory of a dead run", "dir", filepath.Join(dir, e.Name()))
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}
}
