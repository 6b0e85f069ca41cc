package resmon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// fakeType's instances behave as their props say: "online" and "offline"
// are "ok", "fail", "hang" (until ctx ends) or "block" (until the test
// releases them, ignoring ctx). Every call is recorded.
type fakeType struct {
	mu    sync.Mutex
	insts map[string]*fakeInst
	calls []string
}

func (f *fakeType) Name() string { return "fake" }

func (f *fakeType) Open(name string, props resources.Props, _ *slog.Logger) (resources.Instance, error) {
	if props.Str("open", "") == "fail" {
		return nil, fmt.Errorf("fake %s: property open: refused", name)
	}
	i := &fakeInst{f: f, name: name, props: props, fails: make(chan error, 1), release: make(chan struct{}),
		termDelay: time.Duration(props.Int("terminate_ms", 0)) * time.Millisecond}
	f.mu.Lock()
	if f.insts == nil {
		f.insts = map[string]*fakeInst{}
	}
	f.insts[name] = i
	f.mu.Unlock()
	return i, nil
}

func (f *fakeType) record(s string) {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
}

func (f *fakeType) inst(name string) *fakeInst {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.insts[name]
}

// callsOf lists the calls made on resource name, in order.
func (f *fakeType) callsOf(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if r, op, _ := strings.Cut(c, " "); r == name {
			out = append(out, op)
		}
	}
	return out
}

type fakeInst struct {
	f         *fakeType
	name      string
	props     resources.Props
	fails     chan error
	release   chan struct{}
	termDelay time.Duration

	mu         sync.Mutex
	looksErr   error
	isErr      error
	terminated []int64 // Monotonic() at each Terminate
}

func (i *fakeInst) act(ctx context.Context, how string) error {
	switch how {
	case "fail":
		return errors.New("refused by the fake")
	case "hang":
		<-ctx.Done()
		return ctx.Err()
	case "block":
		<-i.release
		return nil
	}
	return nil
}

func (i *fakeInst) Online(ctx context.Context) error {
	i.f.record(i.name + " online")
	return i.act(ctx, i.props.Str("online", "ok"))
}

func (i *fakeInst) Offline(ctx context.Context) error {
	i.f.record(i.name + " offline")
	return i.act(ctx, i.props.Str("offline", "ok"))
}

func (i *fakeInst) Terminate() {
	now := Monotonic()
	i.mu.Lock()
	i.terminated = append(i.terminated, now)
	i.mu.Unlock()
	i.f.record(i.name + " terminate")
	time.Sleep(i.termDelay)
}

func (i *fakeInst) LooksAlive() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.looksErr
}

func (i *fakeInst) IsAlive(context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.isErr
}

func (i *fakeInst) Close()                 { i.f.record(i.name + " close") }
func (i *fakeInst) Failures() <-chan error { return i.fails }

func (i *fakeInst) firstTerminate() int64 {
	i.mu.Lock()
	defer i.mu.Unlock()
	if len(i.terminated) == 0 {
		return 0
	}
	return i.terminated[0]
}

type harness struct {
	t      *testing.T
	conn   net.Conn
	r      *Reader
	typ    *fakeType
	served chan error
}

func newHarness(t *testing.T, opt Options) *harness {
	t.Helper()
	ours, theirs := net.Pipe()
	typ := &fakeType{}
	opt.Types = map[string]resources.Type{"fake": typ}
	opt.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := &harness{t: t, conn: ours, r: NewReader(ours), typ: typ, served: make(chan error, 1)}
	go func() { h.served <- Serve(context.Background(), theirs, opt) }()
	t.Cleanup(func() {
		ours.Close()
		select {
		case <-h.served:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after the connection closed")
		}
	})
	m := h.next()
	if m.Op != OpHello || m.PID != os.Getpid() || len(m.Types) != 1 || m.Types[0] != "fake" {
		t.Fatalf("first message %+v, want hello", m)
	}
	return h
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (h *harness) send(m Message) {
	h.t.Helper()
	b, err := Encode(m)
	if err != nil {
		h.t.Fatal(err)
	}
	h.sendRaw(string(b))
}

func (h *harness) sendRaw(s string) {
	h.t.Helper()
	h.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := h.conn.Write([]byte(s)); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) next() Message {
	h.t.Helper()
	h.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := h.r.Read()
	if err != nil {
		h.t.Fatalf("read from resmon: %v", err)
	}
	return m
}

// expect reads the next report and checks it is resource's state s, with
// a reason containing reason.
func (h *harness) expect(resource string, s resources.State, reason string) Message {
	h.t.Helper()
	m := h.next()
	if m.Op != OpState || m.Resource != resource || m.State != s || !strings.Contains(m.Reason, reason) {
		h.t.Fatalf("got %s %s %v %q; want state %s %v with reason containing %q", m.Op, m.Resource, m.State, m.Reason, resource, s, reason)
	}
	return m
}

func (h *harness) lease(d time.Duration) int64 {
	until := Monotonic() + int64(d)
	h.send(Message{Op: OpLease, UntilNs: until})
	return until
}

func online(name string, props ...string) Message {
	p := resources.Props{}
	for i := 0; i+1 < len(props); i += 2 {
		p[props[i]] = db.StringValue(props[i+1])
	}
	return Message{Op: OpOnline, Resource: name, Type: "fake", Props: p, LooksAliveMs: 10, IsAliveMs: 10, PendingTimeoutMs: 100}
}

func (h *harness) bringOnline(name string, props ...string) *fakeInst {
	h.t.Helper()
	h.send(online(name, props...))
	h.expect(name, resources.OnlinePending, "")
	h.expect(name, resources.Online, "")
	return h.typ.inst(name)
}

func equal(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func TestOnlineOfflineTerminate(t *testing.T) {
	h := newHarness(t, Options{})
	h.lease(time.Hour)
	h.bringOnline("a")
	h.send(Message{Op: OpOffline, Resource: "a"})
	h.expect("a", resources.OfflinePending, "")
	h.expect("a", resources.Offline, "")
	h.bringOnline("a")
	h.send(Message{Op: OpTerminate, Resource: "a"})
	h.expect("a", resources.Offline, "")
	// A terminate of a resource that is not open is answered too.
	h.send(Message{Op: OpTerminate, Resource: "never"})
	h.expect("never", resources.Offline, "")
	if got, want := h.typ.callsOf("a"), []string{"online", "offline", "close", "online", "terminate", "terminate", "close"}; !equal(got, want) {
		// terminate twice: at once when it arrives, again in order.
		t.Fatalf("calls %v, want %v", got, want)
	}
}

func TestOnlineRefusedWithoutLease(t *testing.T) {
	h := newHarness(t, Options{})
	h.send(online("a"))
	h.expect("a", resources.Failed, "no lease")
	h.lease(time.Hour)
	h.send(Message{Op: OpLease, UntilNs: 0}) // revoked
	h.send(online("a"))
	h.expect("a", resources.Failed, "no lease")
	h.send(Message{Op: OpOnline, Resource: "b", Type: "nosuch", LooksAliveMs: 1, IsAliveMs: 1, PendingTimeoutMs: 1})
	h.expect("b", resources.Failed, "no lease")
	h.lease(time.Hour)
	h.send(Message{Op: OpOnline, Resource: "b", Type: "nosuch", LooksAliveMs: 1, IsAliveMs: 1, PendingTimeoutMs: 1})
	h.expect("b", resources.Failed, `unknown resource type "nosuch"`)
	h.send(online("c", "open", "fail"))
	h.expect("c", resources.Failed, "open: fake c: property open: refused")
	if got := h.typ.callsOf("a"); len(got) != 0 {
		t.Fatalf("calls on a without a lease: %v", got)
	}
}

func TestOnlineFailsAndTimesOut(t *testing.T) {
	h := newHarness(t, Options{})
	h.lease(time.Hour)
	h.send(online("a", "online", "fail"))
	h.expect("a", resources.OnlinePending, "")
	h.expect("a", resources.Failed, "online: refused by the fake")
	start := time.Now()
	h.send(online("b", "online", "hang"))
	h.expect("b", resources.OnlinePending, "")
	h.expect("b", resources.Failed, "not done within the pending timeout (100 ms)")
	if took := time.Since(start); took < 100*time.Millisecond || took > time.Second {
		t.Errorf("hung online failed after %v; want just over the pending timeout of 100 ms", took)
	}
	for _, r := range []string{"a", "b"} {
		if got, want := h.typ.callsOf(r), []string{"online", "terminate"}; !equal(got, want) {
			t.Errorf("%s: calls %v, want %v", r, got, want)
		}
	}
}

func TestOfflineTimesOut(t *testing.T) {
	h := newHarness(t, Options{})
	h.lease(time.Hour)
	h.bringOnline("a", "offline", "hang")
	h.send(Message{Op: OpOffline, Resource: "a"})
	h.expect("a", resources.OfflinePending, "")
	h.expect("a", resources.Offline, "offline not done within the pending timeout (100 ms), terminated")
	if got, want := h.typ.callsOf("a"), []string{"online", "offline", "terminate", "close"}; !equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
}

func TestCheckFailures(t *testing.T) {
	h := newHarness(t, Options{})
	h.lease(time.Hour)
	a := h.bringOnline("a")
	b := h.bringOnline("b")
	c := h.bringOnline("c")
	a.mu.Lock()
	a.looksErr = errors.New("process gone")
	a.mu.Unlock()
	h.expect("a", resources.Failed, "looks-alive failed: process gone")
	b.mu.Lock()
	b.isErr = errors.New("check_command exited 3")
	b.mu.Unlock()
	h.expect("b", resources.Failed, "is-alive failed: check_command exited 3")
	c.fails <- errors.New("link down")
	h.expect("c", resources.Failed, "watch failed: link down")
	for _, r := range []string{"a", "b", "c"} {
		if got, want := h.typ.callsOf(r), []string{"online", "terminate"}; !equal(got, want) {
			t.Errorf("%s: calls %v, want %v", r, got, want)
		}
	}
	// A failed resource is taken offline as usual.
	h.send(Message{Op: OpOffline, Resource: "a"})
	h.expect("a", resources.OfflinePending, "")
	h.expect("a", resources.Offline, "")
}

// A terminate does not wait behind an Online that ignores its context: the
// instance is terminated at once; the report follows once Online returns,
// and the Online's own outcome is never reported.
func TestTerminateDoesNotWaitForHungOnline(t *testing.T) {
	h := newHarness(t, Options{})
	h.lease(time.Hour)
	h.send(online("a", "online", "block"))
	h.expect("a", resources.OnlinePending, "")
	for deadline := time.Now().Add(2 * time.Second); len(h.typ.callsOf("a")) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Online not called")
		}
	}
	// A command queued behind the hung online is dropped by the terminate.
	h.send(Message{Op: OpOffline, Resource: "a"})
	sent := Monotonic()
	h.send(Message{Op: OpTerminate, Resource: "a"})
	i := h.typ.inst("a")
	deadline := time.Now().Add(2 * time.Second)
	for i.firstTerminate() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if at := i.firstTerminate(); at == 0 || time.Duration(at-sent) > 100*time.Millisecond {
		t.Fatalf("Terminate not called within 100 ms of the terminate (at %d, sent %d)", at, sent)
	}
	t.Logf("terminate to Terminate: %v", time.Duration(i.firstTerminate()-sent))
	close(i.release)
	h.expect("a", resources.Offline, "")
	if got, want := h.typ.callsOf("a"), []string{"online", "terminate", "terminate", "close"}; !equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
}

// When the lease runs out every open resource is terminated in parallel
// within a few ms of the deadline and reported offline; onlines are
// refused until a new lease.
func TestLeaseExpiry(t *testing.T) {
	h := newHarness(t, Options{})
	until := h.lease(300 * time.Millisecond)
	names := []string{"a", "b", "c", "d"}
	for _, n := range names {
		h.bringOnline(n, "terminate_ms", "")
	}
	got := map[string]bool{}
	for range names {
		m := h.next()
		if m.Op != OpState || m.State != resources.Offline || m.Reason != "lease expired" {
			t.Fatalf("got %+v; want offline, lease expired", m)
		}
		got[m.Resource] = true
	}
	var worst time.Duration
	for _, n := range names {
		at := h.typ.inst(n).firstTerminate()
		late := time.Duration(at - until)
		if at == 0 || late < 0 || late > 10*time.Millisecond {
			t.Errorf("%s terminated %v after the deadline; want within [0, 10 ms]", n, late)
		}
		worst = max(worst, late)
	}
	t.Logf("lease deadline to Terminate: at most %v over %d resources", worst, len(names))
	if len(got) != len(names) {
		t.Fatalf("offline reports for %v", got)
	}
	h.send(online("a"))
	h.expect("a", resources.Failed, "no lease")
}

// Terminates after a lease expiry run in parallel: four taking 50 ms each
// are done in well under 200 ms.
func TestLeaseExpiryTerminatesInParallel(t *testing.T) {
	h := newHarness(t, Options{})
	h.lease(time.Hour)
	names := []string{"a", "b", "c", "d"}
	for _, n := range names {
		p := resources.Props{"terminate_ms": db.IntValue(50)}
		m := online(n)
		m.Props = p
		h.send(m)
		h.expect(n, resources.OnlinePending, "")
		h.expect(n, resources.Online, "")
	}
	h.send(Message{Op: OpLease, UntilNs: 0})
	var first, last int64
	for range names {
		m := h.next()
		if m.State != resources.Offline || m.Reason != "lease revoked" {
			t.Fatalf("got %+v; want offline, lease revoked", m)
		}
	}
	for _, n := range names {
		at := h.typ.inst(n).firstTerminate()
		if first == 0 || at < first {
			first = at
		}
		last = max(last, at)
	}
	if spread := time.Duration(last - first); spread > 40*time.Millisecond {
		t.Fatalf("Terminates started %v apart: not in parallel", spread)
	}
}

func TestEOFTerminatesEverything(t *testing.T) {
	h := newHarness(t, Options{})
	h.lease(time.Hour)
	h.bringOnline("a")
	h.bringOnline("b", "online", "ok")
	h.conn.Close()
	select {
	case err := <-h.served:
		if err != nil {
			t.Fatalf("Serve = %v after EOF; want nil", err)
		}
		h.served <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after EOF")
	}
	for _, n := range []string{"a", "b"} {
		if got, want := h.typ.callsOf(n), []string{"online", "terminate", "close"}; !equal(got, want) {
			t.Errorf("%s: calls %v, want %v", n, got, want)
		}
	}
}

// Bad lines are refused one by one; the connection and its lease are
// unchanged.
func TestProtocolErrorsLeaveStateAlone(t *testing.T) {
	h := newHarness(t, Options{})
	h.lease(time.Hour)
	h.sendRaw("this is not json\n")
	h.sendRaw(`{"op":"reboot"}` + "\n")
	h.sendRaw(`{"op":"hello","pid":1}` + "\n")
	h.sendRaw(`{"op":"lease"}` + "\n")
	h.sendRaw(`{"op":"online","resource":"a","type":"fake","props":{"x":1.5},"looks_alive_ms":10,"is_alive_ms":10,"pending_timeout_ms":100}` + "\n")
	h.sendRaw(`{"op":"offline","resource":"` + strings.Repeat("y", MaxLine) + "\"}\n")
	h.bringOnline("a")
}

// The watchdog (a regular file here: a real /dev/watchdog would reboot
// this machine) is petted while the lease is valid and closed with the
// magic 'V'.
func TestWatchdogPetsAndMagicClose(t *testing.T) {
	wd := t.TempDir() + "/watchdog"
	if err := os.WriteFile(wd, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Options{Watchdog: wd})
	h.lease(time.Hour)
	deadline := time.Now().Add(3 * time.Second)
	for {
		b, _ := os.ReadFile(wd)
		if len(b) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watchdog file holds %q after 3 s; want two pets", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.conn.Close()
	<-h.served
	h.served <- nil
	b, _ := os.ReadFile(wd)
	if len(b) < 3 || string(b[:len(b)-1]) != strings.Repeat(".", len(b)-1) || b[len(b)-1] != 'V' {
		t.Fatalf("watchdog file %q; want pets then V", b)
	}
}

// The watchdog is withheld only while the lease is gone and a resource is
// online that was not terminated.
func TestMayPet(t *testing.T) {
	h := &host{res: map[string]*res{}}
	if !h.mayPet() {
		t.Fatal("nothing online, no lease: must pet")
	}
	r := &res{inst: &fakeInst{}, state: resources.Online}
	h.res["a"] = r
	if h.mayPet() {
		t.Fatal("online without a lease: must not pet")
	}
	h.leaseUntil = Monotonic() + int64(time.Hour)
	if !h.mayPet() {
		t.Fatal("valid lease: must pet")
	}
	h.leaseUntil = 1
	r.terminated = true
	if !h.mayPet() {
		t.Fatal("terminated: must pet")
	}
}

// slowTerminate is an Instance whose Terminate takes a moment.
type slowTerminate struct{ resources.Instance }

func (slowTerminate) Terminate() { time.Sleep(50 * time.Microsecond) }

// Kills that start while a worker waits for the previous ones (a lease
// expiry and then a revocation, in the guide's QEMU run) are waited for,
// and no kill's bookkeeping panics (a sync.WaitGroup reused before its
// Wait returned did: "WaitGroup is reused before previous Wait has
// returned").
func TestKillWhileAWorkerWaits(t *testing.T) {
	h := &host{log: slog.New(slog.DiscardHandler), res: map[string]*res{}}
	r := &res{name: "a", inst: slowTerminate{}}
	stop := make(chan struct{})
	waited := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				waited <- n
				return
			default:
			}
			h.waitKills(r)
			n++
		}
	}()
	for range 2000 {
		h.mu.Lock()
		h.kill(r, nil)
		h.mu.Unlock()
	}
	close(stop)
	if n := <-waited; n == 0 {
		t.Fatal("the waiter never returned")
	}
	h.waitKills(r)
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.killing != 0 || !r.terminated {
		t.Fatalf("after the kills: %d in flight, terminated %v; want 0, true", r.killing, r.terminated)
	}
}

// An online that arrives just before the lease's renewal waits for it
// (within its pending timeout, at most leaseGrace) instead of failing;
// one followed by another command gives up at once.
func TestOnlineWaitsForLease(t *testing.T) {
	h := newHarness(t, Options{})
	m := online("a")
	m.PendingTimeoutMs = 5000
	h.send(m)
	time.Sleep(50 * time.Millisecond)
	h.lease(time.Hour)
	h.expect("a", resources.OnlinePending, "")
	h.expect("a", resources.Online, "")

	h.send(Message{Op: OpLease, UntilNs: 0}) // revoked: a goes offline
	h.expect("a", resources.Offline, "lease revoked")
	start := time.Now()
	m = online("b")
	m.PendingTimeoutMs = 5000
	h.send(m)
	h.send(Message{Op: OpOffline, Resource: "b"})
	h.expect("b", resources.Failed, "no lease")
	if d := time.Since(start); d >= leaseGrace {
		t.Errorf("an online followed by an offline waited %v for the lease; want it to give up at once", d)
	}
	if got := h.typ.callsOf("b"); len(got) != 0 {
		t.Errorf("b: calls %v without a lease", got)
	}
}
