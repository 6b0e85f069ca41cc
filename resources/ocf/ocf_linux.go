package ocf

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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/rtsched"
	"github.com/wolfpack-ha/wolfpack/resources"
	"golang.org/x/sys/unix"
)

// DefaultRoot is OCF_ROOT as Debian's resource-agents installs it.
const DefaultRoot = "/usr/lib/ocf"

// BasePath is the PATH the agents run with.
const BasePath = "/usr/sbin:/usr/bin:/sbin:/bin"

const (
	// terminateWait bounds how long Terminate waits for the stop it
	// runs; the stop goes on in the background after that.
	terminateWait = 2 * time.Second
	// exitWait bounds the wait for a killed agent to exit (a process in
	// uninterruptible sleep exits only when it wakes).
	exitWait = 5 * time.Second
	// outputGrace: once the agent exited, how long its output pipes are
	// read for what is left (a daemon it started may hold them open).
	outputGrace = 50 * time.Millisecond
	// Output logged per stream and action, and the longest line kept.
	maxLines, maxLine = 100, 2048
	// metadataTimeout bounds a meta-data action.
	metadataTimeout = 10 * time.Second
)

// Type is the OCF adapter: a resources.Type named "ocf" (db.AgentOCF).
type Type struct {
	root  string
	stops stops
}

// NewType returns the adapter for the agents under root (OCF_ROOT;
// DefaultRoot if "").
func NewType(root string) *Type {
	if root == "" {
		root = DefaultRoot
	}
	return &Type{root: root}
}

// Name is "ocf".
func (*Type) Name() string { return db.AgentOCF }

// agentPath is the agent's executable: ROOT/resource.d/PROVIDER/TYPE.
func agentPath(root, agent string) (prov, typ, path string, err error) {
	prov, typ, ok := strings.Cut(agent, ":")
	if !ok || db.ValidName(prov) != nil || db.ValidName(typ) != nil {
		return "", "", "", fmt.Errorf("ocf agent %q is not PROVIDER:TYPE", agent)
	}
	return prov, typ, filepath.Join(root, "resource.d", prov, typ), nil
}

// installed checks that path is an executable file.
func installed(agent, path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("ocf:%s is not installed on this node: %w", agent, err)
	case !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0:
		return fmt.Errorf("ocf:%s is not installed on this node: %s is not an executable file (%v)", agent, path, fi.Mode())
	}
	return nil
}

// baseEnv is the environment of every action of the agent.
func baseEnv(root, resource, prov, typ string) []string {
	return []string{
		"PATH=" + BasePath,
		"OCF_ROOT=" + root,
		"OCF_RA_VERSION_MAJOR=1",
		"OCF_RA_VERSION_MINOR=1",
		"OCF_EXIT_REASON_PREFIX=" + reasonPrefix,
		"OCF_RESOURCE_INSTANCE=" + resource,
		"OCF_RESOURCE_TYPE=" + typ,
		"OCF_RESOURCE_PROVIDER=" + prov,
	}
}

// LoadMetadata runs agent's (PROVIDER:TYPE under root) meta-data action
// and decodes it; ResourceTypeProps then gives the resourcetype object.
func LoadMetadata(ctx context.Context, root, agent string) (*Metadata, error) {
	if root == "" {
		root = DefaultRoot
	}
	prov, typ, path, err := agentPath(root, agent)
	if err != nil {
		return nil, err
	}
	if err := installed(agent, path); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "meta-data")
	cmd.Env, cmd.Dir = baseEnv(root, typ, prov, typ), "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	err = rtsched.Start(cmd, nil) // at normal scheduling if the caller is real-time
	if err == nil {
		err = cmd.Wait()
	}
	out := stdout.Bytes()
	if err != nil {
		return nil, fmt.Errorf("ocf:%s meta-data: %w: %s", agent, err, strings.TrimSpace(stderr.String()))
	}
	if len(strings.TrimSpace(string(out))) == 0 {
		return nil, fmt.Errorf("ocf:%s: %w", agent, errNoMetadata)
	}
	m, err := ParseMetadata(out)
	if err != nil {
		return nil, fmt.Errorf("ocf:%s: %w", agent, err)
	}
	return m, nil
}

// Open prepares resource name of an ocf resourcetype: props carry the
// resourcetype's properties (resourcetype.ocf_agent, .ocf_actions), the
// agent's parameters (param.NAME) and the node's name (node.name); other
// properties are ignored. An agent missing on this node is a hard error.
func (t *Type) Open(name string, props resources.Props, log *slog.Logger) (resources.Instance, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	agent := props.Str(resources.PropResourceTypePrefix+"ocf_agent", "")
	if agent == "" {
		return nil, resources.Fatal(fmt.Errorf("ocf %s: no %socf_agent: its resourcetype names no agent", name, resources.PropResourceTypePrefix))
	}
	prov, typ, path, err := agentPath(t.root, agent)
	if err != nil {
		return nil, resources.Fatal(fmt.Errorf("ocf %s: %w", name, err))
	}
	if err := installed(agent, path); err != nil {
		return nil, resources.Hard(fmt.Errorf("ocf %s: %w", name, err))
	}
	i := &instance{t: t, name: name, agent: agent, path: path, log: log, running: map[*proc]struct{}{},
		actions: map[string]db.OCFAction{}}
	var monitors []db.OCFAction
	for _, s := range props.List(resources.PropResourceTypePrefix + "ocf_actions") {
		a, err := db.ParseOCFAction(s)
		if err != nil {
			return nil, resources.Fatal(fmt.Errorf("ocf %s: %socf_actions: %v", name, resources.PropResourceTypePrefix, err))
		}
		if a.Name == "monitor" {
			monitors = append(monitors, a)
		} else if _, ok := i.actions[a.Name]; !ok {
			i.actions[a.Name] = a
		}
	}
	// LooksAlive runs the shallowest monitor, IsAlive the deepest.
	i.looks = db.OCFAction{Name: "monitor", TimeoutMs: defaultTimeout.Milliseconds()}
	i.is = i.looks
	if len(monitors) > 0 {
		slices.SortStableFunc(monitors, func(a, b db.OCFAction) int { return int(a.Depth - b.Depth) })
		i.looks, i.is = monitors[0], monitors[len(monitors)-1]
	}
	for _, m := range []*db.OCFAction{&i.looks, &i.is} {
		if m.IntervalMs == 0 {
			m.IntervalMs = defaultMonitorEvery.Milliseconds()
		}
	}
	i.env = baseEnv(t.root, name, prov, typ)
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p, ok := strings.CutPrefix(k, db.OCFParamPrefix)
		if !ok {
			continue
		}
		v := props[k]
		var s string
		switch v.Type {
		case db.TypeString:
			s = v.Str
		case db.TypeInt:
			s = strconv.FormatInt(v.Int, 10)
		case db.TypeBool:
			s = strconv.FormatBool(v.Bool) // "true", "false": ocf_is_true reads them
		default:
			return nil, resources.Fatal(fmt.Errorf("ocf %s: parameter %s of ocf:%s: a %v, not a string, integer or boolean", name, p, agent, v.Type))
		}
		if strings.ContainsRune(s, 0) || strings.ContainsAny(p, "=\x00") {
			return nil, resources.Fatal(fmt.Errorf("ocf %s: parameter %s of ocf:%s holds a NUL or '='", name, p, agent))
		}
		i.env = append(i.env, "OCF_RESKEY_"+p+"="+s)
	}
	if n := props.Str(resources.PropNodeName, ""); n != "" {
		i.env = append(i.env, "OCF_RESKEY_CRM_meta_on_node="+n)
	}
	return i, nil
}

// instance is one resource of an OCF agent.
type instance struct {
	t                 *Type
	name, agent, path string
	env               []string                // every action's environment but the call's own
	actions           map[string]db.OCFAction // advertised, but monitor
	looks, is         db.OCFAction            // the monitors LooksAlive and IsAlive run
	log               *slog.Logger

	mu      sync.Mutex
	epoch   uint64 // bumped by Terminate: older calls' agents are killed
	running map[*proc]struct{}
}

// proc is one running agent process, the leader of its own process
// group. It is reaped only after it was removed from running (under mu),
// so a signal to -pid from there can only reach its group.
type proc struct {
	pid       int
	terminate bool // Terminate's stop: never killed by another Terminate
	killed    bool
}

// call is one run of an action.
type call struct {
	action    string // the agent's action
	what      string // as logs and errors name it ("probe")
	spec      db.OCFAction
	env       []string // the call's own (OCF_CHECK_LEVEL)
	epoch     uint64
	stop      bool // survives resmon (no parent-death signal)
	terminate bool
}

func (i *instance) currentEpoch() uint64 {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.epoch
}

// timeoutOf is an action's advertised timeout (Pacemaker's default of
// 20 s when it advertises none).
func timeoutOf(a db.OCFAction) time.Duration {
	if a.TimeoutMs <= 0 {
		return defaultTimeout
	}
	return time.Duration(a.TimeoutMs) * time.Millisecond
}

// spec is the advertised action name (its defaults if it is not).
func (i *instance) spec(name string) db.OCFAction {
	if a, ok := i.actions[name]; ok {
		return a
	}
	return db.OCFAction{Name: name}
}

// run runs one action: the agent in its own process group with the OCF
// environment, killed with its whole group at the action's timeout or
// when ctx ends, whichever is first. Its stderr is logged at info and
// its stdout at debug (as Pacemaker does), bounded, and the last
// "ocf-exit-reason:" line of stderr is the reason. It returns the
// outcome and the timeout it ran under.
func (i *instance) run(ctx context.Context, c call) (outcome, time.Duration) {
	timeout := timeoutOf(c.spec)
	if dl, ok := ctx.Deadline(); ok {
		if r := time.Until(dl); r < timeout {
			timeout = max(r, time.Millisecond)
		}
	}
	interval := int64(0)
	if c.action == "monitor" {
		interval = c.spec.IntervalMs
	}
	env := append(slices.Clip(i.env),
		"OCF_RESKEY_CRM_meta_timeout="+strconv.FormatInt(timeout.Milliseconds(), 10),
		"OCF_RESKEY_CRM_meta_interval="+strconv.FormatInt(interval, 10))
	env = append(env, c.env...)
	start := time.Now()
	o, p, cmd, outs := i.start(c, env)
	if p == nil {
		i.logOutcome(c, o)
		return o, timeout
	}
	exited := make(chan struct{})
	go func() {
		var info unix.Siginfo
		for unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
		close(exited)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		o.timedOut = true
	case <-ctx.Done():
		o.timedOut = true
	}
	if o.timedOut {
		syscall.Kill(-p.pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(exitWait):
			i.log.Error("ocf agent did not exit within 5 s of SIGKILL; reaped when it does", "action", c.what, "pid", p.pid)
			go func() {
				<-exited
				i.reap(p, cmd, outs)
			}()
			o.rc, o.took = rcNone, time.Since(start)
			i.logOutcome(c, o)
			return o, timeout
		}
	}
	o.killed = i.reap(p, cmd, outs)
	o.took = time.Since(start)
	o.rc = rcNone
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && !o.timedOut && !o.killed {
		switch {
		case ws.Exited():
			o.rc = ws.ExitStatus()
		case ws.Signaled():
			o.signal = ws.Signal()
		}
	}
	o.reason = outs.reason
	i.logOutcome(c, o)
	return o, timeout
}

// output is what the readers of one run collect.
type output struct {
	out, err *os.File // the read ends
	wg       sync.WaitGroup
	reason   string // set by the stderr reader; read after wg.Wait
}

// start starts c's agent unless a Terminate came since c.epoch. p is nil
// when nothing runs (o says why).
func (i *instance) start(c call, env []string) (o outcome, p *proc, cmd *exec.Cmd, outs *output) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return outcome{rc: rcNone, err: fmt.Errorf("pipe: %w", err)}, nil, nil, nil
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return outcome{rc: rcNone, err: fmt.Errorf("pipe: %w", err)}, nil, nil, nil
	}
	cmd = exec.Command(i.path, c.action)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, "/", outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !c.stop {
		// Gone with resmon (the caveat of genericapp's Online applies:
		// resmon's goroutines are never locked to a thread). A stop is
		// cleanup: it runs to its end.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	i.mu.Lock()
	if c.epoch != i.epoch {
		i.mu.Unlock()
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		return outcome{rc: rcNone, killed: true}, nil, nil, nil
	}
	err = rtsched.Start(cmd, i.log) // at normal scheduling, not resmon's
	outW.Close()
	errW.Close()
	if err != nil {
		i.mu.Unlock()
		outR.Close()
		errR.Close()
		return outcome{rc: rcNone, err: fmt.Errorf("run %s: %w", i.path, err)}, nil, nil, nil
	}
	p = &proc{pid: cmd.Process.Pid, terminate: c.terminate}
	i.running[p] = struct{}{}
	i.mu.Unlock()
	outs = &output{out: outR, err: errR}
	outs.wg.Add(2)
	go i.lines(outs, outR, c.what, "stdout", p.pid)
	go i.lines(outs, errR, c.what, "stderr", p.pid)
	return outcome{}, p, cmd, outs
}

// reap forgets p, reaps its leader (which has exited) and collects the
// rest of its output; it returns whether Terminate killed it.
func (i *instance) reap(p *proc, cmd *exec.Cmd, outs *output) bool {
	i.mu.Lock()
	killed := p.killed
	delete(i.running, p)
	i.mu.Unlock()
	cmd.Wait()
	// What the agent wrote is in the pipes; a daemon it started may
	// hold them open, so the readers stop at a deadline.
	dl := time.Now().Add(outputGrace)
	outs.out.SetReadDeadline(dl)
	outs.err.SetReadDeadline(dl)
	outs.wg.Wait()
	outs.out.Close()
	outs.err.Close()
	return killed
}

// lines logs one stream of an agent, a line at a time, up to maxLines
// lines of up to maxLine bytes; stderr's last exit reason is kept.
func (i *instance) lines(outs *output, r io.Reader, what, stream string, pid int) {
	defer outs.wg.Done()
	lvl := slog.LevelInfo
	if stream == "stdout" {
		lvl = slog.LevelDebug
	}
	br := bufio.NewReaderSize(r, 4096)
	n, dropped := 0, 0
	var line []byte
	for {
		frag, isPrefix, err := br.ReadLine()
		if len(line) < maxLine {
			line = append(line, frag[:min(len(frag), maxLine-len(line))]...)
		}
		if err != nil && len(line) == 0 {
			break
		}
		if isPrefix && err == nil {
			continue
		}
		s := string(line)
		line = line[:0]
		if stream == "stderr" {
			if k := strings.LastIndex(s, reasonPrefix); k >= 0 {
				outs.reason = strings.TrimSpace(s[k+len(reasonPrefix):])
			}
		}
		if n < maxLines {
			i.log.Log(context.Background(), lvl, "ocf agent output", "action", what, "stream", stream, "pid", pid, "output", s)
			n++
		} else {
			dropped++
		}
		if err != nil {
			break
		}
	}
	if dropped > 0 {
		i.log.Warn("ocf agent output truncated", "action", what, "stream", stream, "pid", pid, "lines_dropped", dropped)
	}
}

func (i *instance) logOutcome(c call, o outcome) {
	args := []any{"action", c.what, "rc", o.rc, "took", o.took}
	switch {
	case o.err != nil:
		args = append(args, "err", o.err)
	case o.timedOut:
		args = append(args, "timed_out", true)
	case o.killed:
		args = append(args, "killed", true)
	case o.signal != 0:
		args = append(args, "signal", o.signal.String())
	}
	if o.reason != "" {
		args = append(args, "reason", o.reason)
	}
	lvl := slog.LevelDebug
	if c.action != "monitor" || o.rc != rcOK {
		lvl = slog.LevelInfo
	}
	if o.rc == rcDegraded || o.rc == rcDegradedPromoted {
		lvl = slog.LevelWarn // running, but more likely to fail soon
	}
	i.log.Log(context.Background(), lvl, "ocf action done", args...)
}

// action runs an advertised (or, with the defaults, an unadvertised)
// action that is not a monitor.
func (i *instance) action(ctx context.Context, name string, epoch uint64) (outcome, time.Duration) {
	return i.run(ctx, call{action: name, what: name, spec: i.spec(name), epoch: epoch, stop: name == "stop"})
}

// monitor runs monitor m (a probe: at interval 0) and reads its result.
func (i *instance) monitor(ctx context.Context, m db.OCFAction, probe bool, epoch uint64) (state, error) {
	c := call{action: "monitor", what: "monitor", spec: m, epoch: epoch}
	if probe {
		c.what, c.spec.IntervalMs = "probe", 0
	}
	if m.Depth > 0 {
		d := strconv.FormatInt(m.Depth, 10)
		// Pacemaker passes an operation's OCF_CHECK_LEVEL as a
		// parameter (ocf-shellfuncs reads OCF_RESKEY_OCF_CHECK_LEVEL);
		// the API names the variable itself.
		c.env = []string{"OCF_CHECK_LEVEL=" + d, "OCF_RESKEY_OCF_CHECK_LEVEL=" + d}
	}
	o, timeout := i.run(ctx, c)
	switch s := monitorState(o, probe); s {
	case stateFailed:
		return s, failure(c.what, o, timeout, !probe)
	case stateStopped:
		return s, failure(c.what, o, timeout, !probe) // soft: 7, or a probe's masked 2 or 5
	default:
		return s, nil
	}
}

// Online runs validate-all (when advertised), a probe (monitor at
// interval 0), start unless the probe found it running, and a monitor.
// A terminate's stop of this resource that is still running is waited
// for first.
func (i *instance) Online(ctx context.Context) error {
	epoch := i.currentEpoch()
	if err := i.t.stops.wait(ctx, i.name); err != nil {
		return fmt.Errorf("ocf %s: waiting for the stop of an earlier terminate: %w", i.name, err)
	}
	if _, ok := i.actions["validate-all"]; ok {
		if o, timeout := i.action(ctx, "validate-all", epoch); !succeeded("validate-all", o) {
			return failure("validate-all", o, timeout, false)
		}
	}
	switch s, err := i.monitor(ctx, i.looks, true, epoch); s {
	case stateFailed:
		return err
	case stateRunning:
		i.log.Info("ocf probe: already running; not started again", "agent", i.agent)
	default:
		if o, timeout := i.action(ctx, "start", epoch); !succeeded("start", o) {
			return failure("start", o, timeout, false)
		}
	}
	if _, err := i.monitor(ctx, i.looks, false, epoch); err != nil {
		return err
	}
	return nil
}

// Offline runs stop; a stop that finds it not running (7) succeeded.
func (i *instance) Offline(ctx context.Context) error {
	if o, timeout := i.action(ctx, "stop", i.currentEpoch()); !succeeded("stop", o) {
		return failure("stop", o, timeout, false)
	}
	return nil
}

// Terminate kills the process group of every action running (but a
// stop an earlier Terminate started), then runs stop under its own
// timeout and waits for it at most terminateWait (2 s): a slower stop
// goes on in the background, survives resmon, and the resource's next
// Online waits for it.
func (i *instance) Terminate() {
	i.mu.Lock()
	i.epoch++
	epoch := i.epoch
	for p := range i.running {
		if !p.terminate && !p.killed {
			p.killed = true
			syscall.Kill(-p.pid, syscall.SIGKILL)
		}
	}
	done, started := i.t.stops.begin(i.name)
	i.mu.Unlock()
	if started {
		go func() {
			defer i.t.stops.end(i.name, done)
			o, timeout := i.run(context.Background(), call{action: "stop", what: "stop (terminate)", spec: i.spec("stop"),
				epoch: epoch, stop: true, terminate: true})
			if !succeeded("stop", o) {
				i.log.Error("ocf terminate: stop failed", "err", failure("stop", o, timeout, false))
			}
		}()
	}
	select {
	case <-done:
	case <-time.After(terminateWait):
		i.log.Warn("ocf terminate: stop still running; it goes on in the background", "waited", terminateWait)
	}
}

// LooksAlive runs the agent's (shallowest) monitor at its advertised
// interval (OCF_RESKEY_CRM_meta_interval) and timeout.
func (i *instance) LooksAlive() error {
	_, err := i.monitor(context.Background(), i.looks, false, i.currentEpoch())
	return err
}

// IsAlive runs the agent's deepest monitor (OCF_CHECK_LEVEL set to its
// depth), or the same monitor as LooksAlive if it advertises no depth.
func (i *instance) IsAlive(ctx context.Context) error {
	_, err := i.monitor(ctx, i.is, false, i.currentEpoch())
	return err
}

// errNoReload: the agent advertises neither reload-agent nor reload.
var errNoReload = errors.New("the agent advertises no reload action")

// Reload runs reload-agent (OCF 1.1) or else reload, whichever the agent
// advertises first in that order, to apply changed parameters without a
// restart. (resmon does not call it yet.)
func (i *instance) Reload(ctx context.Context) error {
	for _, name := range []string{"reload-agent", "reload"} {
		if _, ok := i.actions[name]; ok {
			if o, timeout := i.action(ctx, name, i.currentEpoch()); !succeeded(name, o) {
				return failure(name, o, timeout, false)
			}
			return nil
		}
	}
	return fmt.Errorf("ocf %s: reload: %w", i.name, errNoReload)
}

// Close releases nothing: an agent keeps no state in resmon. A stop that
// Terminate left running goes on.
func (i *instance) Close() {}

// stops are Terminate's stops in flight, by resource: a resource's next
// Online waits for its stop.
type stops struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// begin returns the channel closed when resource's stop ends; started
// says whether the caller must run that stop (none was running).
func (s *stops) begin(resource string) (chan struct{}, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.m[resource]; ok {
		return ch, false
	}
	if s.m == nil {
		s.m = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	s.m[resource] = ch
	return ch, true
}

func (s *stops) end(resource string, ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, resource)
	close(ch)
}

// wait waits for resource's stop, if one runs, or for ctx.
func (s *stops) wait(ctx context.Context, resource string) error {
	s.mu.Lock()
	ch := s.m[resource]
	s.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
