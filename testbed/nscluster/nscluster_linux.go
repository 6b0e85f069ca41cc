package nscluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/internal/config"
	"github.com/wolfpack-ha/wolfpack/internal/core"
	"github.com/wolfpack-ha/wolfpack/internal/rtsched"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi/iscsitest"
	"github.com/wolfpack-ha/wolfpack/testbed"
	"github.com/wolfpack-ha/wolfpack/testbed/internal/onsignal"
	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// Contract constants (docs/clusterd.md).
const (
	ClusterName = "test"
	ClusterTag  = "574c4650"
	Port        = 7400
	// StorageHost is tgtd's address on the storage network.
	StorageHost = "10.98.0.1"
	// InitiatorPrefix + "node<N>" is node N's iSCSI initiator name.
	InitiatorPrefix = "iqn.2024-01.org.example:"

	prefix = "wpn"
)

// Net names one of the rig's networks (the name of its bridge).
type Net string

// The networks. Private(k) names private network k (1-based).
const (
	Public  Net = "pub"
	Priv1   Net = "priv1"
	Priv2   Net = "priv2"
	Storage Net = "stor"
)

// Private returns the name of private network k (1-based).
func Private(k int) Net { return Net("priv" + strconv.Itoa(k)) }

// Addr returns node's address on network nw (node 0 on Storage is tgtd,
// node 90 on Public is the client).
func Addr(nw Net, node int) netip.Addr {
	host := byte(10 + node)
	switch {
	case nw == Public:
		return netip.AddrFrom4([4]byte{10, 97, 0, host})
	case nw == Storage:
		if node == 0 {
			return netip.MustParseAddr(StorageHost)
		}
		return netip.AddrFrom4([4]byte{10, 98, 0, host})
	default:
		k, _ := strconv.Atoi(strings.TrimPrefix(string(nw), "priv"))
		return netip.AddrFrom4([4]byte{10, 97, byte(k), host})
	}
}

// ClientAddr is the client namespace's address on the public network.
var ClientAddr = netip.MustParseAddr("10.97.0.100")

// Timing overrides the daemon's timing; zero fields are left out of the
// node file (the default profile's values apply).
type Timing struct {
	// Profile is the node file's timing.profile ("": the default).
	Profile             string
	HeartbeatInterval   time.Duration
	HeartbeatThreshold  int
	QuorumCheckInterval time.Duration
}

// Config configures New.
type Config struct {
	// Nodes is the number of configured nodes, 2..16.
	Nodes int
	// PrivateNets is the number of private (heartbeat) networks, 1..4;
	// zero means 2.
	PrivateNets int
	// Binary is the daemon; empty builds ./cmd/clusterd (testbed.BuildGo).
	Binary string
	// CLI is the cluster admin tool; empty builds ./cmd/cluster.
	CLI string
	// Resmon is the resource monitor. Empty, with Binary empty: the rig
	// builds ./cmd/resmon beside the clusterd it builds, where clusterd
	// looks for it (with Binary given, clusterd finds its own or none).
	// "none": no node runs resources (resmon.path "none": no resmon, no
	// failover manager, so nothing but the test writes to the database).
	// Any other value: every node's config names it (resmon.path). Each
	// node's resmon keeps its state directory under Dir.
	Resmon string
	// Timing overrides the daemon's timing.
	Timing Timing
	// SyncLUN backs the quorum LUN with an O_SYNC file (tgt's --bsoflags
	// sync): a write is durable when answered, as an fdatasync'd WAL is.
	SyncLUN bool
	// StorageRealtime, if not 0, puts tgtd at SCHED_RR at this priority:
	// the quorum LUN stands for a storage array, whose CPU the nodes'
	// load does not touch, while here tgtd shares the machine's cores
	// with them (the CPU-hog soak).
	StorageRealtime int
	// Deferred nodes are configured (every config file lists them) but
	// not started by New; start them with Node(i).Start.
	Deferred []int
	// Logger gets the rig's own progress; nil discards it.
	Logger *slog.Logger
}

// Cluster is a running rig.
type Cluster struct {
	// Prefix names everything the rig created.
	Prefix string
	// Dir holds the key, config and log files and the admin sockets.
	Dir string
	// KeyFile is the cluster secret every node's config names.
	KeyFile string
	// Device is the quorum LUN's iscsi:// address.
	Device string
	// Fabric, StorageNS and ClientNS are namespace names.
	Fabric, StorageNS, ClientNS string
	// Tgt is the target.
	Tgt *iscsitest.Tgt

	cfg    Config
	log    *slog.Logger
	t      testing.TB
	nodes  []*Node
	events *eventLog

	ns *netns.Set // every namespace created, fabric first

	mu        sync.Mutex
	spawned   []*exec.Cmd       // Spawn'd processes
	closers   []func() error    // probers, captures, watchers: closed first
	partBr    map[string]bool   // bridges Partition created
	partOf    map[string]string // fabric port -> bridge it was moved to
	closed    bool
	closeErr  error
	closeOnce sync.Once
}

// Require skips t unless the rig can run here: root, ip (iproute2) and
// tgtd, and not -short.
func Require(t testing.TB) {
	t.Helper()
	netns.Require(t, "namespace cluster")
	if err := iscsitest.Available(); err != nil {
		t.Skipf("namespace cluster skipped: %v (apt-get install tgt)", err)
	}
}

// New builds the rig for t, formats the quorum LUN and starts every node
// but cfg.Deferred; it skips t when the rig cannot run here and fails t
// when building it fails. Close runs at t's cleanup.
func New(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	Require(t)
	if cfg.Nodes < 2 || cfg.Nodes > 16 {
		t.Fatalf("nscluster: %d nodes: want 2..16", cfg.Nodes)
	}
	if cfg.PrivateNets == 0 {
		cfg.PrivateNets = 2
	}
	if cfg.PrivateNets < 1 || cfg.PrivateNets > 4 {
		t.Fatalf("nscluster: %d private networks: want 1..4", cfg.PrivateNets)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx := t.Context()
	builds := []struct {
		path *string
		pkg  string
	}{{&cfg.Binary, "./cmd/clusterd"}, {&cfg.CLI, "./cmd/cluster"}}
	resmonPath := cfg.Resmon
	if cfg.Binary == "" && cfg.Resmon == "" {
		builds = append(builds, struct {
			path *string
			pkg  string
		}{&resmonPath, "./cmd/resmon"})
	}
	for _, b := range builds {
		if *b.path != "" {
			continue
		}
		p, err := testbed.BuildGo(ctx, b.pkg)
		if err != nil {
			t.Fatalf("nscluster: build %s: %v", b.pkg, err)
		}
		*b.path = p
	}
	if cfg.Resmon == "" && resmonPath != "" && filepath.Dir(resmonPath) != filepath.Dir(cfg.Binary) {
		cfg.Resmon = resmonPath // not where clusterd looks
	}
	Sweep(cfg.Logger)

	pfx := netns.Unique(prefix)
	dir, err := os.MkdirTemp("", pfx+"-")
	if err != nil {
		t.Fatalf("nscluster: %v", err)
	}
	c := &Cluster{
		Prefix: pfx, Dir: dir, Fabric: pfx + "-fab", StorageNS: pfx + "-st", ClientNS: pfx + "-cl",
		cfg: cfg, log: cfg.Logger.With("rig", pfx), t: t, events: newEventLog(), ns: netns.NewSet(),
		partBr: map[string]bool{}, partOf: map[string]string{},
	}
	onsignal.Register(c, onsignal.Kind{Package: "nscluster", Noun: "rig"})
	t.Cleanup(func() { c.Close() }) // if building the network fails
	if err := c.buildNetwork(ctx); err != nil {
		t.Fatalf("nscluster: %v", err)
	}
	topts := iscsitest.Options{Wrap: netns.Wrap(c.StorageNS), Host: StorageHost}
	if cfg.SyncLUN {
		topts.BSOFlags = "sync"
	}
	c.Tgt = iscsitest.Start(t, topts)
	if p := cfg.StorageRealtime; p != 0 {
		n, err := rtsched.SetProcess(c.Tgt.Pid(), p)
		if err != nil {
			t.Fatalf("nscluster: tgtd at real-time priority: %v", err)
		}
		c.log.Info("tgtd at SCHED_RR", "pid", c.Tgt.Pid(), "priority", p, "threads", n)
	}
	// Cleanups run last registered first: this Close (idempotent) stops
	// the daemons before iscsitest's cleanup stops tgtd.
	t.Cleanup(func() { c.Close() })
	c.Device = c.Tgt.Addr(1)

	key := make([]byte, 32)
	rand.Read(key)
	c.KeyFile = filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(c.KeyFile, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		t.Fatalf("nscluster: %v", err)
	}
	if out, err := netns.Exec(ctx, c.StorageNS, cfg.CLI, "quorum", "format", "--force", "--cluster-tag", ClusterTag, c.Device); err != nil {
		t.Fatalf("nscluster: format the quorum LUN: %v: %s", err, bytes.TrimSpace(out))
	}
	// The streams' credentials, made with the CLI as an operator would:
	// one CA, one certificate per node (docs/clusterd.md).
	caDir := filepath.Join(dir, "ca")
	if out, err := exec.CommandContext(ctx, cfg.CLI, "ca", "init", "--cluster", ClusterName, "--out", caDir).CombinedOutput(); err != nil {
		t.Fatalf("nscluster: cluster ca init: %v: %s", err, bytes.TrimSpace(out))
	}
	for i := 1; i <= cfg.Nodes; i++ {
		out, err := exec.CommandContext(ctx, cfg.CLI, "ca", "issue", "--ca", caDir, "--node", fmt.Sprint(i),
			"--out", filepath.Join(dir, fmt.Sprintf("pki-node%d", i))).CombinedOutput()
		if err != nil {
			t.Fatalf("nscluster: cluster ca issue --node %d: %v: %s", i, err, bytes.TrimSpace(out))
		}
	}
	for i := 1; i <= cfg.Nodes; i++ {
		c.nodes = append(c.nodes, c.newNode(i))
	}
	for _, n := range c.nodes {
		if slices.Contains(cfg.Deferred, n.ID) {
			continue
		}
		if err := n.Start(); err != nil {
			t.Fatalf("nscluster: %v", err)
		}
	}
	return c
}

// nets lists the networks in the order of a node's eth<K> interfaces.
func (c *Cluster) nets() []Net {
	l := []Net{Public}
	for k := 1; k <= c.cfg.PrivateNets; k++ {
		l = append(l, Private(k))
	}
	return append(l, Storage)
}

func port(node int, nw Net) string { return fmt.Sprintf("n%d-%s", node, nw) }

func (c *Cluster) nodeNS(i int) string { return fmt.Sprintf("%s-n%d", c.Prefix, i) }

// buildNetwork creates the namespaces, bridges and veths. Every command
// names a namespace of ours (ip -n, or a veth's peer moved into one).
func (c *Cluster) buildNetwork(ctx context.Context) error {
	start := time.Now()
	names := []string{c.Fabric, c.StorageNS, c.ClientNS}
	for i := 1; i <= c.cfg.Nodes; i++ {
		names = append(names, c.nodeNS(i))
	}
	for _, ns := range names {
		if err := c.ns.Add(ctx, ns); err != nil {
			return err
		}
	}
	fab := netns.In(c.Fabric).Iface("lo")
	for _, nw := range c.nets() {
		fab.Bridge(string(nw))
	}
	fab.Veth("st", string(Storage), c.StorageNS, "eth0")
	fab.Veth("cl", string(Public), c.ClientNS, "eth0")
	for i := 1; i <= c.cfg.Nodes; i++ {
		for k, nw := range c.nets() {
			fab.Veth(port(i, nw), string(nw), c.nodeNS(i), fmt.Sprintf("eth%d", k))
		}
	}
	if err := fab.Run(ctx); err != nil {
		return err
	}
	one := func(ns string, addrs ...netip.Addr) error {
		sc := netns.In(ns).Iface("lo")
		for k, a := range addrs {
			sc.Iface(fmt.Sprintf("eth%d", k), netip.PrefixFrom(a, 24))
		}
		return sc.Run(ctx)
	}
	if err := one(c.StorageNS, netip.MustParseAddr(StorageHost)); err != nil {
		return err
	}
	if err := one(c.ClientNS, ClientAddr); err != nil {
		return err
	}
	for i := 1; i <= c.cfg.Nodes; i++ {
		var addrs []netip.Addr
		for _, nw := range c.nets() {
			addrs = append(addrs, Addr(nw, i))
		}
		if err := one(c.nodeNS(i), addrs...); err != nil {
			return err
		}
	}
	c.log.Info("network built", "nodes", c.cfg.Nodes, "private", c.cfg.PrivateNets, "took", time.Since(start))
	return nil
}

// Node returns node i (1-based).
func (c *Cluster) Node(i int) *Node { return c.nodes[i-1] }

// Nodes returns every configured node.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Config returns the rig's configuration (with the built binaries' paths).
func (c *Cluster) Config() Config { return c.cfg }

func (c *Cluster) setLink(nw Net, node int, state string) error {
	if !slices.Contains(c.nets(), nw) {
		return fmt.Errorf("nscluster: no network %q", nw)
	}
	c.log.Info("link "+state, "node", node, "net", nw)
	return netns.In(c.Fabric).Add("link set %s %s", port(node, nw), state).Run(context.Background())
}

// Cut takes node i off network nw: its veth goes down at the fabric end,
// so no packet crosses in either direction and both ends lose carrier.
func (c *Cluster) Cut(i int, nw Net) error { return c.setLink(nw, i, "down") }

// Restore undoes Cut.
func (c *Cluster) Restore(i int, nw Net) error { return c.setLink(nw, i, "up") }

// Partition splits every private network into the groups: the fabric ends
// of group g's nodes move onto a bridge of their own, so nodes hear each
// other only within a group. Nodes named in no group stay on the original
// bridges together. The public and storage networks stay whole. Heal
// undoes it.
func (c *Cluster) Partition(groups ...[]int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	fab := netns.In(c.Fabric)
	for k := 1; k <= c.cfg.PrivateNets; k++ {
		nw := Private(k)
		for g, nodes := range groups {
			br := fmt.Sprintf("%s.%d", nw, g+1)
			if !c.partBr[br] {
				fab.Bridge(br)
				c.partBr[br] = true
			}
			for _, i := range nodes {
				p := port(i, nw)
				fab.Add("link set %s master %s", p, br)
				c.partOf[p] = br
			}
		}
	}
	c.log.Info("partition", "groups", fmt.Sprint(groups))
	return fab.Run(context.Background())
}

// Heal puts every private network back together after Partition.
func (c *Cluster) Heal() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	fab := netns.In(c.Fabric)
	for p := range c.partOf {
		_, nw, _ := strings.Cut(p, "-")
		fab.Add("link set %s master %s", p, nw)
	}
	for br := range c.partBr {
		fab.Add("link delete %s", br)
	}
	clear(c.partOf)
	clear(c.partBr)
	c.log.Info("heal")
	return fab.Run(context.Background())
}

// Events returns every event so far that matches (see Match).
func (c *Cluster) Events(node int, msg string, pred func(Event) bool) []Event {
	m := Match(node, msg, pred)
	var out []Event
	for _, e := range c.events.snapshot() {
		if m(e) {
			out = append(out, e)
		}
	}
	return out
}

// Mark returns the sequence number the next event will get; After(mark)
// selects the events from then on.
func (c *Cluster) Mark() int { return c.events.len() }

// WaitEvent returns the first event, in the whole stream, of node (0: any)
// with message msg ("" any) for which pred (nil: any) holds, waiting for
// it until ctx ends.
func (c *Cluster) WaitEvent(ctx context.Context, node int, msg string, pred func(Event) bool) (Event, error) {
	e, err := c.events.wait(ctx, Match(node, msg, pred))
	if err != nil {
		who := "any node"
		if node != 0 {
			who = fmt.Sprintf("node %d", node)
		}
		return e, fmt.Errorf("nscluster: waiting for %q on %s: %w", msg, who, err)
	}
	return e, nil
}

// ClientExec runs argv in the client namespace and returns its combined
// output.
func (c *Cluster) ClientExec(ctx context.Context, argv ...string) ([]byte, error) {
	return netns.Exec(ctx, c.ClientNS, argv...)
}

// NodeKey is node i's reservation key on the quorum LUN: the cluster tag
// and the node id (docs/quorum-disk.md).
func NodeKey(i int) uint64 {
	tag, _ := strconv.ParseUint(ClusterTag, 16, 32)
	return core.Key(uint32(tag), core.NodeID(i))
}

// DiskKeys reads the reservation keys registered on the quorum LUN, from
// the storage namespace, with a reader independent of clusterd's
// initiator (iscsitest.ReadKeysIndependently: libiscsi), so that a test
// of fencing does not trust the code under test to report it.
func (c *Cluster) DiskKeys(ctx context.Context) ([]uint64, error) {
	_, keys, err := iscsitest.ReadKeysIndependently(ctx, netns.Wrap(c.StorageNS), c.Device)
	if err != nil {
		return nil, fmt.Errorf("nscluster: %w", err)
	}
	return keys, nil
}

// LogTail returns the last n lines of node i's log file.
func (c *Cluster) LogTail(i, n int) string { return tail(c.Node(i).LogFile, n) }

func tail(file string, n int) string {
	b, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Close kills every process the rig started, stops tgtd, deletes the
// namespaces and removes Dir (kept, with log tails printed, if the test
// failed). It is idempotent and safe from any goroutine.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *Cluster) close() error {
	onsignal.Unregister(c)
	c.mu.Lock()
	c.closed = true
	spawned, closers := c.spawned, c.closers
	c.mu.Unlock()
	var errs []error
	for _, f := range closers {
		if err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range c.nodes {
		if err := n.Kill(); err != nil && !errors.Is(err, ErrNotRunning) {
			errs = append(errs, err)
		}
	}
	for _, cmd := range spawned {
		cmd.Process.Kill()
		cmd.Wait()
	}
	if c.Tgt != nil {
		if err := c.Tgt.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.ns.Close(); err != nil {
		errs = append(errs, err)
	}
	if c.t != nil && c.t.Failed() {
		// Keep the logs under a name Sweep leaves alone.
		kept := filepath.Join(os.TempDir(), "wolfpack-nscluster-"+filepath.Base(c.Dir))
		if err := os.Rename(c.Dir, kept); err != nil {
			kept = c.Dir
		}
		for _, n := range c.nodes {
			c.t.Logf("node%d log tail:\n%s", n.ID, tail(filepath.Join(kept, filepath.Base(n.LogFile)), 40))
		}
		c.t.Logf("nscluster: kept the logs in %s", kept)
	} else if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, err)
	}
	c.log.Info("closed")
	return errors.Join(errs...)
}

// Sweep removes the namespaces and directories of rigs whose process is
// gone (a run killed before its cleanup). New calls it.
func Sweep(log *slog.Logger) {
	netns.SweepDead(log, prefix)
	if ents, err := os.ReadDir(os.TempDir()); err == nil {
		for _, e := range ents {
			if e.IsDir() && netns.DeadOwner(e.Name(), prefix) {
				os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
			}
		}
	}
}

// ErrNotRunning is returned for a signal to a node whose process is not
// running.
var ErrNotRunning = errors.New("nscluster: node not running")

// Node is one configured node.
type Node struct {
	ID   int
	Name string
	// Netns is the node's network namespace.
	Netns string
	// ConfigFile, LogFile and Socket are files in the rig's Dir.
	ConfigFile, LogFile, Socket string
	// Config is what the next Start writes to ConfigFile.
	Config config.File

	c  *Cluster
	mu sync.Mutex
	p  *proc
}

type proc struct {
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	state   *os.ProcessState
}

func (c *Cluster) newNode(i int) *Node {
	n := &Node{
		ID: i, Name: fmt.Sprintf("node%d", i), Netns: c.nodeNS(i), c: c,
		ConfigFile: filepath.Join(c.Dir, fmt.Sprintf("node%d.toml", i)),
		LogFile:    filepath.Join(c.Dir, fmt.Sprintf("node%d.log", i)),
		Socket:     filepath.Join(c.Dir, fmt.Sprintf("node%d.sock", i)),
	}
	cfg := config.File{
		NodeID:      i,
		Cluster:     config.Cluster{Name: ClusterName, Tag: ClusterTag, KeyFile: c.KeyFile, Port: Port},
		Quorum:      config.Quorum{Device: c.Device, InitiatorName: fmt.Sprintf("%snode%d", InitiatorPrefix, i)},
		AdminSocket: n.Socket,
		StateDir:    filepath.Join(c.Dir, fmt.Sprintf("state-node%d", i)),
		Streams: config.Streams{
			CABundle: filepath.Join(c.Dir, fmt.Sprintf("pki-node%d", i), "ca.pem"),
			NodeCert: filepath.Join(c.Dir, fmt.Sprintf("pki-node%d", i), "node.pem"),
			NodeKey:  filepath.Join(c.Dir, fmt.Sprintf("pki-node%d", i), "node.key"),
		},
		Resmon: config.Resmon{Path: c.cfg.Resmon, StateDir: n.resmonStateDir()},
	}
	for j := 1; j <= c.cfg.Nodes; j++ {
		e := config.Node{ID: j, Name: fmt.Sprintf("node%d", j)}
		for k := 1; k <= c.cfg.PrivateNets; k++ {
			e.Addrs = append(e.Addrs, Addr(Private(k), j).String())
		}
		cfg.Nodes = append(cfg.Nodes, e)
	}
	for k := 1; k <= c.cfg.PrivateNets; k++ {
		cfg.Networks = append(cfg.Networks, config.Network{Name: string(Private(k)), Interface: fmt.Sprintf("eth%d", k)})
	}
	cfg.Timing.Profile = c.cfg.Timing.Profile
	if d := c.cfg.Timing.HeartbeatInterval; d != 0 {
		cfg.Timing.HeartbeatInterval = config.DurationOf(d)
	}
	if th := c.cfg.Timing.HeartbeatThreshold; th != 0 {
		cfg.Timing.HeartbeatThreshold = new(th)
	}
	if d := c.cfg.Timing.QuorumCheckInterval; d != 0 {
		cfg.Timing.QuorumCheckInterval = config.DurationOf(d)
	}
	n.Config = cfg
	return n
}

// Start writes the node's config file (after edit, if given, changed
// n.Config) and starts its daemon. The process's output is appended to
// LogFile and parsed into the event stream.
func (n *Node) Start(edit ...func(*config.File)) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p != nil && n.p.state == nil {
		return fmt.Errorf("nscluster: node %d is already running", n.ID)
	}
	n.c.mu.Lock()
	closed := n.c.closed
	n.c.mu.Unlock()
	if closed {
		return fmt.Errorf("nscluster: node %d: rig closed", n.ID)
	}
	for _, f := range edit {
		f(&n.Config)
	}
	if err := n.Config.WriteFile(n.ConfigFile); err != nil {
		return fmt.Errorf("nscluster: node %d: %w", n.ID, err)
	}
	os.Remove(n.Socket)
	f, err := os.OpenFile(n.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := netns.Command(context.Background(), n.Netns, n.c.cfg.Binary, "-config", n.ConfigFile)
	lw := &lineWriter{node: n.ID, file: f, events: n.c.events}
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.WaitDelay = 2 * time.Second // a child holding the pipes must not stall Wait
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("nscluster: start node %d: %w", n.ID, err)
	}
	p := &proc{cmd: cmd, started: time.Now(), done: make(chan struct{})}
	n.p = p
	n.c.events.add(Event{Node: n.ID, Time: p.started, Read: p.started, Msg: MsgStarted, Attrs: map[string]any{"pid": float64(cmd.Process.Pid)}})
	n.c.log.Info("node started", "node", n.ID, "pid", cmd.Process.Pid)
	go func() {
		cmd.Wait()
		lw.flush()
		f.Close()
		now := time.Now()
		st := cmd.ProcessState
		attrs := map[string]any{"status": float64(st.ExitCode())}
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			attrs["signal"] = ws.Signal().String()
		}
		n.mu.Lock()
		p.state = st
		n.mu.Unlock()
		// Done before the event: a test that saw it may start the node
		// again at once.
		close(p.done)
		n.c.events.add(Event{Node: n.ID, Time: now, Read: now, Msg: MsgExited, Attrs: attrs})
		n.c.log.Info("node exited", "node", n.ID, "state", st.String())
	}()
	return nil
}

func (n *Node) current() *proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.p
}

// Running reports whether the node's process is running (or stopped).
func (n *Node) Running() bool {
	p := n.current()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Pid is the daemon's pid (ip netns exec execs it), 0 if never started.
func (n *Node) Pid() int {
	if p := n.current(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// Started is when the current (or last) process was started.
func (n *Node) Started() time.Time {
	if p := n.current(); p != nil {
		return p.started
	}
	return time.Time{}
}

// Signal sends sig to the daemon.
func (n *Node) Signal(sig syscall.Signal) error {
	p := n.current()
	if p == nil {
		return ErrNotRunning
	}
	select {
	case <-p.done:
		return ErrNotRunning
	default:
	}
	n.c.log.Info("signal", "node", n.ID, "signal", sig.String())
	if err := p.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return ErrNotRunning
		}
		return fmt.Errorf("nscluster: node %d: %v: %w", n.ID, sig, err)
	}
	return nil
}

// Kill sends SIGKILL and waits (up to 10 s) for the process to be gone.
func (n *Node) Kill() error {
	if err := n.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := n.Wait(ctx)
	return err
}

// Stop freezes the daemon (SIGSTOP); Cont thaws it.
func (n *Node) Stop() error { return n.Signal(syscall.SIGSTOP) }

// Cont thaws a daemon Stop froze (SIGCONT).
func (n *Node) Cont() error { return n.Signal(syscall.SIGCONT) }

// Term asks the daemon to leave the cluster and exit (SIGTERM); Wait
// for its exit.
func (n *Node) Term() error { return n.Signal(syscall.SIGTERM) }

// Wait waits for the current process to exit and returns its state.
func (n *Node) Wait(ctx context.Context) (*os.ProcessState, error) {
	p := n.current()
	if p == nil {
		return nil, ErrNotRunning
	}
	select {
	case <-p.done:
		n.mu.Lock()
		defer n.mu.Unlock()
		return p.state, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("nscluster: waiting for node %d to exit: %w", n.ID, ctx.Err())
	}
}

// Restart kills the daemon if it runs and starts it again (a new
// incarnation).
func (n *Node) Restart(edit ...func(*config.File)) error {
	if err := n.Kill(); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	return n.Start(edit...)
}

// Exec runs argv in the node's namespace and returns its combined output.
func (n *Node) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	return netns.Exec(ctx, n.Netns, argv...)
}

// Spawn starts argv in the background in the node's namespace (a CPU hog,
// a load generator); Close kills it.
func (n *Node) Spawn(argv ...string) (*exec.Cmd, error) {
	cmd := netns.Command(context.Background(), n.Netns, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if n.c.closed {
		return nil, fmt.Errorf("nscluster: rig closed")
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n.c.spawned = append(n.c.spawned, cmd)
	return cmd, nil
}

// Status asks the node's admin API (its unix socket, a file on the host,
// dialled from here) for its status.
func (n *Node) Status(ctx context.Context) (*clusterapi.Status, error) {
	st, _, err := clusterapi.GetStatus(ctx, n.Socket)
	if err != nil {
		return nil, fmt.Errorf("nscluster: node %d: %w", n.ID, err)
	}
	return &st, nil
}

// Get does GET path on the node's admin socket and returns the body.
func (n *Node) Get(ctx context.Context, path string) ([]byte, error) {
	b, err := clusterapi.Get(ctx, n.Socket, path)
	if err != nil {
		return b, fmt.Errorf("nscluster: node %d: %w", n.ID, err)
	}
	return b, nil
}

// lineWriter appends a process's output to its log file and turns each
// complete line into an event.
type lineWriter struct {
	mu     sync.Mutex
	node   int
	file   *os.File
	events *eventLog
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	w.file.Write(p)
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if e, ok := parseLine(w.node, w.buf[:i], now); ok {
			w.events.add(e)
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		if e, ok := parseLine(w.node, w.buf, time.Now()); ok {
			w.events.add(e)
		}
		w.buf = nil
	}
}
