// Command clusterd is the Wolfpack cluster service (docs/design.md,
// "Components"). This version
// runs membership only: heartbeats on every private network, join through a
// sponsor or form on the quorum disk, regroup, leave on SIGTERM; see
// docs/clusterd.md.
//
//	clusterd -config /etc/wolfpack/clusterd.json [-log-level debug|info]
//	clusterd --version
//
// Exit status: 0 after a planned stop, 3 after a halt (pruned, lost the
// arbitration, lost quorum), 1 on any other error, 2 for a bad command line.
package main

import (
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
	"syscall"

	"github.com/wolfpack-ha/wolfpack/internal/config"
	"github.com/wolfpack-ha/wolfpack/internal/daemon"
	"github.com/wolfpack-ha/wolfpack/internal/version"
	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi"
)

func main() {
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
	var he *daemon.HaltError
	if errors.As(err, &he) {
		os.Exit(he.ExitCode()) // already logged as "halt"
	}
	fmt.Fprintln(os.Stderr, "clusterd:", err)
	os.Exit(1)
}

type usageError struct{ error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clusterd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (JSON, docs/clusterd.md)")
	level := fs.String("log-level", "info", "debug or info")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err // -h: the usage was printed; exit 0
		}
		return usageError{err}
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.String("clusterd"))
		return nil
	}
	if *path == "" || fs.NArg() > 0 {
		fs.Usage()
		return usageError{errors.New("usage: clusterd -config FILE [-log-level debug|info]")}
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
	self := cfg.Self()
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv})).With("node", cfg.NodeID)

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
		HeartbeatInterval:   cfg.HeartbeatInterval,
		HeartbeatThreshold:  cfg.HeartbeatThreshold,
		QuorumCheckInterval: cfg.QuorumCheckInterval,
		Device:              dev,
		Logger:              log,
		DBPath:              cfg.DBPath(),
	}
	var why error
	if dc.Resmon, why = resmonConfig(cfg.Resmon); dc.Resmon.Path == "" {
		log.Warn("no resmon: this node hosts no resources", "reason", why.Error())
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
	log.Info("clusterd", "cluster", cfg.Cluster, "name", self.Name, "quorum", cfg.Quorum.Device)
	return d.Run(ctx)
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
