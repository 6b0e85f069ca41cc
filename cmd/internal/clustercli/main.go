// Package clustercli is the cluster command: cmd/cluster runs it, and so does
// the appliance's multi-call binary (cmd/wolfpack) under that name.
package clustercli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/wolfpack-ha/wolfpack/internal/version"
)

// Main runs the command with os.Args and exits with its status.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, openDevice)
	stop()
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, "cluster:", err)
			os.Exit(2)
		}
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "cluster:", err)
		}
		// Some actions give scripts a specific status (quorum hold: 3 lost
		// the arbitration, 4 lost quorum).
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

// usageError is a bad command line: exit status 2, as for flag errors.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// errReported means the error was already written (as JSON) and main should
// only set the exit status.
var errReported = errors.New("error already reported")

const topUsage = `usage: cluster <command> [arguments]

commands:
  create   make a new cluster on its first node: node file, keys, quorum LUN, join bundle
  join     set up another node from the join bundle 'cluster create' wrote
  status   the whole cluster as a tree: nodes, networks, groups, resources, problems
  disk     inspect and manage SCSI-3 persistent reservations on a shared LUN
  quorum   the quorum disk: format, show, replay its recovery log, hold it
  log      the quorum disk's recovery log, readable (clusterd's, or --device DEVICE)
  ca       the cluster CA and the nodes' stream certificates: init, issue, check

  group       the groups: create, set, delete, move, online, offline, list, show
  resource    the resources: create, set, delete, online, offline, list, show
  dependency  a resource's dependencies: add, remove
  node        the nodes: pause, resume, drain (move its groups away), evict, add, list, show
  leave       stop this node's clusterd: drain, then leave the membership
  events      the cluster-wide event log, with causes; --follow
  why         the chain of events that put a group where it is: why GROUP
  completion  print a shell completion script: completion bash

The object commands talk to a running clusterd (--socket, default
` + defaultSocket + `; or --api); 'cluster <command> -h' lists their exit
statuses.

Run 'cluster <command> -h' for the command's help; 'cluster --version'
prints the version.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer, open opener) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage)
		return usagef("missing command")
	}
	switch args[0] {
	case "quorum":
		return runQuorum(ctx, args[1:], stdout, stderr, open)
	case "disk":
		return runDisk(ctx, args[1:], stdout, stderr, open)
	case "status":
		return runStatus(ctx, args[1:], stdout, stderr)
	case "log":
		return runLog(ctx, args[1:], stdout, stderr, open)
	case "ca":
		return runCA(args[1:], stdout, stderr)
	case "completion":
		return runCompletion(args[1:], stdout, stderr)
	case "events":
		return runEvents(ctx, args[1:], stdout, stderr)
	case "why":
		return runWhy(ctx, args[1:], stdout, stderr)
	case "leave":
		return leaveCmd.exec(ctx, "", args[1:], stdout, stderr)
	case "create":
		return runCreate(ctx, args[1:], stdout, open)
	case "join":
		return runJoin(args[1:], stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, topUsage)
		return nil
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, version.String("cluster"))
		return nil
	}
	if n := findNoun(args[0]); n != nil {
		return n.run(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, topUsage)
	return usagef("unknown command %q (want create, join, status, log, disk, quorum, ca, leave, group, resource, dependency, node, events, why or completion)", args[0])
}
