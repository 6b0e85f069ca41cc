package genericapp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/procgroup"
	"github.com/wolfpack-ha/wolfpack/internal/rtsched"
	"github.com/wolfpack-ha/wolfpack/resources"
	"golang.org/x/sys/unix"
)

// TypeName is the type's name in the database.
const TypeName = "generic_application"

// BasePath is the PATH of the minimal environment the command runs in.
const BasePath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultStopTimeout is stop_timeout_ms's default.
const DefaultStopTimeout = 10 * time.Second

// exitWait bounds the wait for a process group's leader to exit after
// SIGKILL (a process in uninterruptible sleep exits only when it wakes).
const exitWait = 5 * time.Second

// Type is the generic_application type.
type Type struct {
	// StateDir is where each running application's process group is
	// recorded (procgroup) so that a later resmon can kill it after a
	// crash; "" records nothing.
	StateDir string
}

// Name is "generic_application".
func (Type) Name() string { return TypeName }

// Open checks the properties: a command, an absolute directory that
// exists, NAME=value environment items, a user that exists.
func (t Type) Open(name string, props resources.Props, log *slog.Logger) (resources.Instance, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bad := func(prop, format string, args ...any) error {
		return fmt.Errorf("%s %s: property %s: %s", TypeName, name, prop, fmt.Sprintf(format, args...))
	}
	a := &app{name: name, log: log, stateDir: t.StateDir, fails: make(chan error, 1)}
	a.command = props.Str("command", "")
	if strings.TrimSpace(a.command) == "" {
		return nil, bad("command", "required")
	}
	a.check = props.Str("check_command", "")
	a.dir = props.Str("directory", "/")
	if !filepath.IsAbs(a.dir) {
		return nil, bad("directory", "%q is not an absolute path", a.dir)
	}
	if fi, err := os.Stat(a.dir); err != nil {
		return nil, bad("directory", "%v", err)
	} else if !fi.IsDir() {
		return nil, bad("directory", "%s is not a directory", a.dir)
	}
	a.env = []string{BasePath}
	for _, kv := range props.List("environment") {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\n\x00") || strings.Contains(kv, "\x00") {
			return nil, bad("environment", "%q is not NAME=value", kv)
		}
		a.env = append(a.env, kv)
	}
	if u := props.Str("user", ""); u != "" {
		cred, err := credential(u)
		if err != nil {
			return nil, bad("user", "%v", err)
		}
		a.cred = cred
	}
	a.stopTimeout = time.Duration(props.Int("stop_timeout_ms", DefaultStopTimeout.Milliseconds())) * time.Millisecond
	if a.stopTimeout <= 0 {
		return nil, bad("stop_timeout_ms", "must be positive")
	}
	if _, err := os.Stat("/bin/sh"); err != nil {
		return nil, fmt.Errorf("%s %s: /bin/sh: %w", TypeName, name, err)
	}
	return a, nil
}

// credential resolves a user name or numeric uid; a uid without a passwd
// entry runs with the group of the same number.
func credential(u string) (*syscall.Credential, error) {
	var usr *user.User
	var err error
	if _, nerr := strconv.ParseUint(u, 10, 32); nerr == nil {
		usr, err = user.LookupId(u)
		if err != nil {
			id, _ := strconv.ParseUint(u, 10, 32)
			return &syscall.Credential{Uid: uint32(id), Gid: uint32(id)}, nil
		}
	} else if usr, err = user.Lookup(u); err != nil {
		return nil, err
	}
	uid, _ := strconv.ParseUint(usr.Uid, 10, 32)
	gid, _ := strconv.ParseUint(usr.Gid, 10, 32)
	c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if gids, err := usr.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				c.Groups = append(c.Groups, uint32(n))
			}
		}
	}
	return c, nil
}

type app struct {
	name, command, check, dir, stateDir string
	env                                 []string
	cred                                *syscall.Credential
	stopTimeout                         time.Duration
	log                                 *slog.Logger
	fails                               chan error

	mu   sync.Mutex
	proc *proc // the running group; nil when none
}

// proc is one started command: its leader is pid (also the pgid). The
// leader is not reaped until its group was sent SIGKILL: as long as its
// zombie exists, its pid (the group's id) cannot be reused, so a signal to
// -pid can only reach our group.
type proc struct {
	cmd      *exec.Cmd
	pid      int
	exited   chan struct{} // the leader exited (not yet reaped)
	status   string        // how it exited; set before exited is closed
	stopping atomic.Bool   // exits from here on are not failures
	output   sync.WaitGroup
}

// Online starts the command; it is online once started.
//
// The child is in its own process group (Setpgid) and gets SIGKILL if
// resmon dies (Pdeathsig), a second line behind the state directory. The
// Go caveat: Pdeathsig fires when the *thread* that forked the child exits,
// not the process. The runtime ends a thread only when a goroutine locked
// to it (runtime.LockOSThread) exits without unlocking; resmon calls Online
// from goroutines that are never locked, so the child lives as long as
// resmon. A caller that locks its goroutine must keep it alive.
func (a *app) Online(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p := a.proc; p != nil {
		select {
		case <-p.exited:
			a.reapLocked(p)
		default:
			return nil // already running
		}
	}
	select {
	case <-a.fails: // a stale failure of an earlier run
	default:
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start %q: %w", a.command, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fmt.Errorf("start %q: %w", a.command, err)
	}
	cmd := exec.Command("/bin/sh", "-c", a.command)
	if argv, ok := directArgv(a.command, strings.TrimPrefix(BasePath, "PATH=")); ok {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	cmd.Dir, cmd.Env = a.dir, a.env
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: a.cred}
	err = rtsched.Start(cmd, a.log) // at normal scheduling, not resmon's
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return fmt.Errorf("start %q: %w", a.command, err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	a.proc = p
	p.output.Add(2)
	go a.lines(p, outR, "stdout")
	go a.lines(p, errR, "stderr")
	go a.wait(p)
	if a.stateDir != "" {
		if err := procgroup.Save(a.stateDir, a.name, p.pid); err != nil {
			a.killLocked(p)
			return fmt.Errorf("start %q: %w", a.command, err)
		}
	}
	a.log.Info("application started", "pid", p.pid, "command", a.command)
	return nil
}

// lines logs what the application writes, a line at a time.
func (a *app) lines(p *proc, r io.ReadCloser, stream string) {
	defer p.output.Done()
	defer r.Close()
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 4096), 64<<10)
	for s.Scan() {
		a.log.Info("application output", "output", s.Text(), "stream", stream, "pid", p.pid)
	}
}

// wait waits for the leader to exit without reaping it (WNOWAIT).
func (a *app) wait(p *proc) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	p.status = exitStatus(p.pid)
	close(p.exited)
	if p.stopping.Load() {
		return
	}
	err := fmt.Errorf("process %d exited (%s)", p.pid, p.status)
	a.log.Warn("application exited by itself", "pid", p.pid, "status", p.status)
	select {
	case a.fails <- err:
	default:
	}
}

// exitStatus reads a zombie's exit status (/proc/PID/stat field 52, in
// waitpid's form).
func exitStatus(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "status unknown"
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 50 {
		return "status unknown"
	}
	n, err := strconv.Atoi(f[52-3])
	if err != nil {
		return "status unknown"
	}
	ws := syscall.WaitStatus(n)
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("wait status %#x", n)
}

// killLocked sends SIGKILL to the group, waits for the leader (bounded)
// and reaps it.
func (a *app) killLocked(p *proc) {
	p.stopping.Store(true)
	start := time.Now()
	syscall.Kill(-p.pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(exitWait):
		a.log.Error("application did not exit within 5 s of SIGKILL; left unreaped", "pid", p.pid)
		return
	}
	exited := time.Since(start)
	a.reapLocked(p)
	a.log.Info("application killed", "pid", p.pid, "exited_after", exited, "reaped_after", time.Since(start))
}

// reapLocked kills what is left of the exited leader's group, then reaps
// the leader and forgets the group.
func (a *app) reapLocked(p *proc) {
	syscall.Kill(-p.pid, syscall.SIGKILL) // stragglers; the zombie leader keeps the pgid ours
	p.cmd.Wait()
	a.proc = nil
	if a.stateDir != "" {
		if err := procgroup.Remove(a.stateDir, a.name); err != nil {
			a.log.Error("state directory", "err", err)
		}
	}
}

// Offline sends SIGTERM to the group, SIGKILL after stop_timeout_ms (or
// when ctx ends), and waits for the leader; what is left of the group
// then gets SIGKILL.
func (a *app) Offline(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.proc
	if p == nil {
		return nil
	}
	p.stopping.Store(true)
	if err := syscall.Kill(-p.pid, syscall.SIGTERM); err != nil && err != syscall.ESRCH {
		a.log.Error("SIGTERM", "pid", p.pid, "err", err)
	}
	t := time.NewTimer(a.stopTimeout)
	defer t.Stop()
	select {
	case <-p.exited:
		a.log.Info("application stopped", "pid", p.pid, "status", p.status)
		a.reapLocked(p)
		return nil
	case <-t.C:
		a.log.Warn("application still running after SIGTERM: SIGKILL", "pid", p.pid, "stop_timeout", a.stopTimeout)
	case <-ctx.Done():
		a.log.Warn("offline's time is up: SIGKILL", "pid", p.pid)
	}
	a.killLocked(p)
	return nil
}

// Terminate sends SIGKILL to the group and reaps the leader. Safe while
// another method runs: it waits for the lock only as long as a start or a
// kill takes.
func (a *app) Terminate() {
	a.mu.Lock()
	p := a.proc
	if p == nil {
		a.mu.Unlock()
		return
	}
	defer a.mu.Unlock()
	a.killLocked(p)
}

// LooksAlive: the leader has not exited.
func (a *app) LooksAlive() error {
	a.mu.Lock()
	p := a.proc
	a.mu.Unlock()
	if p == nil {
		return errors.New("not running")
	}
	select {
	case <-p.exited:
		return fmt.Errorf("process %d exited (%s)", p.pid, p.status)
	default:
		return nil
	}
}

// IsAlive runs check_command (exit status 0: alive) in its own process
// group, killed when ctx ends; without one it is LooksAlive.
func (a *app) IsAlive(ctx context.Context) error {
	if err := a.LooksAlive(); err != nil || a.check == "" {
		return err
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", a.check)
	if argv, ok := directArgv(a.check, strings.TrimPrefix(BasePath, "PATH=")); ok {
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	cmd.Dir, cmd.Env = a.dir, a.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: a.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := rtsched.Start(cmd, a.log) // at normal scheduling, not resmon's
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		if msg != "" {
			return fmt.Errorf("check_command %q: %v: %s", a.check, err, msg)
		}
		return fmt.Errorf("check_command %q: %v", a.check, err)
	}
	return nil
}

// Failures reports the leader's exit (not after Offline or Terminate).
func (a *app) Failures() <-chan error { return a.fails }

// Close kills anything still running (the resource is offline).
func (a *app) Close() { a.Terminate() }
