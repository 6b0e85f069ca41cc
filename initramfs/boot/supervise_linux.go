package boot

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Supervisor runs a program and starts it again when it exits, as
// clusterd's systemd unit does (Restart=on-failure,
// RestartPreventExitStatus=2 4): exit 0 and the NoRestart codes end the
// supervision; any other exit, or a signal, is followed by a new start
// after a backoff that doubles from MinBackoff to MaxBackoff and starts
// over once a run lasted ResetAfter.
type Supervisor struct {
	Log       *slog.Logger
	Argv      []string // Argv[0] is the program's absolute path
	Env       []string
	Output    io.Writer // the program's stdout and stderr
	NoRestart []int

	MinBackoff, MaxBackoff, ResetAfter time.Duration // default 1 s, 30 s, 60 s

	// OnStart, if set, is called with each new process's pid.
	OnStart func(pid int)
}

// Run supervises until the program exits with 0 or a NoRestart code, which
// it returns, or until ctx ends: then it sends SIGTERM, waits for the
// program and returns ctx's error.
func (s *Supervisor) Run(ctx context.Context) (int, error) {
	if len(s.Argv) == 0 {
		return -1, fmt.Errorf("supervise: no program")
	}
	minB, maxB, reset := cmpOr(s.MinBackoff, time.Second), cmpOr(s.MaxBackoff, 30*time.Second), cmpOr(s.ResetAfter, time.Minute)
	backoff := minB
	for run := 1; ; run++ {
		started := time.Now()
		pid, done, err := s.start()
		if err != nil {
			s.Log.Error("start failed", "argv", s.Argv, "run", run, "err", err)
		} else {
			s.Log.Info("started", "pid", pid, "run", run)
			if s.OnStart != nil {
				s.OnStart(pid)
			}
			var ws unix.WaitStatus
			select {
			case ws = <-done:
			case <-ctx.Done():
				_ = unix.Kill(pid, unix.SIGTERM)
				<-done
				return -1, ctx.Err()
			}
			ran := time.Since(started)
			switch {
			case ws.Signaled():
				s.Log.Warn("killed", "pid", pid, "signal", ws.Signal().String(), "ran", ran.Round(time.Millisecond))
			case ws.ExitStatus() == 0 || slices.Contains(s.NoRestart, ws.ExitStatus()):
				s.Log.Warn("exited, not restarting", "pid", pid, "exit", ws.ExitStatus(), "ran", ran.Round(time.Millisecond))
				return ws.ExitStatus(), nil
			default:
				s.Log.Warn("exited", "pid", pid, "exit", ws.ExitStatus(), "ran", ran.Round(time.Millisecond))
			}
			if ran >= reset {
				backoff = minB
			}
		}
		s.Log.Info("restarting", "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return -1, ctx.Err()
		}
		backoff = min(2*backoff, maxB)
	}
}

func (s *Supervisor) start() (int, <-chan unix.WaitStatus, error) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer null.Close()
	out := s.Output
	if out == nil {
		out = io.Discard
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, nil, fmt.Errorf("output pipe: %w", err)
	}
	defer w.Close()
	pid, done, err := ProcessReaper().Start(s.Argv[0], s.Argv, &syscall.ProcAttr{
		Dir: "/", Env: s.Env, Files: []uintptr{null.Fd(), w.Fd(), w.Fd()},
		Sys: &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		r.Close()
		return 0, nil, err
	}
	go func() {
		_, _ = io.Copy(out, r)
		r.Close()
	}()
	return pid, done, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
