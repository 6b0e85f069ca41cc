// Package clusterdmain is the clusterd command: cmd/clusterd runs it, and so does
// the appliance's multi-call binary (cmd/wolfpack) under that name.
package clusterdmain

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/config"
	"github.com/wolfpack-ha/wolfpack/internal/daemon"
	"github.com/wolfpack-ha/wolfpack/internal/rtsched"
	"github.com/wolfpack-ha/wolfpack/internal/version"
	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi"
)

// Main runs the command with os.Args and exits with its status.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err == nil || errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(os.Stderr, "clusterd:", err)
		os.Exit(2)
	}
	if errors.Is(err, daemon.ErrEvicted) {
		printError(os.Stderr, err)
		os.Exit(daemon.ExitEvicted) // not restarted by the unit: added back first
	}
	var he *daemon.HaltError
	if errors.As(err, &he) {
		os.Exit(he.ExitCode()) // already logged as "halt"
	}
	printError(os.Stderr, err)
	os.Exit(1)
}

// printError writes err with "clusterd: " before each of its lines (a
// node file's problems are one a line).
func printError(w io.Writer, err error) {
	for line := range strings.SplitSeq(err.Error(), "\n") {
		fmt.Fprintln(w, "clusterd:", line)
	}
}

type usageError struct{ error }

const usage = `usage: clusterd [-config FILE] [-log-level debug|info]
       clusterd --check-config [-config FILE]
       clusterd --version`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clusterd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	path := fs.String("config", config.DefaultPath, "the node file (TOML, docs/clusterd.md)")
	level := fs.String("log-level", "info", "debug or info")
	check := fs.Bool("check-config", false, "parse and validate the node file, print a summary, and exit (0: valid, 1: not)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.String("clusterd"))
		return nil
	}
	var lv slog.Level
	switch *level {
	case "debug":
		lv = slog.LevelDebug
	case "info":
		lv = slog.LevelInfo
	default:
		return usageError{fmt.Errorf("-log-level %q: want debug or info", *level)}
	}
	cfg, err := config.Load(*path, config.Options{})
	if err != nil {
		return err
	}
	if *check {
		summary(stdout, *path, cfg)
		return nil
	}
	self := cfg.Self()
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv})).With("node", cfg.NodeID)
	realtime(cfg.RealtimePriority, log)

	var d *daemon.Daemon
	dev, err := daemon.OpenDevice(ctx, cfg.Quorum.Device, cfg.Quorum.InitiatorName, log.With("component", "iscsi"),
		func(info iscsi.ReconnectInfo) { d.PathReplaced(info) })
	if err != nil {
		return err
	}
	dc := daemon.Config{
		ClusterTag:          cfg.ClusterTag,
		Key:                 cfg.Key,
		Self:                regroup.NodeID(cfg.NodeID),
		Port:                cfg.Port,
		AdminSocket:         cfg.AdminSocket,
		ClusterName:         cfg.Cluster,
		QuorumDevice:        cfg.Quorum.Device,
		HeartbeatInterval:   cfg.Timing.HeartbeatInterval,
		HeartbeatThreshold:  cfg.Timing.HeartbeatThreshold,
		QuorumCheckInterval: cfg.Timing.QuorumCheckInterval,
		JoinWindow:          cfg.Timing.JoinWindow,
		DefenceDelay:        cfg.Timing.DefenceDelay,
		FormDelay:           cfg.Timing.FormDelay,
		Lease:               cfg.Timing.Lease,
		Device:              dev,
		Logger:              log,
		DBPath:              cfg.DBPath(),
	}
	var why error
	if dc.Resmon, why = resmonConfig(cfg.Resmon); dc.Resmon.Path == "" {
		log.Warn("no resmon: this node hosts no resources", "reason", why.Error())
	}
	if a := cfg.API; a != nil {
		dc.RemoteAPI = &daemon.RemoteAPI{Listen: a.Listen.String(), ClientCAs: a.ClientCAs, Cert: a.Cert}
	}
	if cfg.Streams() {
		dc.Credentials, dc.StreamListen = cfg.Credentials, cfg.StreamListen()
		dc.StreamPeers = cfg.StreamAddrs()
	}
	for _, n := range cfg.Nodes {
		dc.Nodes = append(dc.Nodes, daemon.Node{ID: regroup.NodeID(n.ID), Name: n.Name, Addrs: n.Addrs})
	}
	for _, n := range cfg.Networks {
		dc.Networks = append(dc.Networks, daemon.Network{Name: n.Name, Interface: n.Interface})
	}
	d, err = daemon.New(dc)
	if err != nil {
		dev.Close()
		return err
	}
	log.Info("clusterd", "cluster", cfg.Cluster, "name", self.Name, "quorum", cfg.Quorum.Device,
		"version", version.String("clusterd"), "timing_profile", cfg.Timing.Profile)
	return d.Run(ctx)
}

// realtime puts every thread of clusterd at SCHED_RR at prio (0: leaves
// them alone) and locks its memory, as corosync does, so that a busy
// node cannot delay its heartbeats, its disk heartbeat and the lease
// renewals it sends resmon; resmon, started later, inherits the policy
// and starts its applications at normal scheduling (internal/rtsched).
// A refusal is a warning, once: clusterd runs on at normal scheduling.
func realtime(prio int, log *slog.Logger) {
	if prio == 0 {
		log.Info("normal scheduling: realtime_priority is 0")
		return
	}
	r, err := rtsched.Realtime(prio)
	if err != nil {
		log.Warn("real-time scheduling refused: running at normal scheduling, heartbeats may be late on a busy node", "priority", prio, "err", err.Error())
		return
	}
	if r.LockErr != nil {
		log.Warn("real-time scheduling, but memory not locked", "priority", prio, "threads", r.Threads, "err", r.LockErr.Error())
		return
	}
	log.Info("real-time scheduling", "policy", "SCHED_RR", "priority", prio, "threads", r.Threads, "memory_locked", r.Locked)
}

// resmonConfig finds resmon: resmon.path, else beside this binary, else
// on $PATH ("none": no resources on this node). Without one the error
// says why.
func resmonConfig(r config.Resmon) (daemon.Resmon, error) {
	out := daemon.Resmon{Path: r.Path, Watchdog: r.Watchdog, StateDir: r.StateDir}
	switch r.Path {
	case "none":
		out.Path = ""
		return out, errors.New(`resmon.path is "none"`)
	case "":
	default:
		return out, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "resmon")
		if _, err := os.Stat(p); err == nil {
			out.Path = p
			return out, nil
		}
	}
	p, err := exec.LookPath("resmon")
	if err != nil {
		return out, fmt.Errorf("resmon: not beside %s nor on $PATH (set resmon.path, or \"none\" for a node without resources): %w", os.Args[0], err)
	}
	out.Path = p
	return out, nil
}

// summary prints what --check-config found: the node, the cluster, the
// networks, the quorum device, the streams, resmon and the effective
// timing.
func summary(w io.Writer, path string, c *config.Config) {
	self := c.Self()
	fmt.Fprintf(w, "%s: valid\n", path)
	row := func(k, format string, args ...any) {
		fmt.Fprintf(w, "  %-9s "+format+"\n", append([]any{k}, args...)...)
	}
	row("node", "%d (%s), admin socket %s, state %s", c.NodeID, self.Name, cmp.Or(c.AdminSocket, "none"), c.StateDir)
	row("cluster", "%s, tag %08x, UDP port %d, %d nodes", c.Cluster, c.ClusterTag, c.Port, len(c.Nodes))
	for k, n := range c.Networks {
		row("network", "%s on %s, %s", n.Name, cmp.Or(n.Interface, "no device"), self.Addrs[k])
	}
	for _, n := range c.Nodes {
		if n.ID != c.NodeID {
			addrs := make([]string, len(n.Addrs))
			for k, a := range n.Addrs {
				addrs[k] = a.String()
			}
			row("peer", "%d (%s) at %s", n.ID, n.Name, strings.Join(addrs, ", "))
		}
	}
	q := c.Quorum.Device
	if c.Quorum.InitiatorName != "" {
		q += " as " + c.Quorum.InitiatorName
	}
	row("quorum", "%s", q)
	if c.Streams() {
		row("streams", "TCP port %d, certificate for node %d valid until %s", c.StreamPort, c.Credentials.Node,
			c.Credentials.Certificate().NotAfter.UTC().Format(time.DateOnly))
	} else {
		row("streams", "none: this node replicates nothing (set [streams])")
	}
	if a := c.API; a != nil {
		row("api", "TCP %s with TLS, server certificate %q valid until %s, client CAs: %d", a.Listen, a.Cert.Leaf.Subject.CommonName,
			a.Cert.Leaf.NotAfter.UTC().Format(time.DateOnly), len(a.ClientCAs))
	} else {
		row("api", "the admin socket only (set [api] for TCP)")
	}
	if r, err := resmonConfig(c.Resmon); r.Path != "" {
		row("resmon", "%s, state %s", r.Path, r.StateDir)
	} else {
		row("resmon", "none: %v", err)
	}
	if c.RealtimePriority > 0 {
		row("schedule", "SCHED_RR priority %d, memory locked; resmon's applications at normal scheduling", c.RealtimePriority)
	} else {
		row("schedule", "normal (realtime_priority = 0)")
	}
	t := c.Timing
	row("timing", "profile %s: heartbeat %v × %d (suspicion after %v of silence), quorum check %v,", t.Profile,
		t.HeartbeatInterval, t.HeartbeatThreshold, time.Duration(t.HeartbeatThreshold)*t.HeartbeatInterval, t.QuorumCheckInterval)
	row("", "join window %v, defence delay %v, form delay %v, lease %v", t.JoinWindow, t.DefenceDelay, t.FormDelay, t.Lease)
}
