package resmon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/wolfpack-ha/wolfpack/resources"
	"golang.org/x/sys/unix"
)

// Options configure Serve.
type Options struct {
	// Types are the resource types hosted, by name.
	Types map[string]resources.Type
	// Watchdog is a watchdog device (/dev/watchdog) to pet while the lease
	// is valid or no resource is online; "" for none.
	Watchdog string
	// StateDir holds the records of what resmon opened (orphans.go) and
	// of generic applications' process groups (procgroup): what a previous
	// resmon left is terminated at start, and by a terminate or an online
	// of a resource not open here. "" for none.
	StateDir string
	// Logger (nil: discard).
	Logger *slog.Logger
}

// Monotonic is the CLOCK_MONOTONIC reading in ns: the clock of the lease's
// until_ns.
func Monotonic() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(os.NewSyscallError("clock_gettime CLOCK_MONOTONIC", err))
	}
	return ts.Nano()
}

// defaultPendingMs bounds an offline of a resource whose online carried no
// pending timeout (docs/resources.md's default).
const defaultPendingMs = 180000

// opClose is internal: after a lease expiry, report the resource offline
// (Reason) and close it.
const opClose = "close"

// shutdownWait bounds how long Serve waits for the resources' goroutines
// once everything is terminated (an action that ignores its context).
const shutdownWait = 2 * time.Second

type host struct {
	opt  Options
	log  *slog.Logger
	base context.Context
	out  *outbox

	mu         sync.Mutex
	leaseUntil int64         // CLOCK_MONOTONIC ns; 0: none
	leaseNew   chan struct{} // closed (and replaced) when a lease message arrives
	res        map[string]*res
	quit       chan struct{}
	workers    sync.WaitGroup
}

// res is one resource. Its worker goroutine runs its queue in order; the
// fields are guarded by host.mu.
type res struct {
	name string
	log  *slog.Logger
	wake chan struct{}

	queue  []Message
	gen    uint64             // bumped by every kill: older actions' reports are dropped
	cancel context.CancelFunc // of the running action
	inst   resources.Instance
	state  resources.State
	// terminated: killed since the last online began (the watchdog's view).
	terminated bool
	// killing counts kills' Terminate calls in flight; killed is closed
	// when it falls to 0 (nil: none ever ran). Not a sync.WaitGroup: a
	// kill may start (a second lease expiry) while a worker waits for the
	// last one, which a WaitGroup forbids.
	killing   int
	killed    chan struct{}
	pendingMs int64 // the last online's pending timeout
}

// Serve runs resmon on conn until conn ends (clusterd closed it or died) or
// ctx ends: then it terminates every resource at once and returns (nil on
// EOF). Protocol errors are logged and the line skipped.
func Serve(ctx context.Context, conn io.ReadWriteCloser, opt Options) error {
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &host{opt: opt, log: log, base: base, res: map[string]*res{}, quit: make(chan struct{}), leaseNew: make(chan struct{})}
	h.out = newOutbox(conn, log)
	defer h.out.close()

	var wd *watchdog
	if opt.Watchdog != "" {
		var err error
		if wd, err = openWatchdog(opt.Watchdog, h.mayPet, log); err != nil {
			return err
		}
	}

	names := make([]string, 0, len(opt.Types))
	for n := range opt.Types {
		names = append(names, n)
	}
	sort.Strings(names)
	h.sweepOrphans(ctx)
	h.out.push(Message{Op: OpHello, PID: os.Getpid(), Types: names})
	log.Info("resmon serving", "pid", os.Getpid(), "types", names, "watchdog", opt.Watchdog, "state_dir", opt.StateDir)

	type read struct {
		m   Message
		err error
	}
	in := make(chan read)
	go func() {
		r := NewReader(conn)
		for {
			m, err := r.Read()
			select {
			case in <- read{m, err}:
			case <-base.Done():
				return
			}
			if err != nil && !errors.Is(err, ErrProtocol) {
				return
			}
		}
	}()

	lease := time.NewTimer(time.Hour)
	lease.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info("resmon stopping", "reason", context.Cause(ctx))
			break loop
		case <-lease.C:
			h.expireIfDue()
		case r := <-in:
			switch {
			case errors.Is(r.err, ErrProtocol):
				log.Error("message refused", "err", r.err)
			case r.err == io.EOF:
				log.Warn("clusterd closed the connection: terminating every resource")
				break loop
			case r.err != nil:
				err = fmt.Errorf("resmon: read from clusterd: %w", r.err)
				log.Error("connection to clusterd failed: terminating every resource", "err", r.err)
				break loop
			case r.m.Op == OpLease:
				h.lease(r.m.UntilNs, lease)
			case r.m.Op == OpOnline || r.m.Op == OpOffline || r.m.Op == OpTerminate:
				h.dispatch(r.m)
			default:
				log.Error("message refused", "err", fmt.Errorf("%w: op %q is not clusterd's to send", ErrProtocol, r.m.Op))
			}
		}
	}
	lease.Stop()
	start := time.Now()
	n := h.killAll()
	log.Info("every resource terminated", "resources", n, "took", time.Since(start))
	close(h.quit)
	cancel()
	done := make(chan struct{})
	go func() { h.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownWait):
		log.Warn("a resource's action is still running after terminate; leaving it", "waited", shutdownWait)
	}
	if wd != nil {
		wd.close()
	}
	return err
}

// lease takes a new deadline and resets the timer to it.
func (h *host) lease(until int64, t *time.Timer) {
	h.mu.Lock()
	had := h.leaseUntil
	h.leaseUntil = until
	close(h.leaseNew)
	h.leaseNew = make(chan struct{})
	h.mu.Unlock()
	now := Monotonic()
	if until <= now {
		t.Stop()
		if had != 0 {
			h.log.Warn("lease revoked or already past", "until_ns", until, "now_ns", now)
		}
		h.expire("lease revoked")
		return
	}
	t.Reset(time.Duration(until - now))
}

func (h *host) leaseValid() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leaseValidLocked()
}

func (h *host) leaseValidLocked() bool { return h.leaseUntil > Monotonic() }

// expireIfDue expires the lease unless it was extended meanwhile.
func (h *host) expireIfDue() {
	h.mu.Lock()
	until := h.leaseUntil
	h.mu.Unlock()
	if now := Monotonic(); until > now {
		return
	}
	h.expire("lease expired")
}

// expire terminates every open resource at once (in parallel) and has
// each reported offline with reason.
func (h *host) expire(reason string) {
	start := time.Now()
	var wg sync.WaitGroup
	h.mu.Lock()
	n := 0
	for _, r := range h.res {
		if r.inst == nil {
			continue
		}
		n++
		h.kill(r, &wg)
		r.queue = append(r.queue, Message{Op: opClose, Resource: r.name, Reason: reason})
		r.signal()
	}
	h.mu.Unlock()
	wg.Wait()
	if n > 0 {
		h.log.Warn(reason+": every resource terminated", "resources", n, "took", time.Since(start))
	}
}

// killAll terminates every open resource in parallel and waits.
func (h *host) killAll() int {
	var wg sync.WaitGroup
	h.mu.Lock()
	n := 0
	for _, r := range h.res {
		if r.inst != nil {
			n++
		}
		h.kill(r, &wg)
	}
	h.mu.Unlock()
	wg.Wait()
	return n
}

// kill (h.mu held) aborts r's running action and queue and terminates its
// instance on a goroutine of its own, at once: a hung Online does not
// delay it.
func (h *host) kill(r *res, wg *sync.WaitGroup) {
	r.gen++
	if r.cancel != nil {
		r.cancel()
	}
	r.queue = nil
	inst, gen := r.inst, r.gen
	if inst == nil {
		return
	}
	if r.killing == 0 {
		r.killed = make(chan struct{})
	}
	r.killing++
	if wg != nil {
		wg.Add(1)
	}
	go func() {
		inst.Terminate()
		h.mu.Lock()
		if r.gen == gen {
			r.terminated = true
		}
		if r.killing--; r.killing == 0 {
			close(r.killed)
		}
		h.mu.Unlock()
		if wg != nil {
			wg.Done()
		}
	}()
}

// waitKills (h.mu not held) waits until no kill of r is in flight.
func (h *host) waitKills(r *res) {
	h.mu.Lock()
	ch := r.killed
	h.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// mayPet says whether the watchdog may be petted: the lease is valid, or
// nothing is online (pending or settled) that was not terminated.
func (h *host) mayPet() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.leaseValidLocked() {
		return true
	}
	for _, r := range h.res {
		if r.inst != nil && !r.terminated && (r.state == resources.OnlinePending || r.state == resources.Online || r.state == resources.OfflinePending) {
			return false
		}
	}
	return true
}

// dispatch queues a command for its resource; a terminate first aborts
// what runs and what is queued.
func (h *host) dispatch(m Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.res[m.Resource]
	if r == nil {
		r = &res{name: m.Resource, log: h.log.With("resource", m.Resource), wake: make(chan struct{}, 1), pendingMs: defaultPendingMs}
		h.res[m.Resource] = r
		h.workers.Add(1)
		go h.worker(r)
	}
	if m.Op == OpTerminate {
		h.kill(r, nil)
	}
	r.queue = append(r.queue, m)
	r.signal()
}

func (r *res) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// pop takes r's next command and the generation it runs in.
func (h *host) pop(r *res) (Message, uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(r.queue) == 0 {
		return Message{}, 0, false
	}
	m := r.queue[0]
	r.queue = r.queue[1:]
	return m, r.gen, true
}

// report sends r's state unless gen was aborted since.
func (h *host) report(r *res, gen uint64, s resources.State, reason string) bool {
	return h.reportClass(r, gen, s, reason, resources.FailSoft)
}

// reportClass is report with a failure's class.
func (h *host) reportClass(r *res, gen uint64, s resources.State, reason string, class resources.FailureClass) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.gen != gen {
		return false
	}
	h.reportLocked(r, s, reason, class)
	return true
}

func (h *host) reportLocked(r *res, s resources.State, reason string, class resources.FailureClass) {
	r.state = s
	lvl := slog.LevelInfo
	if s == resources.Failed {
		lvl = slog.LevelWarn
	}
	switch {
	case class != resources.FailSoft:
		r.log.Log(context.Background(), lvl, "state", "state", s.String(), "reason", reason, "class", class.String())
	case reason != "":
		r.log.Log(context.Background(), lvl, "state", "state", s.String(), "reason", reason)
	default:
		r.log.Log(context.Background(), lvl, "state", "state", s.String())
	}
	h.out.push(Message{Op: OpState, Resource: r.name, State: s, Reason: reason, Class: class})
}

// begin makes the context of an action of generation gen bounded by
// timeout; ok is false if gen was aborted.
func (h *host) begin(r *res, gen uint64, timeout time.Duration) (context.Context, func() bool, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.gen != gen {
		return nil, nil, false
	}
	ctx, cancel := context.WithTimeout(h.base, timeout)
	r.cancel = cancel
	end := func() bool {
		cancel()
		h.mu.Lock()
		defer h.mu.Unlock()
		if r.gen != gen {
			return false
		}
		r.cancel = nil
		return true
	}
	return ctx, end, true
}

// monitor polls one online instance.
type monitor struct {
	gen       uint64
	looks, is *time.Ticker
	fails     <-chan error
}

func (m *monitor) stop() {
	if m != nil {
		m.looks.Stop()
		m.is.Stop()
	}
}

func (h *host) worker(r *res) {
	defer h.workers.Done()
	var mon *monitor
	defer func() { mon.stop() }()
	for {
		var looks, is <-chan time.Time
		var fails <-chan error
		if mon != nil {
			looks, is, fails = mon.looks.C, mon.is.C, mon.fails
		}
		select {
		case <-h.quit:
			h.mu.Lock()
			inst := r.inst
			r.inst = nil
			h.mu.Unlock()
			if inst != nil {
				h.waitKills(r)
				inst.Close()
				h.closed(r)
			}
			return
		case <-r.wake:
		case <-looks:
			mon = h.check(r, mon, "looks-alive", func(_ context.Context, inst resources.Instance) error { return inst.LooksAlive() })
		case <-is:
			mon = h.check(r, mon, "is-alive", func(ctx context.Context, inst resources.Instance) error { return inst.IsAlive(ctx) })
		case err, ok := <-fails:
			if !ok {
				mon.fails = nil
				continue
			}
			mon = h.check(r, mon, "watch", func(context.Context, resources.Instance) error {
				if err == nil {
					err = errors.New("failure reported")
				}
				return err
			})
		}
		for {
			m, gen, ok := h.pop(r)
			if !ok {
				break
			}
			if mon != nil && (m.Op != OpOnline || mon.gen != gen) {
				mon.stop()
				mon = nil
			}
			mon = h.exec(r, m, gen, mon)
		}
	}
}

// instance returns r's open instance.
func (h *host) instance(r *res) resources.Instance {
	h.mu.Lock()
	defer h.mu.Unlock()
	return r.inst
}

// check runs one check of an online resource; a failure terminates it and
// reports it failed. It returns the monitor to go on with (nil: stopped).
func (h *host) check(r *res, mon *monitor, what string, f func(context.Context, resources.Instance) error) *monitor {
	inst := h.instance(r)
	ctx, end, ok := h.begin(r, mon.gen, time.Duration(r.pendingMs)*time.Millisecond)
	if !ok || inst == nil {
		mon.stop()
		return nil
	}
	err := f(ctx, inst)
	if ctx.Err() == context.DeadlineExceeded && err != nil {
		err = fmt.Errorf("no answer within %d ms: %w", r.pendingMs, err)
	}
	if !end() {
		mon.stop()
		return nil
	}
	if err == nil {
		return mon
	}
	mon.stop()
	inst.Terminate()
	h.reportClass(r, mon.gen, resources.Failed, fmt.Sprintf("%s failed: %v", what, err), resources.ClassOf(err))
	return nil
}

// exec runs one command of generation gen.
func (h *host) exec(r *res, m Message, gen uint64, mon *monitor) *monitor {
	switch m.Op {
	case OpOnline:
		if mon != nil {
			h.report(r, gen, resources.Online, "")
			return mon
		}
		return h.online(r, m, gen)
	case OpOffline:
		h.offline(r, gen)
	case OpTerminate:
		h.terminate(r, gen)
	case opClose:
		h.waitKills(r) // the kill's Terminate is done before the report
		h.mu.Lock()
		inst := r.inst
		r.inst = nil
		wasOffline := r.state == resources.Offline
		h.mu.Unlock()
		if inst != nil {
			inst.Terminate() // again: an Online that ignored its ctx may have started something since
			inst.Close()
			h.closed(r)
		}
		if !wasOffline {
			h.report(r, gen, resources.Offline, m.Reason)
		}
	}
	return nil
}

// leaseGrace bounds how long an online waits for a lease (see waitLease).
const leaseGrace = time.Second

func (h *host) online(r *res, m Message, gen uint64) *monitor {
	if !h.waitLease(r, gen, min(time.Duration(m.PendingTimeoutMs)*time.Millisecond, leaseGrace)) {
		h.report(r, gen, resources.Failed, "no lease")
		return nil
	}
	typ := h.opt.Types[m.Type]
	if typ == nil {
		h.report(r, gen, resources.Failed, fmt.Sprintf("unknown resource type %q", m.Type))
		return nil
	}
	inst := h.instance(r)
	if inst == nil {
		h.killOrphan(r)
		var err error
		inst, err = typ.Open(r.name, m.Props, r.log)
		if err != nil {
			h.reportClass(r, gen, resources.Failed, fmt.Sprintf("open: %v", err), resources.ClassOf(err))
			return nil
		}
		if h.opt.StateDir != "" {
			// Before anything runs: a resmon that dies from here on
			// leaves a record for the next one to terminate.
			if err := saveRecord(h.opt.StateDir, m); err != nil {
				inst.Close()
				h.report(r, gen, resources.Failed, fmt.Sprintf("online: %v", err))
				return nil
			}
		}
	}
	h.mu.Lock()
	r.inst = inst
	if r.gen != gen {
		h.mu.Unlock()
		return nil
	}
	r.pendingMs = m.PendingTimeoutMs
	r.terminated = false
	h.reportLocked(r, resources.OnlinePending, "", resources.FailSoft)
	h.mu.Unlock()

	ctx, end, ok := h.begin(r, gen, time.Duration(m.PendingTimeoutMs)*time.Millisecond)
	if !ok {
		return nil
	}
	err := inst.Online(ctx)
	timedOut := ctx.Err() == context.DeadlineExceeded
	if !end() {
		return nil // aborted: whoever did it terminated the instance
	}
	if err != nil || timedOut {
		inst.Terminate()
		reason := fmt.Sprintf("online: %v", err)
		if timedOut {
			reason = fmt.Sprintf("online: not done within the pending timeout (%d ms): %v", m.PendingTimeoutMs, err)
		}
		h.reportClass(r, gen, resources.Failed, reason, resources.ClassOf(err))
		return nil
	}
	if !h.report(r, gen, resources.Online, "") {
		return nil
	}
	mon := &monitor{
		gen:   gen,
		looks: time.NewTicker(time.Duration(m.LooksAliveMs) * time.Millisecond),
		is:    time.NewTicker(time.Duration(m.IsAliveMs) * time.Millisecond),
	}
	if w, ok := inst.(resources.Watcher); ok {
		mon.fails = w.Failures()
	}
	return mon
}

// waitLease reports whether this node holds a lease, waiting for one for
// at most max. clusterd sends an online only while its node core counts
// the lease as valid, but the core counts in ticks, which lag the
// monotonic clock on a loaded machine: an online can arrive just after
// the lease ran out by resmon's clock and just before the disk beat that
// renews it. Refusing at once would count as the resource's failure and
// spend its restarts in milliseconds; nothing is started before the
// lease is valid either way. It gives up early when another command for
// the resource is queued or gen is aborted.
func (h *host) waitLease(r *res, gen uint64, max time.Duration) bool {
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		valid, next, other := h.leaseValidLocked(), h.leaseNew, r.gen != gen || len(r.queue) > 0
		h.mu.Unlock()
		switch {
		case valid:
			return true
		case other:
			return false
		}
		select {
		case <-next:
		case <-r.wake: // a command queued: the loop sees it
		case <-deadline.C:
			return false
		case <-h.quit:
			return false
		}
	}
}

func (h *host) offline(r *res, gen uint64) {
	inst := h.instance(r)
	if inst == nil {
		h.report(r, gen, resources.Offline, "")
		return
	}
	if !h.report(r, gen, resources.OfflinePending, "") {
		return
	}
	pending := r.pendingMs
	ctx, end, ok := h.begin(r, gen, time.Duration(pending)*time.Millisecond)
	if !ok {
		return
	}
	err := inst.Offline(ctx)
	timedOut := ctx.Err() == context.DeadlineExceeded
	if !end() {
		return
	}
	reason := ""
	if err != nil || timedOut {
		reason = fmt.Sprintf("offline failed, terminated: %v", err)
		if timedOut {
			reason = fmt.Sprintf("offline not done within the pending timeout (%d ms), terminated", pending)
		}
		inst.Terminate()
	}
	h.mu.Lock()
	if r.gen != gen {
		h.mu.Unlock()
		return
	}
	r.inst = nil
	h.mu.Unlock()
	inst.Close()
	h.closed(r)
	h.report(r, gen, resources.Offline, reason)
}

func (h *host) terminate(r *res, gen uint64) {
	inst := h.instance(r)
	if inst == nil {
		h.killOrphan(r)
		h.report(r, gen, resources.Offline, "")
		return
	}
	inst.Terminate()
	h.waitKills(r)
	h.mu.Lock()
	if r.gen != gen {
		h.mu.Unlock()
		return
	}
	r.inst = nil
	h.mu.Unlock()
	inst.Close()
	h.closed(r)
	h.report(r, gen, resources.Offline, "")
}

// killOrphan terminates what a previous resmon left of r.
func (h *host) killOrphan(r *res) {
	if h.opt.StateDir != "" {
		h.terminateRecorded(r.name, r.log)
	}
}

// closed removes r's record: it is offline and closed.
func (h *host) closed(r *res) {
	if h.opt.StateDir == "" {
		return
	}
	if err := removeRecord(h.opt.StateDir, r.name); err != nil {
		r.log.Error("offline, but its record stays (a later resmon will terminate it again)", "err", err)
	}
}

// outbox queues resmon's messages for one writer goroutine: a slow reader
// on the other end never blocks a resource.
type outbox struct {
	mu     sync.Mutex
	q      []Message
	wake   chan struct{}
	closed chan struct{}
	done   chan struct{}
}

func newOutbox(w io.Writer, log *slog.Logger) *outbox {
	o := &outbox{wake: make(chan struct{}, 1), closed: make(chan struct{}), done: make(chan struct{})}
	flush := func() {
		for {
			o.mu.Lock()
			q := o.q
			o.q = nil
			o.mu.Unlock()
			if len(q) == 0 {
				return
			}
			for _, m := range q {
				b, err := Encode(m)
				if err == nil {
					_, err = w.Write(b)
				}
				if err != nil {
					log.Error("could not send to clusterd", "op", m.Op, "err", err)
				}
			}
		}
	}
	go func() {
		defer close(o.done)
		for {
			flush()
			select {
			case <-o.wake:
			case <-o.closed:
				flush()
				return
			}
		}
	}()
	return o
}

func (o *outbox) push(m Message) {
	o.mu.Lock()
	o.q = append(o.q, m)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// close sends what is queued, then stops the writer.
func (o *outbox) close() {
	close(o.closed)
	<-o.done
}
