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
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wolfpack-ha/wolfpack/initramfs/boot"
)

const (
	etcDir   = "/etc/wolfpack"
	clusterd = "/bin/clusterd"
	agent    = "/bin/wolfpack-agent"
	logDir   = "/var/log"
)

// drainTimeout bounds clusterd's drain at shutdown, as the unit's
// TimeoutStopSec does: then init stops what is left anyway.
const drainTimeout = 90 * time.Second

// Main runs the command with os.Args and exits with its status.
func Main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("prog", "wolfpack-init")
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "wolfpack-init: runs only as PID 1 of the appliance")
		os.Exit(2)
	}
	// A shutdown asked for by a signal, the power button or Ctrl-Alt-Del
	// stops clusterd first (SIGTERM: it moves its groups away and leaves
	// the cluster), as systemd stops the unit before powering off.
	requests := make(chan shutdownRequest, 1)
	ask := func(a boot.Action, by string) {
		select {
		case requests <- shutdownRequest{a, by}:
		default: // one is under way
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, boot.ShutdownSignals...)
	go func() {
		for sig := range sigs {
			if a, ok := boot.SignalAction(sig); ok {
				ask(a, "signal "+unix.SignalName(sig.(syscall.Signal)))
			}
		}
	}()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := run(ctx, log, ask); err != nil {
			log.Error("init stopped", "err", err)
		}
		boot.ProcessReaper() // orphans are reaped even if run stopped before it started the reaper
	}()
	// PID 1 must not exit (the kernel panics): it stays, reaping orphans,
	// until it stops the machine.
	req := <-requests
	log.Warn("shutdown requested: stopping clusterd", "action", req.action.String(), "by", req.by)
	t := time.Now()
	stop()
	select {
	case <-done:
		log.Info("clusterd stopped", "took", time.Since(t).Round(time.Millisecond))
	case <-time.After(drainTimeout):
		log.Warn("clusterd did not stop in time; stopping the machine anyway", "timeout", drainTimeout)
	}
	if err := boot.Finish(log, req.action, 5*time.Second); err != nil {
		log.Error("could not stop the machine", "err", err)
	}
	select {}
}

type shutdownRequest struct {
	action boot.Action
	by     string
}

func run(ctx context.Context, log *slog.Logger, ask func(boot.Action, string)) error {
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
	for _, err := range boot.LoadModules(log, boot.ModuleOrder) {
		log.Warn("kernel module", "err", err)
	}
	modules := time.Since(t)
	if err := boot.DisableCtrlAltDel(); err != nil {
		log.Warn("ctrl-alt-del", "err", err)
	}
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
	if ctx.Err() != nil {
		return nil // a shutdown came first
	}
	go powerButton(log, ask)
	code, err := supervise(ctx, log, "clusterd", []string{clusterd, "-config", settings.NodeFile}, env)
	if errors.Is(err, context.Canceled) {
		return nil // stopped for a shutdown
	}
	if err != nil {
		return err
	}
	log.Warn("clusterd stopped for good", "exit", code)
	return nil
}

// powerButton loads the late modules (the ACPI button, evdev) on a thread
// at nice 19, so that clusterd's start, on the same CPU, comes first, then
// asks for a power-off at each press of the power button.
func powerButton(log *slog.Logger, ask func(boot.Action, string)) {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	if err := unix.Setpriority(unix.PRIO_PROCESS, 0, 19); err != nil {
		log.Warn("late modules: nice", "err", err)
	}
	t := time.Now()
	for _, err := range boot.LoadModules(log, boot.ModuleOrderLate) {
		log.Warn("kernel module", "err", err)
	}
	log.Info("late modules loaded", "took", time.Since(t).Round(time.Millisecond))
	boot.WatchPowerButtons(log, "/sys", "/dev", 5*time.Second, func() { ask(boot.PowerOff, "power button") })
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
