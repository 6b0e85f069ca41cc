// Package resmonmain is the resmon command: cmd/resmon runs it, and so does
// the appliance's multi-call binary (cmd/wolfpack) under that name.
package resmonmain

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/wolfpack-ha/wolfpack/internal/resmon"
	"github.com/wolfpack-ha/wolfpack/internal/rtsched"
	"github.com/wolfpack-ha/wolfpack/internal/version"
	"github.com/wolfpack-ha/wolfpack/resources"
	"github.com/wolfpack-ha/wolfpack/resources/genericapp"
	"github.com/wolfpack-ha/wolfpack/resources/genericservice"
	"github.com/wolfpack-ha/wolfpack/resources/ipaddr"
	"github.com/wolfpack-ha/wolfpack/resources/netname"
	"github.com/wolfpack-ha/wolfpack/resources/ocf"
	"github.com/wolfpack-ha/wolfpack/resources/physicaldisk"
)

// Main runs the command with os.Args and exits with its status.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return // -h: the usage was printed
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "resmon:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("resmon", flag.ContinueOnError)
	fs.SetOutput(stderr)
	watchdog := fs.String("watchdog", "", "watchdog device to pet while the lease is valid (e.g. /dev/watchdog); empty: none")
	stateDir := fs.String("state-dir", "/run/wolfpack/resmon", "directory recording the applications' process groups")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	ocfRoot := fs.String("ocf-root", ocf.DefaultRoot, "OCF_ROOT: the OCF resource agents are ROOT/resource.d/PROVIDER/TYPE")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.String("resmon"))
		return nil
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	f := os.NewFile(3, "clusterd")
	if f == nil {
		return errors.New("no fd 3: resmon is started by clusterd with its socket as fd 3")
	}
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("fd 3 is not clusterd's socket: %w", err)
	}
	defer conn.Close()
	// clusterd's real-time policy, inherited; the resources' programs
	// start at normal scheduling (internal/rtsched).
	// The lock is not inherited: a real-time resmon, the lease's
	// enforcer, locks its own memory as clusterd does.
	if pol, prio, err := rtsched.Policy(0); err == nil {
		locked := false
		if pol == "SCHED_RR" || pol == "SCHED_FIFO" {
			if err := rtsched.LockMemory(); err != nil {
				log.Warn("memory not locked", "err", err.Error())
			} else {
				locked = true
			}
		}
		log.Info("resmon scheduling", "policy", pol, "priority", prio, "memory_locked", locked, "children", "SCHED_OTHER")
	}
	types := map[string]resources.Type{}
	for _, t := range []resources.Type{genericapp.Type{StateDir: *stateDir}, genericservice.Type{}, ipaddr.Type{}, netname.Type{},
		ocf.NewType(*ocfRoot), physicaldisk.Type{}} {
		types[t.Name()] = t
	}
	return resmon.Serve(ctx, conn, resmon.Options{Types: types, Watchdog: *watchdog, StateDir: *stateDir, Logger: log})
}
