package resmon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/wolfpack-ha/wolfpack/resources"
)

// Config says how clusterd starts resmon.
type Config struct {
	// Path is the resmon binary; Args its arguments (-watchdog, ...).
	Path string
	Args []string
	// Stderr receives resmon's log (nil: os.Stderr).
	Stderr io.Writer
	// Logger (nil: discard).
	Logger *slog.Logger
}

// Process is a running resmon seen from clusterd.
type Process struct {
	cmd  *exec.Cmd
	conn net.Conn
	log  *slog.Logger
	// hello
	PID   int
	Types []string

	wmu      sync.Mutex
	statuses chan resources.Status
	done     chan struct{}
	err      error
	stopOnce sync.Once
}

// Start spawns resmon with one end of a unix socketpair as its fd 3 and
// waits for its hello (bounded by ctx). resmon gets no PR_SET_PDEATHSIG: if
// clusterd dies, resmon sees the socket end and terminates the resources
// itself before it exits.
func Start(ctx context.Context, cfg Config) (*Process, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("resmon: start: %w", os.NewSyscallError("socketpair", err))
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "resmon-clusterd"), os.NewFile(uintptr(fds[1]), "resmon-resmon")
	defer theirs.Close()
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, fmt.Errorf("resmon: start: %w", err)
	}
	cmd := exec.Command(cfg.Path, cfg.Args...)
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.Stdout = cfg.Stderr
	cmd.Stderr = cfg.Stderr
	if cfg.Stderr == nil {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("resmon: start %s: %w", cfg.Path, err)
	}
	p := &Process{cmd: cmd, conn: conn, log: log, statuses: make(chan resources.Status, 1024), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	hello := make(chan Message, 1)
	go p.read(hello)
	select {
	case m := <-hello:
		p.PID, p.Types = m.PID, m.Types
		log.Info("resmon started", "pid", m.PID, "types", m.Types)
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("resmon: %s exited before its hello: %v", cfg.Path, p.err)
	case <-ctx.Done():
		p.kill()
		return nil, fmt.Errorf("resmon: no hello from %s: %w", cfg.Path, ctx.Err())
	}
}

func (p *Process) read(hello chan<- Message) {
	defer close(p.statuses)
	r := NewReader(p.conn)
	for {
		m, err := r.Read()
		if errors.Is(err, ErrProtocol) {
			p.log.Error("resmon: message refused", "err", err)
			continue
		}
		if err != nil {
			if err != io.EOF && !errors.Is(err, net.ErrClosed) {
				p.log.Warn("resmon: connection ended", "err", err)
			}
			return
		}
		switch m.Op {
		case OpHello:
			select {
			case hello <- m:
			default:
				p.log.Error("resmon: a second hello refused")
			}
		case OpState:
			p.statuses <- resources.Status{Resource: m.Resource, State: m.State, Reason: m.Reason, Class: m.Class}
		default:
			p.log.Error("resmon: message refused", "err", fmt.Errorf("%w: op %q is not resmon's to send", ErrProtocol, m.Op))
		}
	}
}

func (p *Process) send(m Message) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if _, err := p.conn.Write(b); err != nil {
		return fmt.Errorf("resmon: send %s: %w", m.Op, err)
	}
	return nil
}

// Send passes one of the failover manager's commands.
func (p *Process) Send(c resources.Command) error {
	m, err := CommandMessage(c)
	if err != nil {
		return err
	}
	return p.send(m)
}

// SetLease grants or extends the lease until untilNs, an absolute
// CLOCK_MONOTONIC time in ns (Monotonic() plus the lease's length); 0
// revokes it now. resmon terminates every resource when it passes.
func (p *Process) SetLease(untilNs int64) error {
	return p.send(Message{Op: OpLease, UntilNs: untilNs})
}

// LeaseFor is SetLease(Monotonic() + d).
func (p *Process) LeaseFor(d time.Duration) error { return p.SetLease(Monotonic() + int64(d)) }

// Statuses delivers resmon's state reports in order; closed when the
// connection ends.
func (p *Process) Statuses() <-chan resources.Status { return p.statuses }

// Done is closed when resmon has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how resmon exited (nil: status 0); valid after Done.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Stop closes the connection, upon which resmon terminates every resource
// and exits; it is killed if it has not exited when ctx ends.
func (p *Process) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() { p.conn.Close() })
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.kill()
		return fmt.Errorf("resmon: pid %d did not exit when its connection closed: killed: %w", p.cmd.Process.Pid, ctx.Err())
	}
}

func (p *Process) kill() {
	p.conn.Close()
	p.cmd.Process.Kill()
	<-p.done
}
