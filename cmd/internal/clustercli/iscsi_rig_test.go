package clustercli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi/iscsitest"
	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// The iSCSI test rig (issue 3): tgtd in a "storage" network namespace,
// a bridge there, and one veth from it into each "node" namespace. Every
// node runs a real initiator in its own process (this test binary again,
// as TestISCSIWorkerProcess, under `ip netns exec`): a network namespace
// belongs to a thread, and a separate process is the simplest way never to
// hand a thread in another namespace back to the Go scheduler.
//
//	wpi<pid>x<seq>-st          storage netns: br0 10.98.0.1/24, tgtd on 10.98.0.1:3260
//	                           n<N>: the storage end of node N's veth, in br0
//	wpi<pid>x<seq>-n<N>        node N's netns: eth0 10.98.0.(10+N)/24
//
// Nothing is created in the host's namespace, and the netns names carry the
// creating process's pid (netns.Unique) so that a later run can sweep what
// a killed run left behind (netns.SweepDead).

const (
	rigPortalHost = "10.98.0.1"
	rigPrefix     = "wpi"
)

type rig struct {
	t       *testing.T
	storage string
	nodes   []string
	ns      *netns.Set
	tgt     *iscsitest.Tgt
}

// requireRig skips t unless it runs as root with ip and tgtd.
func requireRig(t *testing.T) {
	t.Helper()
	netns.Require(t, "iSCSI netns rig")
	if err := iscsitest.Available(); err != nil {
		t.Skipf("iSCSI netns rig: %v", err)
	}
}

// newRig makes the namespaces, the bridge and n node veths, and starts tgtd
// in the storage namespace with a fresh LUN. Everything goes at t's cleanup.
func newRig(t *testing.T, n int) *rig {
	t.Helper()
	requireRig(t)
	netns.SweepDead(slog.New(slog.NewTextHandler(t.Output(), nil)), rigPrefix)
	base := netns.Unique(rigPrefix)
	r := &rig{t: t, storage: base + "-st", ns: netns.NewSet().CloseOnSignal()}
	// Cleanups run last registered first: tgtd and the workers have
	// stopped by the time the namespaces go (the veths and the bridge live
	// in them and go with them).
	t.Cleanup(func() {
		if err := r.ns.Close(); err != nil {
			t.Error(err)
		}
	})
	ctx := t.Context()
	if err := r.ns.Add(ctx, r.storage); err != nil {
		t.Fatal(err)
	}
	st := netns.In(r.storage).Iface("lo").Bridge("br0").Iface("br0", netip.MustParsePrefix(rigPortalHost+"/24"))
	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("%s-n%d", base, i)
		if err := r.ns.Add(ctx, ns); err != nil {
			t.Fatal(err)
		}
		r.nodes = append(r.nodes, ns)
		st.Veth(fmt.Sprintf("n%d", i), "br0", ns, "eth0")
	}
	if err := st.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for i, ns := range r.nodes {
		addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 98, 0, byte(11 + i)}), 24)
		if err := netns.In(ns).Iface("lo").Iface("eth0", addr).Run(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r.tgt = iscsitest.Start(t, iscsitest.Options{Wrap: netns.Wrap(r.storage), Host: rigPortalHost})
	return r
}

// cut and heal take node i's veth down and up at the storage end: the
// node's packets go nowhere and neither side hears a FIN or an RST.
func (r *rig) cut(i int)  { r.link(i, "down") }
func (r *rig) heal(i int) { r.link(i, "up") }

func (r *rig) link(i int, state string) {
	r.t.Helper()
	if err := netns.In(r.storage).Add("link set n%d %s", i, state).Run(context.Background()); err != nil {
		r.t.Fatal(err)
	}
}

// workerSpec configures one initiator process.
type workerSpec struct {
	Addr          string        `json:"addr"`
	InitiatorName string        `json:"initiator_name"`
	Timeout       time.Duration `json:"timeout"`
	LoginTimeout  time.Duration `json:"login_timeout"`
	KeepAlive     time.Duration `json:"keep_alive"`
}

// workerReq is one request to a worker; workerResp its answer.
type workerReq struct {
	ID   int      `json:"id"`
	Op   string   `json:"op"`             // cli, load, events, await
	Args []string `json:"args,omitempty"` // cli: `cluster` arguments; the device is appended
	// load: LBA of the 64 KiB region, and how long.
	LBA uint64        `json:"lba,omitempty"`
	For time.Duration `json:"for,omitempty"`
	// await: answer once counter Kind (of load request Of, for "ops")
	// has reached N.
	Kind string `json:"kind,omitempty"`
	N    int    `json:"n,omitempty"`
	Of   int    `json:"of,omitempty"`
}

// The counters a worker keeps for await.
const (
	countLost = "lost" // the initiator gave a connection up ("iscsi connection lost")
	countDial = "dial" // TCP connection attempts to the portal
	countOps  = "ops"  // reads and writes a load request has completed
)

type workerResp struct {
	ID     int             `json:"id"`
	Stdout string          `json:"stdout,omitempty"`
	Err    string          `json:"err,omitempty"`
	Load   *loadResult     `json:"load,omitempty"`
	Events []reconnectInfo `json:"events,omitempty"`
	Count  int             `json:"count,omitempty"`
}

// loadResult counts outcomes of a load run by class. Anything but ok,
// unknown (writes only) and conflict (writes only) is a failure.
type loadResult struct {
	ReadOK, ReadWrong, ReadErr                        int
	WriteOK, WriteUnknown, WriteConflict, WriteOthers int
	Errors                                            []string
}

type reconnectInfo struct {
	OldTSIH, NewTSIH uint16
	SameSession      bool
	Cause            string
}

const workerEnv = "WOLFPACK_ISCSI_WORKER"

// worker is the parent's handle on one initiator process.
type worker struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser

	mu      sync.Mutex
	nextID  int
	pending map[int]chan workerResp
	stderr  *bytes.Buffer
	dead    chan struct{}
}

// startWorker runs an initiator in netns ns (none: this namespace) that
// logs in to spec.Addr as spec.InitiatorName and keeps the session open
// until the test ends.
func startWorker(t *testing.T, ns string, spec workerSpec) *worker {
	t.Helper()
	js, _ := json.Marshal(spec)
	cmd := netns.Command(context.Background(), ns, os.Args[0], "-test.run=^TestISCSIWorkerProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), workerEnv+"="+string(js))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{name: spec.InitiatorName, cmd: cmd, in: in, pending: map[int]chan workerResp{}, stderr: &bytes.Buffer{}, dead: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &w.mu, w: w.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker %s: %v", spec.InitiatorName, err)
	}
	go w.readLoop(out)
	t.Cleanup(func() {
		in.Close() // the worker logs out and exits at EOF
		select {
		case <-w.dead:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-w.dead
		}
		cmd.Wait()
	})
	return w
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

const workerReplyPrefix = "@@wolfpack-worker "

func (w *worker) readLoop(out io.Reader) {
	defer close(w.dead)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), workerReplyPrefix)
		if !ok {
			continue // the test framework's own output
		}
		var resp workerResp
		if err := json.Unmarshal([]byte(line), &resp); err != nil {
			continue
		}
		w.mu.Lock()
		ch := w.pending[resp.ID]
		delete(w.pending, resp.ID)
		w.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
}

// send starts a request and returns the channel its answer comes on.
func (w *worker) send(t *testing.T, req workerReq) chan workerResp {
	t.Helper()
	_, ch := w.start(t, req)
	return ch
}

// start starts a request and returns its id and the channel its answer
// comes on.
func (w *worker) start(t *testing.T, req workerReq) (int, chan workerResp) {
	t.Helper()
	w.mu.Lock()
	w.nextID++
	req.ID = w.nextID
	ch := make(chan workerResp, 1)
	w.pending[req.ID] = ch
	w.mu.Unlock()
	b, _ := json.Marshal(req)
	if _, err := w.in.Write(append(b, '\n')); err != nil {
		t.Fatalf("worker %s: send: %v", w.name, err)
	}
	return req.ID, ch
}

// wait waits for an answer, the worker's death, or 60 s.
func (w *worker) wait(t *testing.T, ch chan workerResp) workerResp {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-w.dead:
		w.mu.Lock()
		defer w.mu.Unlock()
		t.Fatalf("worker %s died:\n%s", w.name, w.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("worker %s: no answer in 60 s", w.name)
	}
	return workerResp{}
}

// log returns what the worker wrote to stderr (its log with ISCSI_DEBUG set).
func (w *worker) log() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stderr.String()
}

// cli runs `cluster disk ...` in the worker on its session and returns stdout.
func (w *worker) cli(t *testing.T, args ...string) []byte {
	t.Helper()
	return []byte(w.wait(t, w.send(t, workerReq{Op: "cli", Args: args})).Stdout)
}

func (w *worker) events(t *testing.T) []reconnectInfo {
	t.Helper()
	return w.wait(t, w.send(t, workerReq{Op: "events"})).Events
}

// await waits until the worker's counter kind (countLost, countDial; for
// countOps, of load request of) has reached n, and returns its value; n 0
// reads it.
func (w *worker) await(t *testing.T, kind string, n, of int) int {
	t.Helper()
	return w.wait(t, w.send(t, workerReq{Op: "await", Kind: kind, N: n, Of: of})).Count
}

// counters are what a worker counts for await: each change wakes every
// waiter.
type counters struct {
	mu   sync.Mutex
	n    map[string]int
	wake chan struct{}
}

func newCounters() *counters { return &counters{n: map[string]int{}, wake: make(chan struct{})} }

func (c *counters) add(key string) {
	c.mu.Lock()
	c.n[key]++
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
}

func (c *counters) await(ctx context.Context, key string, n int) (int, error) {
	for {
		c.mu.Lock()
		v, wake := c.n[key], c.wake
		c.mu.Unlock()
		if v >= n {
			return v, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return v, fmt.Errorf("waiting for %s to reach %d (at %d): %w", key, n, v, ctx.Err())
		}
	}
}

// countingHandler counts the initiator's "connection lost" records and
// passes every record on.
type countingHandler struct {
	slog.Handler
	c *counters
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "iscsi connection lost" {
		h.c.add(countLost)
	}
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.c}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(name), h.c}
}

// TestISCSIWorkerProcess is not a test: it is the body of an initiator
// process the iSCSI rig tests start (see startWorker).
func TestISCSIWorkerProcess(t *testing.T) {
	js := os.Getenv(workerEnv)
	if js == "" {
		t.Skip("helper process for the iSCSI rig tests")
	}
	var spec workerSpec
	if err := json.Unmarshal([]byte(js), &spec); err != nil {
		t.Fatal(err)
	}
	if err := workerMain(spec, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// workerSession is one session shared by every request of a worker; the
// CLI's Close does not log out of it.
type workerSession struct{ *iscsi.Session }

func (workerSession) Close() error { return nil }

func workerMain(spec workerSpec, in io.Reader, out io.Writer) error {
	var mu sync.Mutex
	var events []reconnectInfo
	count := newCounters()
	var dialer net.Dialer
	logLevel := slog.LevelError + 1 // nothing, unless ISCSI_DEBUG
	if os.Getenv("ISCSI_DEBUG") != "" {
		logLevel = slog.LevelDebug
	}
	cfg := iscsi.Config{
		InitiatorName: spec.InitiatorName,
		Timeout:       spec.Timeout,
		LoginTimeout:  spec.LoginTimeout,
		KeepAlive:     spec.KeepAlive,
		OnReconnect: func(r iscsi.ReconnectInfo) {
			mu.Lock()
			events = append(events, reconnectInfo{r.OldTSIH, r.NewTSIH, r.SameSession, fmt.Sprint(r.Cause)})
			mu.Unlock()
		},
		Logger: slog.New(countingHandler{slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}), count}),
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			count.add(countDial)
			return dialer.DialContext(ctx, network, addr)
		},
	}
	ctx := context.Background()
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	s, err := iscsi.Open(lctx, spec.Addr, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer s.Close()
	open := func(string) (scsi.Device, error) { return workerSession{s}, nil }

	var wmu sync.Mutex
	reply := func(r workerResp) {
		b, _ := json.Marshal(r)
		wmu.Lock()
		fmt.Fprintf(out, "%s%s\n", workerReplyPrefix, b)
		wmu.Unlock()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	actx, stop := context.WithCancel(ctx) // ends the awaits at EOF
	defer stop()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var req workerReq
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			return fmt.Errorf("request %q: %w", sc.Text(), err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := workerResp{ID: req.ID}
			switch req.Op {
			case "cli":
				var stdout, stderr bytes.Buffer
				err := run(ctx, append(append([]string(nil), req.Args...), spec.Addr), &stdout, &stderr, open)
				resp.Stdout = stdout.String()
				if err != nil && !errors.Is(err, errReported) {
					resp.Err = err.Error()
				}
			case "load":
				key := fmt.Sprintf("%s/%d", countOps, req.ID)
				resp.Load = runLoad(ctx, s, req.LBA, req.For, func() { count.add(key) })
			case "await":
				key := req.Kind
				if key == countOps {
					key = fmt.Sprintf("%s/%d", countOps, req.Of)
				}
				var err error
				if resp.Count, err = count.await(actx, key, req.N); err != nil {
					resp.Err = err.Error()
				}
			case "events":
				mu.Lock()
				resp.Events = append([]reconnectInfo(nil), events...)
				mu.Unlock()
			default:
				resp.Err = "unknown op " + req.Op
			}
			reply(resp)
		}()
	}
	return sc.Err()
}

// runLoad writes a random 64 KiB pattern at lba, then for d has two
// goroutines read it back and two write the same pattern again (4 KiB FUA
// writes, so the content never changes), and counts outcomes, calling done
// after each. A read must
// return the pattern; a write must succeed, report an unknown outcome, or
// be refused with RESERVATION CONFLICT.
func runLoad(ctx context.Context, d scsi.Device, lba uint64, dur time.Duration, done func()) *loadResult {
	res := &loadResult{}
	pattern := make([]byte, 64<<10)
	rand.Read(pattern)
	if err := scsi.Write16(ctx, d, lba, uint32(len(pattern)/512), pattern, true); err != nil {
		res.Errors = append(res.Errors, "initial write: "+err.Error())
		return res
	}
	want := sha256.Sum256(pattern)
	var mu sync.Mutex
	note := func(f func()) { mu.Lock(); f(); mu.Unlock(); done() }
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, len(pattern))
			for i := 0; time.Now().Before(deadline); i++ {
				if g < 2 {
					for j := range buf {
						buf[j] = 0
					}
					err := scsi.Read16(ctx, d, lba, uint32(len(buf)/512), buf)
					switch {
					case err != nil:
						note(func() { res.ReadErr++; res.Errors = append(res.Errors, "read: "+err.Error()) })
					case sha256.Sum256(buf) != want:
						note(func() {
							res.ReadWrong++
							res.Errors = append(res.Errors, "read: wrong data "+hex.EncodeToString(buf[:16]))
						})
					default:
						note(func() { res.ReadOK++ })
					}
					continue
				}
				off := (i*2 + g) % 16 * 4096
				err := scsi.Write16(ctx, d, lba+uint64(off/512), 8, pattern[off:off+4096], true)
				switch {
				case err == nil:
					note(func() { res.WriteOK++ })
				case errors.Is(err, iscsi.ErrOutcomeUnknown):
					note(func() { res.WriteUnknown++ })
				case errors.Is(err, scsi.ErrReservationConflict):
					note(func() { res.WriteConflict++ })
				default:
					note(func() { res.WriteOthers++; res.Errors = append(res.Errors, "write: "+err.Error()) })
				}
			}
		}()
	}
	wg.Wait()
	if len(res.Errors) > 10 {
		res.Errors = res.Errors[:10]
	}
	return res
}

// itNexusSID finds the tgt session id (I_T nexus) of initiator name in
// `tgtadm --op show --mode target` output.
func itNexusSID(show, name string) (string, bool) {
	var sid string
	for _, line := range strings.Split(show, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "I_T nexus: "); ok {
			sid = v
		}
		if v, ok := strings.CutPrefix(line, "Initiator: "); ok && sid != "" {
			if f := strings.Fields(v); len(f) > 0 && f[0] == name {
				return sid, true
			}
		}
	}
	return "", false
}

// jsonField reads a top-level string or bool field of a CLI JSON output.
func jsonField(t *testing.T, out []byte, field string) any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("CLI output is not JSON: %v\n%s", err, out)
	}
	return m[field]
}
