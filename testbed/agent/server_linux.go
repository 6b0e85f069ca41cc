package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wolfpack-ha/wolfpack/initramfs/boot"
)

const (
	maxOutput   = 8 << 20  // per stream; the rest is dropped and reported
	maxLine     = 64 << 20 // longest request line
	drainOutput = 300 * time.Millisecond
	defaultPath = boot.Path
)

// Server runs requests. The zero value is not usable; call NewServer.
type Server struct {
	log    *slog.Logger
	reaper *boot.Reaper

	mu      sync.Mutex
	running map[uint64]int // request id -> process group
}

// NewServer returns a server that logs to log.
func NewServer(log *slog.Logger) *Server {
	return &Server{log: log, reaper: boot.ProcessReaper(), running: make(map[uint64]int)}
}

// Serve reads requests from r until it fails or ctx ends, runs each on its own
// goroutine and writes the replies to w, one line each.
func (s *Server) Serve(ctx context.Context, r io.Reader, w io.Writer) error {
	var wmu sync.Mutex
	reply := func(resp Response) {
		b, err := json.Marshal(resp)
		if err != nil {
			b, _ = json.Marshal(Response{Reply: resp.Reply, Exit: -1, Error: "marshal reply: " + err.Error()})
		}
		wmu.Lock()
		defer wmu.Unlock()
		if _, err := w.Write(append(b, '\n')); err != nil {
			s.log.Error("write reply", "id", resp.Reply, "err", err)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := readLine(br)
		if err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] != '{' {
			continue // noise from before the port was set up
		}
		var req Request
		if err := json.Unmarshal(line, &req); err != nil {
			s.log.Warn("bad request line", "err", err, "len", len(line))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if req.Cancel {
				s.cancel(req.ID)
				return
			}
			reply(s.handle(ctx, req))
		}()
	}
}

func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("request line longer than %d bytes", maxLine)
		}
		if !isPrefix {
			return line, nil
		}
	}
}

func (s *Server) cancel(id uint64) {
	s.mu.Lock()
	pgid, ok := s.running[id]
	s.mu.Unlock()
	if ok {
		_ = unix.Kill(-pgid, unix.SIGKILL)
	}
}

func (s *Server) handle(ctx context.Context, req Request) Response {
	resp := Response{Reply: req.ID, Exit: -1}
	if len(req.Argv) == 0 {
		resp.Error = "empty argv"
		return resp
	}
	switch req.Argv[0] {
	case BuiltinPing:
		resp.Exit = 0
		return resp
	case BuiltinClock:
		resp.Stdout = strconv.AppendInt(nil, time.Now().UnixNano(), 10)
		resp.Exit = 0
		return resp
	case BuiltinProcs:
		procs, err := ListProcs("/proc")
		if err != nil {
			resp.Error = err.Error()
			return resp
		}
		resp.Stdout, _ = json.Marshal(procs)
		resp.Exit = 0
		return resp
	case BuiltinDisks:
		disks, err := ListDisks("/sys")
		if err != nil {
			resp.Error = err.Error()
			return resp
		}
		resp.Stdout, _ = json.Marshal(disks)
		resp.Exit = 0
		return resp
	}
	if req.Background {
		return s.background(req)
	}
	return s.run(ctx, req)
}

func environ(req Request) []string {
	env := []string{"PATH=" + defaultPath, "HOME=/", "TERM=dumb"}
	return append(env, req.Env...)
}

func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	path := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in %s", file, path)
}

func (s *Server) run(ctx context.Context, req Request) Response {
	resp := Response{Reply: req.ID, Exit: -1}
	env := environ(req)
	path, err := lookPath(req.Argv[0], env)
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		resp.Error = fmt.Sprintf("pipe: %v", err)
		return resp
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		resp.Error = fmt.Sprintf("pipe: %v", err)
		return resp
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		outR.Close()
		outW.Close()
		resp.Error = fmt.Sprintf("pipe: %v", err)
		return resp
	}
	dir := req.Dir
	if dir == "" {
		dir = "/"
	}
	pid, done, err := s.reaper.Start(path, req.Argv, &syscall.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []uintptr{stdinR.Fd(), outW.Fd(), errW.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	stdinR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		stdinW.Close()
		outR.Close()
		errR.Close()
		resp.Error = fmt.Sprintf("start %s: %v", path, err)
		return resp
	}
	resp.Pid = pid
	s.mu.Lock()
	s.running[req.ID] = pid
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, req.ID)
		s.mu.Unlock()
	}()

	go func() {
		_, _ = stdinW.Write(req.Stdin)
		stdinW.Close()
	}()
	var stdout, stderr capped
	var outWG sync.WaitGroup
	outWG.Add(2)
	go func() { defer outWG.Done(); _, _ = io.Copy(&stdout, outR) }()
	go func() { defer outWG.Done(); _, _ = io.Copy(&stderr, errR) }()

	var timeout <-chan time.Time
	if req.TimeoutMS > 0 {
		t := time.NewTimer(time.Duration(req.TimeoutMS) * time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	var ws unix.WaitStatus
	timedOut := false
	select {
	case ws = <-done:
	case <-timeout:
		timedOut = true
		_ = unix.Kill(-pid, unix.SIGKILL)
		ws = <-done
	case <-ctx.Done():
		_ = unix.Kill(-pid, unix.SIGKILL)
		ws = <-done
	}
	// Programs that leave a daemon holding the pipes: take what is there soon
	// after the main process exited and stop reading.
	deadline := time.Now().Add(drainOutput)
	_ = outR.SetReadDeadline(deadline)
	_ = errR.SetReadDeadline(deadline)
	outWG.Wait()
	outR.Close()
	errR.Close()

	resp.Stdout, resp.Stderr = stdout.buf.Bytes(), stderr.buf.Bytes()
	switch {
	case ws.Exited():
		resp.Exit = ws.ExitStatus()
	case ws.Signaled():
		resp.Signal = unix.SignalName(ws.Signal())
	}
	var problems []string
	if timedOut {
		problems = append(problems, fmt.Sprintf("timed out after %d ms", req.TimeoutMS))
	}
	if stdout.dropped > 0 || stderr.dropped > 0 {
		problems = append(problems, fmt.Sprintf("output truncated (dropped %d stdout, %d stderr bytes)", stdout.dropped, stderr.dropped))
	}
	resp.Error = strings.Join(problems, "; ")
	return resp
}

// background starts a program whose output goes to a log file and replies with
// its pid without waiting for it.
func (s *Server) background(req Request) Response {
	resp := Response{Reply: req.ID, Exit: -1}
	env := environ(req)
	path, err := lookPath(req.Argv[0], env)
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	logPath := req.LogPath
	if logPath == "" {
		logPath = "/var/log/" + filepath.Base(path) + ".log"
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		resp.Error = err.Error()
		return resp
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	defer logf.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	defer null.Close()
	dir := req.Dir
	if dir == "" {
		dir = "/"
	}
	pid, done, err := s.reaper.Start(path, req.Argv, &syscall.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []uintptr{null.Fd(), logf.Fd(), logf.Fd()},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		resp.Error = fmt.Sprintf("start %s: %v", path, err)
		return resp
	}
	go func() {
		ws := <-done
		s.log.Info("background process exited", "argv", req.Argv, "pid", pid, "status", describe(ws))
	}()
	resp.Pid, resp.Exit = pid, 0
	return resp
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "signal " + unix.SignalName(ws.Signal())
	}
	return "exit " + strconv.Itoa(ws.ExitStatus())
}

// capped is a buffer that keeps the first maxOutput bytes and counts the rest.
type capped struct {
	buf     bytes.Buffer
	dropped int
}

func (c *capped) Write(p []byte) (int, error) {
	n := len(p)
	room := max(maxOutput-c.buf.Len(), 0)
	if len(p) > room {
		c.dropped += len(p) - room
		p = p[:room]
	}
	c.buf.Write(p)
	return n, nil
}

// ListDisks reports the SCSI generic devices under sysfs (root is "/sys"),
// ordered by H:C:T:L.
func ListDisks(sysfs string) ([]Disk, error) {
	entries, err := os.ReadDir(filepath.Join(sysfs, "class/scsi_generic"))
	if errors.Is(err, os.ErrNotExist) {
		return []Disk{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list scsi_generic: %w", err)
	}
	disks := []Disk{}
	for _, e := range entries {
		devDir := filepath.Join(sysfs, "class/scsi_generic", e.Name(), "device")
		target, err := os.Readlink(devDir)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", devDir, err)
		}
		d := Disk{SG: "/dev/" + e.Name()}
		if _, err := fmt.Sscanf(filepath.Base(target), "%d:%d:%d:%d", &d.Host, &d.Channel, &d.Target, &d.LUN); err != nil {
			return nil, fmt.Errorf("parse H:C:T:L of %s from %q: %w", e.Name(), target, err)
		}
		if b, err := os.ReadDir(filepath.Join(devDir, "block")); err == nil && len(b) > 0 {
			d.Block = "/dev/" + b[0].Name()
		}
		d.Vendor = readTrim(filepath.Join(devDir, "vendor"))
		d.Model = readTrim(filepath.Join(devDir, "model"))
		disks = append(disks, d)
	}
	sort.Slice(disks, func(i, j int) bool {
		a, b := disks[i], disks[j]
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		if a.Channel != b.Channel {
			return a.Channel < b.Channel
		}
		if a.Target != b.Target {
			return a.Target < b.Target
		}
		return a.LUN < b.LUN
	})
	return disks, nil
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}
