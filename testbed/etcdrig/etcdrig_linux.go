package etcdrig

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/internal/onsignal"
	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

const (
	prefix = "wpe"
	// ClientPort and PeerPort are every member's ports.
	ClientPort = 2379
	PeerPort   = 2380
	// MaxMembers bounds Config.Members.
	MaxMembers = 7
)

// ClientAddr is the client namespace's address.
var ClientAddr = netip.MustParseAddr("10.97.0.100")

// MemberAddr is member n's address (1-based).
func MemberAddr(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 97, 0, byte(10 + n)}) }

// Config configures Start.
type Config struct {
	// Members is the number of members, 1..MaxMembers; zero means 3.
	Members int
	// Binary is etcd; empty means etcd on PATH.
	Binary string
	// DataDir is where the rig's directory is made; empty means
	// os.TempDir().
	DataDir string
	// StartTimeout bounds the wait for a leader every member agrees on;
	// zero means 30 s.
	StartTimeout time.Duration
	// Logger gets the rig's progress; nil discards it.
	Logger *slog.Logger
}

// Rig is a running etcd cluster.
type Rig struct {
	// Prefix names everything the rig created.
	Prefix string
	// Dir holds the members' data directories and logs.
	Dir string
	// Fabric and ClientNS are namespace names.
	Fabric, ClientNS string
	// Members are the members, member 1 first.
	Members []*Member

	cfg Config
	log *slog.Logger
	ns  *netns.Set

	closeOnce sync.Once
	closeErr  error
}

// Member is one etcd member.
type Member struct {
	// ID is 1-based; Name is "m<ID>", etcd's --name.
	ID   int
	Name string
	// Netns is the member's namespace, Addr its address.
	Netns string
	Addr  netip.Addr
	// DataDir and LogFile are in the rig's Dir.
	DataDir, LogFile string

	cmd  *exec.Cmd
	done chan struct{}
}

// ClientURL is the member's client URL.
func (m *Member) ClientURL() string {
	return "http://" + netip.AddrPortFrom(m.Addr, ClientPort).String()
}

func (m *Member) peerURL() string {
	return "http://" + netip.AddrPortFrom(m.Addr, PeerPort).String()
}

// Pid is the member's process id (ip netns exec execs etcd).
func (m *Member) Pid() int { return m.cmd.Process.Pid }

// Exited reports whether the member's process has exited.
func (m *Member) Exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// Available reports why the rig cannot run here, or nil.
func Available(binary string) error {
	if binary == "" {
		binary = "etcd"
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	for _, b := range []string{"ip", binary} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found: apt-get install iproute2 etcd-server (or make deps)", b)
		}
	}
	return nil
}

// Require skips t unless the rig can run here (root, ip, etcd; not
// -short).
func Require(t testing.TB) {
	t.Helper()
	netns.Require(t, "etcd rig")
	if err := Available(""); err != nil {
		t.Skipf("etcd rig skipped: %v", err)
	}
}

// New starts a rig for t (Start), skipping t when it cannot run here and
// failing it when starting fails; Close runs at t's cleanup, and a failed
// t gets the tail of every member's log.
func New(t testing.TB, cfg Config) *Rig {
	t.Helper()
	Require(t)
	r, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("etcdrig: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range r.Members {
				t.Logf("etcd %s log tail:\n%s", m.Name, tail(m.LogFile, 30))
			}
		}
		if err := r.Close(); err != nil {
			t.Errorf("etcdrig: %v", err)
		}
	})
	return r
}

// Start builds the namespaces, starts every member and waits until every
// member answers and names the same leader. On an error, what was built
// is removed again.
func Start(ctx context.Context, cfg Config) (*Rig, error) {
	if cfg.Members == 0 {
		cfg.Members = 3
	}
	if cfg.Members < 1 || cfg.Members > MaxMembers {
		return nil, fmt.Errorf("%d members: want 1..%d", cfg.Members, MaxMembers)
	}
	if cfg.Binary == "" {
		cfg.Binary = "etcd"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = os.TempDir()
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	cfg.Binary = bin
	Sweep(cfg.Logger, cfg.DataDir)

	pfx := netns.Unique(prefix)
	dir, err := os.MkdirTemp(cfg.DataDir, pfx+"-")
	if err != nil {
		return nil, err
	}
	r := &Rig{Prefix: pfx, Dir: dir, Fabric: pfx + "-fab", ClientNS: pfx + "-cl",
		cfg: cfg, log: cfg.Logger.With("rig", pfx), ns: netns.NewSet()}
	onsignal.Register(r, onsignal.Kind{Package: "etcdrig", Noun: "rig"})
	for i := 1; i <= cfg.Members; i++ {
		r.Members = append(r.Members, &Member{
			ID: i, Name: fmt.Sprintf("m%d", i), Netns: fmt.Sprintf("%s-m%d", pfx, i), Addr: MemberAddr(i),
			DataDir: filepath.Join(dir, fmt.Sprintf("m%d.etcd", i)), LogFile: filepath.Join(dir, fmt.Sprintf("m%d.log", i)),
		})
	}
	if err := r.start(ctx); err != nil {
		return nil, errors.Join(err, r.Close())
	}
	return r, nil
}

func (r *Rig) start(ctx context.Context) error {
	t0 := time.Now()
	names := []string{r.Fabric, r.ClientNS}
	for _, m := range r.Members {
		names = append(names, m.Netns)
	}
	for _, ns := range names {
		if err := r.ns.Add(ctx, ns); err != nil {
			return err
		}
	}
	fab := netns.In(r.Fabric).Iface("lo").Bridge("pub").Veth("cl", "pub", r.ClientNS, "eth0")
	for _, m := range r.Members {
		fab.Veth(m.Name, "pub", m.Netns, "eth0")
	}
	if err := fab.Run(ctx); err != nil {
		return err
	}
	if err := netns.In(r.ClientNS).Iface("lo").Iface("eth0", netip.PrefixFrom(ClientAddr, 24)).Run(ctx); err != nil {
		return err
	}
	for _, m := range r.Members {
		if err := netns.In(m.Netns).Iface("lo").Iface("eth0", netip.PrefixFrom(m.Addr, 24)).Run(ctx); err != nil {
			return err
		}
	}
	var initial []string
	for _, m := range r.Members {
		initial = append(initial, m.Name+"="+m.peerURL())
	}
	for _, m := range r.Members {
		if err := r.startMember(m, strings.Join(initial, ",")); err != nil {
			return err
		}
	}
	leader, err := r.waitLeader(ctx)
	if err != nil {
		return err
	}
	r.log.Info("etcd cluster up", "members", len(r.Members), "leader", leader, "dir", r.Dir, "took", time.Since(t0))
	return nil
}

func (r *Rig) startMember(m *Member, initial string) error {
	f, err := os.OpenFile(m.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() // the child has its own copy
	cmd := netns.Command(context.Background(), m.Netns, r.cfg.Binary,
		"--name", m.Name,
		"--data-dir", m.DataDir,
		"--listen-client-urls", m.ClientURL(),
		"--advertise-client-urls", m.ClientURL(),
		"--listen-peer-urls", m.peerURL(),
		"--initial-advertise-peer-urls", m.peerURL(),
		"--initial-cluster", initial,
		"--initial-cluster-token", r.Prefix,
		"--initial-cluster-state", "new",
		"--logger", "zap", "--log-outputs", "stderr")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The child gets SIGKILL when the OS thread that forked it exits
	// (PR_SET_PDEATHSIG), and Go ends the threads Dial moved into the
	// client namespace (netns.Do): so the fork happens on a thread of its
	// own, locked until the child has exited.
	done, started := make(chan struct{}), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// This thread's namespace was never changed: it may go back.
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	m.cmd, m.done = cmd, done
	r.log.Info("etcd started", "member", m.Name, "pid", cmd.Process.Pid)
	return nil
}

// waitLeader polls every member's status until all answer and name the
// same leader, one of them; it returns that member's ID.
func (r *Rig) waitLeader(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		for _, m := range r.Members {
			if m.Exited() {
				return 0, fmt.Errorf("etcd %s exited: %s\n%s", m.Name, m.cmd.ProcessState, tail(m.LogFile, 20))
			}
		}
		id, err := r.Leader(ctx)
		if err == nil {
			return id, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for an etcd leader: %w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// Leader asks every member for its status and returns the ID of the
// member they all name as leader; members that disagree, or do not
// answer, are an error.
func (r *Rig) Leader(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	byRaftID := map[uint64]int{}
	var leaders []uint64
	for _, m := range r.Members {
		g := r.Gateway(m.ID)
		st, err := g.Status(ctx)
		g.Close()
		if err != nil {
			return 0, err
		}
		byRaftID[st.Member] = m.ID
		leaders = append(leaders, st.Leader)
	}
	for _, l := range leaders {
		if l != leaders[0] {
			return 0, fmt.Errorf("etcd members name different leaders: %x", leaders)
		}
	}
	id, ok := byRaftID[leaders[0]]
	if !ok {
		return 0, fmt.Errorf("etcd leader %x is no member", leaders[0])
	}
	return id, nil
}

// Dial opens a connection from the client namespace.
func (r *Rig) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(r.ClientNS, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, r.ClientNS, err)
	}
	return c, nil
}

// Member returns member id (1-based).
func (r *Rig) Member(id int) *Member { return r.Members[id-1] }

// Gateway returns a new gateway client of member id, connecting from the
// client namespace.
func (r *Rig) Gateway(id int) *Gateway { return NewGateway(r.Member(id).ClientURL(), r.Dial) }

// GRPC returns a new gRPC client of member id, connecting from the
// client namespace.
func (r *Rig) GRPC(id int) *GRPC { return NewGRPC(r.Member(id).ClientURL(), r.Dial) }

// Endpoints lists every member's client URL, comma-separated (etcdctl
// --endpoints).
func (r *Rig) Endpoints() string {
	var l []string
	for _, m := range r.Members {
		l = append(l, m.ClientURL())
	}
	return strings.Join(l, ",")
}

// ClientExec runs argv in the client namespace and returns its combined
// output (e.g. etcdctl), with the environment emptied but for PATH.
func (r *Rig) ClientExec(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := netns.Command(ctx, r.ClientNS, argv...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "ETCDCTL_API=3"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("in netns %s: %s: %w", r.ClientNS, strings.Join(argv, " "), err)
	}
	return out, nil
}

// Namespaces lists the rig's namespaces (for a check that Close removed
// them).
func (r *Rig) Namespaces() []string {
	l := []string{r.Fabric, r.ClientNS}
	for _, m := range r.Members {
		l = append(l, m.Netns)
	}
	return l
}

// Close kills every member (SIGKILL), deletes the namespaces and removes
// Dir. It is idempotent and safe from any
// goroutine.
func (r *Rig) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.close() })
	return r.closeErr
}

func (r *Rig) close() error {
	onsignal.Unregister(r)
	t0 := time.Now()
	var errs []error
	// SIGKILL: the data goes with the rig, and a leader asked to stop
	// (SIGTERM) tries to hand over leadership to members that are
	// stopping too, for longer than a benchmark wants to wait.
	for _, m := range r.Members {
		if m.cmd != nil {
			m.cmd.Process.Kill()
		}
	}
	for _, m := range r.Members {
		if m.cmd != nil {
			<-m.done
		}
	}
	if err := r.ns.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(r.Dir); err != nil {
		errs = append(errs, err)
	}
	r.log.Info("closed", "took", time.Since(t0))
	return errors.Join(errs...)
}

// Sweep removes the namespaces of rigs whose process is gone, and their
// directories under dataDir (a run killed before its cleanup). Start
// calls it.
func Sweep(log *slog.Logger, dataDir string) {
	netns.SweepDead(log, prefix)
	if ents, err := os.ReadDir(dataDir); err == nil {
		for _, e := range ents {
			if e.IsDir() && netns.DeadOwner(e.Name(), prefix) {
				log.Info("sweeping the directory of a dead run", "dir", e.Name())
				os.RemoveAll(filepath.Join(dataDir, e.Name()))
			}
		}
	}
}

func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
