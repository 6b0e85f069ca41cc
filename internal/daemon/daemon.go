// Package daemon is clusterd's driver of the node core (internal/core): it
// connects the core to UDP sockets, a clock and the quorum LUN, in the same
// way sim/ connects the same core to a simulated world. It makes no
// protocol decision (docs/design.md, "The node core and its drivers").
//
// One goroutine (Run's) owns the core. Socket readers hand it datagrams
// over a channel, a single disk worker executes the core's disk commands
// in order (internal/quorumio) so that disk I/O never delays a tick, and
// the worker's results come back to the loop. The loop is tickless: it
// sleeps until the tick the core asks for (core.Node.NextTick) or until an
// input comes, and then runs the ticks due by the clock at once.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/heartbeat"
	"github.com/wolfpack-ha/wolfpack/internal/core"
	"github.com/wolfpack-ha/wolfpack/internal/quorumio"
	"github.com/wolfpack-ha/wolfpack/internal/resmon"
	"github.com/wolfpack-ha/wolfpack/internal/stream"
	"github.com/wolfpack-ha/wolfpack/internal/udp"
	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/scsi"
)

// Defaults (docs/membership.md, docs/clusterd.md).
const (
	DefaultTick           = 10 * time.Millisecond
	DefaultDefenceDelay   = 150 * time.Millisecond
	DefaultFormDelay      = 1500 * time.Millisecond
	DefaultJoinWindow     = 500 * time.Millisecond
	DefaultCommandTimeout = 2 * time.Second
	// ExitHalt is the exit status of a daemon that halted (pruned, lost
	// the arbitration, lost quorum).
	ExitHalt = 3
	// ExitEvicted is the exit status of a daemon whose node an
	// administrator evicted (cluster node evict): its joins are refused
	// until it is added back, so the unit does not restart it.
	ExitEvicted = 4
)

// Node is one configured node.
type Node struct {
	ID    regroup.NodeID
	Name  string
	Addrs []netip.Addr // Addrs[k] on Networks[k]
}

// Network is one private network; Interface empty binds to no device.
type Network struct {
	Name      string
	Interface string
}

// Config configures a Daemon. Zero durations take the defaults.
type Config struct {
	ClusterTag uint32 // heartbeat and regroup cluster id, and the high half of reservation keys
	Key        []byte // cluster secret
	Self       regroup.NodeID
	Nodes      []Node
	Networks   []Network
	Port       int
	// ClusterName and QuorumDevice are the node file's, for the status
	// only.
	ClusterName, QuorumDevice string
	// AdminSocket is the unix socket of the admin API; empty: none.
	AdminSocket string
	// RemoteAPI, when not nil, serves the admin API on TCP with TLS too.
	RemoteAPI *RemoteAPI

	Tick                time.Duration
	HeartbeatInterval   time.Duration
	HeartbeatThreshold  int
	QuorumCheckInterval time.Duration
	DefenceDelay        time.Duration
	FormDelay           time.Duration
	JoinWindow          time.Duration
	CommandTimeout      time.Duration
	DiskBeatInterval    time.Duration
	// Lease is the resources' lease the disk heartbeat renews (default
	// core.DefaultLeaseTicks ticks); the same on every node.
	Lease time.Duration

	// Credentials, StreamListen and StreamPeers set up the intra-cluster
	// streams that carry GUP (docs/streams.md); without Credentials the
	// node replicates nothing.
	Credentials  *stream.Credentials
	StreamListen string
	StreamPeers  map[regroup.NodeID]string
	// DBPath is the local copy of the cluster database (empty: none).
	DBPath string
	// Resmon is the resource monitor; without its Path this node hosts
	// no resources (and runs no failover manager).
	Resmon Resmon

	// Device is this node's path to the quorum LUN (its own I_T nexus).
	// The daemon closes it when Run returns.
	Device scsi.Device
	// Incarnation is this process's boot id; it must grow across
	// restarts. Zero: Now().UnixNano().
	Incarnation uint64

	Logger *slog.Logger
	// Now and After replace the clock; time's by default.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
}

// HaltError is returned by Run when the node halted: pruned, lost the
// arbitration, lost quorum. Its exit status is ExitHalt.
type HaltError struct{ Reason string }

func (e *HaltError) Error() string { return "halt: " + e.Reason }

// ExitCode is the process exit status for a halt.
func (e *HaltError) ExitCode() int { return ExitHalt }

// ErrJoinRefused is returned (wrapped) when a sponsor refused the join for
// a reason retrying cannot fix (the cluster secret differs).
var ErrJoinRefused = errors.New("daemon: join refused")

// ErrEvicted is returned (wrapped, with the reason) when an administrator
// evicted this node: the members regrouped it out, or refused its join.
// Its exit status is ExitEvicted.
var ErrEvicted = errors.New("daemon: evicted from the cluster")

// ErrAbandon, as the cause of Run's context (context.WithCancelCause),
// stops the daemon without ClusterExit and without touching the disk: to
// the others it looks like a crash (tests; an operator's emergency stop).
var ErrAbandon = errors.New("daemon: abandoned without ClusterExit")

// Daemon is one node's membership service.
type Daemon struct {
	cfg  Config
	log  *slog.Logger
	self Node
	inc  uint64

	node *core.Node
	seal *regroup.Sealer // loop only
	seq  uint64
	win  map[regroup.NodeID]*replayWindow

	socks []*udp.UDP
	peers map[regroup.NodeID][]netip.AddrPort

	recv    chan packet
	jobs    chan core.DiskCommand
	results chan core.DiskResult
	calls   chan func()
	status  chan chan Status
	stopped chan struct{}
	exec    *quorumio.Executor // worker only

	// GUP and the database (loop only, but db's reads via ReadDB).
	db       *db.DB
	mesh     *stream.Mesh
	gupIn    chan gupFrame
	savedc   chan uint64
	writes   map[uint64]pendingWrite
	reads    map[uint64]func(ok bool)
	watchers map[int]chan []db.Change
	watchSeq int
	dirty    bool
	saving   bool
	saved    uint64
	savedAt  time.Time

	// Resources (loop only): resmon while it runs, the lease deadline it
	// was last given, and when each recent tick was taken.
	rm    *resmon.Process
	lease int64
	ticks [tickRing]tickTime
	// tick0 is when tick 0 was due: tick t is due at tick0 + t × Tick.
	tick0 time.Time

	// Loop state.
	halt      string
	left      bool
	stopReq   bool // POST /v1/leave: a planned stop, as on SIGTERM
	leaving   bool
	fatal     error
	regroups  uint64
	counters  transportCounters
	startedAt time.Time
	addrPeer  map[netip.Addr]regroup.NodeID
	claimAt   time.Time

	// Metrics (loop only): admin API writes' commit latency, groups taken
	// over and when this node claimed each.
	gupLatency *histogram
	failovers  *histogram
	claims     map[string]time.Time

	wg sync.WaitGroup
}

func (c *Config) defaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Tick, DefaultTick)
	def(&c.HeartbeatInterval, 10*c.Tick)
	if c.HeartbeatThreshold <= 0 {
		c.HeartbeatThreshold = heartbeat.DefaultThreshold
	}
	def(&c.QuorumCheckInterval, time.Second)
	def(&c.DefenceDelay, DefaultDefenceDelay)
	def(&c.FormDelay, max(DefaultFormDelay, c.QuorumCheckInterval+500*time.Millisecond))
	def(&c.JoinWindow, DefaultJoinWindow)
	def(&c.CommandTimeout, DefaultCommandTimeout)
	def(&c.DiskBeatInterval, c.HeartbeatInterval)
	def(&c.Lease, time.Duration(core.DefaultLeaseTicks)*c.Tick)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.After == nil {
		c.After = time.After
	}
}

func ticks(d, tick time.Duration) int { return max(1, int((d+tick-1)/tick)) }

// New checks cfg and builds the node core. It opens nothing: Run does.
func New(cfg Config) (*Daemon, error) {
	cfg.defaults()
	if cfg.Device == nil {
		return nil, errors.New("daemon: no quorum device")
	}
	if len(cfg.Networks) == 0 {
		return nil, errors.New("daemon: no networks")
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("daemon: port %d", cfg.Port)
	}
	d := &Daemon{
		cfg:      cfg,
		log:      cfg.Logger,
		inc:      cfg.Incarnation,
		seal:     regroup.NewSealer(cfg.Key),
		win:      map[regroup.NodeID]*replayWindow{},
		peers:    map[regroup.NodeID][]netip.AddrPort{},
		recv:     make(chan packet, 1024),
		jobs:     make(chan core.DiskCommand, 256),
		results:  make(chan core.DiskResult, 256),
		calls:    make(chan func(), 16),
		status:   make(chan chan Status),
		stopped:  make(chan struct{}),
		addrPeer: map[netip.Addr]regroup.NodeID{},
		db:       db.New(),
		gupIn:    make(chan gupFrame, 1024),
		savedc:   make(chan uint64, 1),
		writes:   map[uint64]pendingWrite{},
		reads:    map[uint64]func(bool){},
		watchers: map[int]chan []db.Change{},

		gupLatency: newHistogram(latencyBounds),
		failovers:  newHistogram(latencyBounds),
		claims:     map[string]time.Time{},
	}
	if d.inc == 0 {
		d.inc = uint64(cfg.Now().UnixNano())
	}
	var all regroup.NodeSet
	found := false
	for _, n := range cfg.Nodes {
		if !n.ID.Valid() {
			return nil, fmt.Errorf("daemon: node id %d", n.ID)
		}
		if len(n.Addrs) != len(cfg.Networks) {
			return nil, fmt.Errorf("daemon: node %d has %d addresses for %d networks", n.ID, len(n.Addrs), len(cfg.Networks))
		}
		all = all.Add(n.ID)
		if n.ID == cfg.Self {
			d.self, found = n, true
			continue
		}
		for _, a := range n.Addrs {
			d.peers[n.ID] = append(d.peers[n.ID], netip.AddrPortFrom(a, uint16(cfg.Port)))
			d.addrPeer[a.Unmap()] = n.ID
		}
	}
	if !found {
		return nil, fmt.Errorf("daemon: node %d is not among the configured nodes", cfg.Self)
	}
	interval := ticks(cfg.HeartbeatInterval, cfg.Tick)
	node, err := core.New(core.Config{
		ClusterTag: cfg.ClusterTag, Self: cfg.Self, Incarnation: d.inc, Nodes: all,
		Networks: len(cfg.Networks), Secret: cfg.Key,
		HeartbeatTicks: interval, HeartbeatThreshold: cfg.HeartbeatThreshold,
		// Each daemon's ticks start with its process, so the nodes' sends
		// are spread already; phase 0 puts this node's on the ticks of the
		// failover manager's reconciliation and the quorum check (every
		// 10 and 100 ticks), so that an idle loop wakes once for them.
		HeartbeatPhase:  0,
		JoinWindowTicks: ticks(cfg.JoinWindow, cfg.Tick),
		// A follower waits for the leader's arbitration: cover the longest
		// class wait, a few commands each up to the command timeout.
		ArbitrationTicks: max(regroup.DefaultArbitrationTicks, ticks(2*cfg.DefenceDelay+2*cfg.CommandTimeout, cfg.Tick)),
		DefenceTicks:     ticks(cfg.DefenceDelay, cfg.Tick),
		FormTicks:        ticks(cfg.FormDelay, cfg.Tick),
		CheckTicks:       ticks(cfg.QuorumCheckInterval, cfg.Tick),
		DiskBeatTicks:    ticks(cfg.DiskBeatInterval, cfg.Tick),
		LeaseTicks:       ticks(cfg.Lease, cfg.Tick),
		State:            dbState{d.db},
		Logger:           coreLogger(cfg.Logger, "core"),
		DB:               fmDB(cfg, d),
		Name:             d.self.Name,
	})
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.node = node
	d.loadLocalCopy()
	return d, nil
}

// Run runs the node until ctx ends (a planned stop: ClusterExit, nil) or
// the node halts (*HaltError) or fails. It joins the cluster through a
// sponsor, or forms it when no member answers within the join window.
func (d *Daemon) Run(ctx context.Context) (err error) {
	d.startedAt = d.cfg.Now()
	defer func() {
		if cerr := d.cfg.Device.Close(); cerr != nil && err == nil {
			d.log.Warn("close quorum device", "err", cerr)
		}
	}()
	if err := d.openDisk(ctx); err != nil {
		return err
	}
	if err := d.openSockets(); err != nil {
		return err
	}
	if err := d.startStreams(); err != nil {
		d.closeSockets()
		return err
	}
	workCtx, stopWork := context.WithCancel(context.Background())
	d.wg.Add(1)
	go d.worker(workCtx)
	rmCtx, stopResmon := context.WithCancel(context.Background())
	if d.cfg.Resmon.Path != "" {
		d.wg.Add(1)
		go d.superviseResmon(rmCtx)
	}
	var admins []*adminServer
	for _, l := range []struct {
		on    bool
		serve func() (*adminServer, error)
	}{{d.cfg.AdminSocket != "", d.serveAdmin}, {d.cfg.RemoteAPI != nil, d.serveRemoteAdmin}} {
		if !l.on {
			continue
		}
		a, err := l.serve()
		if err != nil {
			for _, a := range admins {
				a.close()
			}
			d.closeSockets()
			stopWork()
			stopResmon()
			close(d.stopped)
			d.wg.Wait()
			return err
		}
		admins = append(admins, a)
	}
	defer func() {
		for _, a := range admins {
			a.close()
		}
		d.failPending("the daemon stopped")
		d.maybeSave(true)
		if d.mesh != nil {
			d.mesh.Close()
		}
		d.closeSockets()
		stopWork()
		stopResmon()
		close(d.stopped)
		d.wg.Wait()
	}()
	d.log.Info("starting", "incarnation", d.inc, "networks", len(d.cfg.Networks),
		"join_window", d.cfg.JoinWindow.String())
	d.noteStart()
	d.node.Start()
	d.flush()
	return d.loop(ctx)
}

func (d *Daemon) loop(ctx context.Context) error {
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	var armed time.Time
	// A planned stop drains first (the groups move away), on this loop,
	// then leaves: stop is nil once it began, draining bounds it.
	stop := ctx.Done()
	var draining <-chan time.Time
	for {
		// Sleep until the core's next tick (every tick while draining:
		// Drained is asked after each), or the next save of the local
		// copy, or an input.
		next := d.node.NextTick()
		if stop == nil {
			next = d.node.Now() + 1
		}
		due := d.tickAt(next)
		if d.dirty && !d.saving && d.cfg.DBPath != "" {
			if at := d.savedAt.Add(saveEvery); at.Before(due) {
				due = at
			}
		}
		if !due.Equal(armed) {
			armed = due
			wake.Reset(max(0, due.Sub(d.cfg.Now())))
		}
		select {
		case <-stop:
			if errors.Is(context.Cause(ctx), ErrAbandon) {
				d.log.Warn("abandoned without ClusterExit")
				return ErrAbandon
			}
			stop, draining = nil, d.cfg.After(drainTimeout)
			d.node.Drain()
		case <-draining:
			d.log.Warn("drain did not finish in time")
			return d.leave()
		case <-wake.C:
			armed = time.Time{}
			d.advance()
			d.maybeSave(false)
		case f := <-d.gupIn:
			d.advance()
			d.stepGUP(f)
		case seq := <-d.savedc:
			d.saving, d.saved = false, seq
		case p := <-d.recv:
			d.advance()
			d.receive(p)
		case r := <-d.results:
			d.advance()
			d.node.StepDisk(r)
		case f := <-d.calls:
			d.advance()
			f()
		case reply := <-d.status:
			d.advance()
			reply <- d.snapshot()
		}
		d.flush()
		if d.stopReq && stop != nil {
			stop, draining = nil, d.cfg.After(drainTimeout)
			d.node.Drain()
			d.flush()
		}
		if d.fatal != nil {
			return d.fatal
		}
		if d.halt != "" {
			return &HaltError{Reason: d.halt}
		}
		if d.left {
			return nil
		}
		if stop == nil && d.node.Drained() {
			if d.rm != nil {
				d.log.Info("drained")
			}
			return d.leave()
		}
	}
}

// leave is the planned stop: ClusterExit to every member, and the key
// comes off the disk (waited for, up to a few command timeouts).
func (d *Daemon) leave() error {
	if err := d.node.Leave(); err != nil {
		d.log.Warn("stopping without ClusterExit", "reason", err.Error())
		return nil
	}
	d.leaving = true
	d.flush()
	timeout := d.cfg.After(3 * d.cfg.CommandTimeout)
	for !d.left {
		select {
		case r := <-d.results:
			d.node.StepDisk(r)
			d.flush()
		case <-timeout:
			d.log.Warn("leave: key removal did not finish in time")
			return nil
		}
	}
	return nil
}

// flush carries out the core's Ready: it sends, queues disk commands for
// the worker and logs events. It runs on the loop goroutine only.
func (d *Daemon) flush() {
	for d.node.HasReady() {
		rd := d.node.Ready()
		for _, s := range rd.Sends {
			d.sendHeartbeat(s)
		}
		for _, m := range rd.Messages {
			d.sendMessage(m)
		}
		for _, c := range rd.Disk {
			d.submit(c)
		}
		for _, e := range rd.Detector {
			d.detectorEvent(e)
		}
		for _, e := range rd.Events {
			d.coreEvent(e)
		}
		for _, e := range rd.Membership {
			d.membershipEvent(e)
		}
		d.flushGUP(rd.GUP)
		d.resmonReady(rd)
	}
}

// fmDB is the database the failover manager reads: the daemon's, when
// this node hosts resources.
func fmDB(cfg Config, d *Daemon) *db.DB {
	if cfg.Resmon.Path == "" {
		return nil
	}
	return d.db
}

func ids(s regroup.NodeSet) []int {
	out := []int{}
	for _, id := range s.IDs() {
		out = append(out, int(id))
	}
	return out
}

func (d *Daemon) netName(k int) string {
	if k >= 0 && k < len(d.cfg.Networks) {
		return d.cfg.Networks[k].Name
	}
	return fmt.Sprint(k)
}

func (d *Daemon) detectorEvent(e heartbeat.Event) {
	switch e.Kind {
	case heartbeat.PeerAlive:
		d.log.Info("peer alive", "peer", int(e.Peer), "incarnation", e.Incarnation)
	case heartbeat.PeerSuspected:
		silent := (d.node.Now() - e.LastHeard) * d.cfg.Tick.Milliseconds()
		if e.NeverHeard {
			d.log.Info("peer suspected", "peer", int(e.Peer), "silent_ms", silent, "never_heard", true,
				"disk_alive", d.node.DiskAlive(e.Peer))
		} else {
			d.log.Info("peer suspected", "peer", int(e.Peer), "silent_ms", silent, "disk_alive", d.node.DiskAlive(e.Peer))
		}
	case heartbeat.PeerRestarted:
		d.log.Info("peer restarted", "peer", int(e.Peer), "incarnation", e.Incarnation)
	case heartbeat.NetworkDown:
		if e.Network >= 0 && e.Network < len(d.counters.networkDown) {
			d.counters.networkDown[e.Network]++
		}
		d.log.Info("network down", "peer", int(e.Peer), "network", d.netName(e.Network))
	case heartbeat.NetworkUp:
		d.log.Info("network up", "peer", int(e.Peer), "network", d.netName(e.Network))
	}
}

func (d *Daemon) membershipEvent(e regroup.Event) {
	switch e.Kind {
	case regroup.EventRegroupStarted:
		d.regroups++
		ep, _ := d.node.Membership()
		d.log.Info("regroup started", "round", e.Round, "epoch", ep.String())
	case regroup.EventMembershipInstalled:
		d.log.Info("membership installed", "epoch", e.Epoch.String(), "members", ids(e.Members), "reason", e.Reason)
	case regroup.EventNodeDown:
		d.log.Info("node down", "peer", int(e.Node))
	case regroup.EventNodeUp:
		d.log.Info("node up", "peer", int(e.Node))
	case regroup.EventNodeLeft:
		d.log.Info("node left", "peer", int(e.Node))
	case regroup.EventCleanup2:
		d.log.Debug("cleanup2", "epoch", e.Epoch.String())
	case regroup.EventStabilized:
		d.log.Info("stabilized", "epoch", e.Epoch.String(), "members", ids(e.Members))
	case regroup.EventJoined:
		d.log.Info("joined", "epoch", e.Epoch.String(), "members", ids(e.Members))
	case regroup.EventFormed:
		_, m := d.node.Membership()
		d.log.Info("formed", "epoch", e.Epoch.String(), "members", ids(m))
	case regroup.EventJoinFailed:
		if e.Fatal && (d.node.Refused() != "" || e.Evicted) {
			d.log.Error("join refused", "reason", e.Reason, "fatal", true)
		} else {
			d.log.Info("join failed", "reason", e.Reason, "fatal", e.Fatal)
		}
		switch {
		case e.Evicted:
			d.fatal = fmt.Errorf("%w: %s", ErrEvicted, e.Reason)
		case e.Fatal:
			d.fatal = fmt.Errorf("%w: %s", ErrJoinRefused, e.Reason)
		}
	case regroup.EventLeft:
		d.log.Info("left", "epoch", e.Epoch.String())
	case regroup.EventHalt:
		d.log.Error("halt", "reason", e.Reason)
		if d.halt == "" {
			d.halt = e.Reason
		}
		if e.Evicted && d.fatal == nil {
			d.fatal = fmt.Errorf("%w: %s", ErrEvicted, e.Reason)
		}
	default:
		d.log.Debug("membership event", "event", e.String())
	}
}

func (d *Daemon) coreEvent(e core.Event) {
	switch e.Kind {
	case core.EventArbitrationStarted:
		d.claimAt = d.cfg.Now()
		d.log.Info("arbitration started", "round", e.Round, "members", ids(e.Members), "class", e.Class.String())
	case core.EventArbitrationWaits:
		d.log.Info("arbitration waits", "round", e.Round, "class", e.Class.String(),
			"ms", e.Ticks*d.cfg.Tick.Milliseconds(), "holder", e.Owner)
	case core.EventArbitrationDone:
		d.log.Info("arbitration done", "round", e.Round, "won", e.Won, "owner", e.Owner, "reason", e.Reason,
			"ms", d.cfg.Now().Sub(d.claimAt).Milliseconds())
	case core.EventKeyRegistered:
		d.log.Info("key registered", "key", fmt.Sprintf("%#x", e.Key))
	case core.EventRegisterFailed:
		d.log.Warn("register", "err", e.Reason)
	case core.EventKeyRemoved:
		d.log.Info("key removed", "victim", fmt.Sprintf("%#x", e.Key))
	case core.EventUnregistered:
		if e.Reason != "" {
			d.log.Warn("remove key", "err", e.Reason)
		}
		if d.leaving {
			d.left = true
		}
	case core.EventQuorumLost:
		d.log.Error("lost quorum", "reason", e.Reason)
	case core.EventPillSent:
		d.log.Info("poison pill sent", "peer", int(e.Node), "incarnation", e.Incarnation)
	case core.EventPillRead:
		d.log.Error("poison pill read", "from", int(e.Node), "reason", e.Reason)
	case core.EventDiskDown:
		d.log.Warn("disk heartbeat failed", "reason", e.Reason)
	}
}
