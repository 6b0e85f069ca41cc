// Package initmain is the wolfpack-init command: cmd/wolfpack-init runs it, and so does
// the appliance's multi-call binary (cmd/wolfpack) under that name.
package initmain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/wolfpack-ha/wolfpack/initramfs/boot"
)

const (
	etcDir   = "/etc/wolfpack"
	clusterd = "/bin/clusterd"
	agent    = "/bin/wolfpack-agent"
	logDir   = "/var/log"
)

// Main runs the command with os.Args and exits with its status.
func Main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("prog", "wolfpack-init")
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "wolfpack-init: runs only as PID 1 of the appliance")
		os.Exit(2)
	}
	if err := run(context.Background(), log); err != nil {
		log.Error("init stopped", "err", err)
	}
	// PID 1 must not exit (the kernel panics): stay, reaping orphans.
	boot.ProcessReaper()
	select {}
}

func run(ctx context.Context, log *slog.Logger) error {
	start := time.Now()
	if err := boot.MountBasics(); err != nil {
		return err
	}
	_ = os.Setenv("PATH", boot.Path)
	boot.ProcessReaper() // from here on every child, ours or orphaned, is reaped
	cmdline, err := boot.ReadCmdline()
	if err != nil {
		return err
	}
	t := time.Now()
	for _, err := range boot.LoadModules(log) {
		log.Warn("kernel module", "err", err)
	}
	modules := time.Since(t)
	t = time.Now()
	settings := cmdline
	switch dev := cmdline.ConfigDev; dev {
	case "none":
	default:
		if dev == "" {
			dev, err = boot.FindConfigDisk("/sys", "/dev", time.Now().Add(5*time.Second))
			if errors.Is(err, boot.ErrNoConfigDisk) {
				log.Info("no config disk", "node_file", cmdline.NodeFile)
				break
			}
		}
		c, err := boot.ReadConfigDisk(dev, time.Now().Add(20*time.Second))
		if err != nil {
			return err
		}
		if err := c.Install(etcDir); err != nil {
			return err
		}
		if c.Settings != nil {
			settings = c.Settings.Over(cmdline)
		}
		log.Info("config disk", "device", dev, "files", len(c.Files), "boot_conf", c.Settings != nil)
	}
	config := time.Since(t)
	if settings.Hostname != "" {
		if err := boot.SetHostname(settings.Hostname); err != nil {
			log.Warn("hostname", "err", err)
		}
	}
	// The NICs and the disks are independent: each is waited for while
	// the other is set up.
	deadline := time.Now().Add(20 * time.Second)
	t = time.Now()
	var network time.Duration
	netDone := make(chan struct{})
	go func() {
		defer close(netDone)
		if err := boot.SetupNet(settings.Interfaces, deadline); err != nil {
			log.Warn("network", "err", err)
		}
		network = time.Since(t)
	}()
	if err := boot.WaitSCSIDisks("/sys", settings.Disks, deadline); err != nil {
		log.Warn("disks", "err", err)
	}
	links, err := boot.MakeDiskLinks("/sys", "/dev")
	if err != nil {
		log.Warn("disk links", "err", err)
	}
	disks := time.Since(t)
	<-netDone
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	log.Info("set up", "hostname", settings.Hostname, "nics", len(settings.Interfaces), "disk_ids", len(links),
		"setup", ms(time.Since(start)), "modules", ms(modules), "config", ms(config), "network", ms(network), "disks", ms(disks),
		"uptime", boot.Uptime())

	env := []string{"PATH=" + boot.Path, "HOME=/root", "TERM=linux"}
	if _, err := os.Stat(agent); err == nil {
		go supervise(ctx, log, "wolfpack-agent", []string{agent, "-serve", "-port", settings.Port}, env)
	}
	if _, err := os.Stat(settings.NodeFile); err != nil {
		return fmt.Errorf("no node file, clusterd not started (a config disk with node.toml, or wolfpack.node=): %w", err)
	}
	code, err := supervise(ctx, log, "clusterd", []string{clusterd, "-config", settings.NodeFile}, env)
	if err != nil {
		return err
	}
	log.Warn("clusterd stopped for good", "exit", code)
	return nil
}

// supervise runs argv under a boot.Supervisor, its output on the console
// and in /var/log/NAME.log.
func supervise(ctx context.Context, log *slog.Logger, name string, argv, env []string) (int, error) {
	out := io.Writer(os.Stderr)
	if f, err := os.OpenFile(logDir+"/"+name+".log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
		out = io.MultiWriter(os.Stderr, f)
	} else {
		log.Warn("log file", "name", name, "err", err)
	}
	s := &boot.Supervisor{
		Log: log.With("supervised", name), Argv: argv, Env: env, Output: out,
		NoRestart: []int{2, 4}, // bad configuration, evicted: as RestartPreventExitStatus=2 4
	}
	return s.Run(ctx)
}
