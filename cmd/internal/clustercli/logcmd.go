package clustercli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
)

const logUsage = `usage: cluster log [--socket PATH | --api https://HOST:PORT --ca F --cert F --key F] [--json] [--timeout D]
       cluster log --device DEVICE [--initiator-name IQN] [--json] [--timeout D]

Prints the quorum disk's recovery log (docs/quorum-disk.md): the newest
checkpoint, then every record after it with its log sequence number (LSN),
epoch, GUP sequence number, type and what it changed: a database update's
operations and the node it came from, an owner record's node and time, a
note's text.

By default it asks a running clusterd (GET /v1/log on its admin socket,
default ` + defaultSocket + `, or on its admin API with --api), which reads
the log on its own path to the LUN. With --device it reads the LUN
directly, as 'cluster quorum replay' does; no cluster needs to run.
` + deviceHelp + `

flags:
  --json        the log as JSON (GET /v1/log's answer)
  --timeout D   how long to wait (default 10s)
` + initiatorHelp

func runLog(ctx context.Context, args []string, stdout, stderr io.Writer, open opener) error {
	fs := flag.NewFlagSet("cluster log", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	conn := addConnFlags(fs)
	device := fs.String("device", "", "")
	initiator := fs.String("initiator-name", "", "")
	asJSON := fs.Bool("json", false, "")
	var timeout time.Duration
	durationVar(fs, &timeout, "timeout", 10*time.Second)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, logUsage)
		return nil
	}
	if err != nil {
		fmt.Fprint(stderr, logUsage)
		return usagef("log: %v", err)
	}
	if len(pos) > 0 {
		fmt.Fprint(stderr, logUsage)
		return usagef("log takes no arguments, got %q (a LUN is --device DEVICE)", pos)
	}
	if *device != "" && conn.set() {
		return usagef("log: --device reads the LUN directly; it takes no --socket or --api")
	}
	if *initiator != "" && *device == "" {
		return usagef("log: --initiator-name applies to --device only")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var l clusterapi.Log
	if *device != "" {
		d, err := openLUN(open, *device, *initiator)
		if err != nil {
			return lunError(stdout, *asJSON, "log", *device, err)
		}
		defer d.Close()
		qd, err := openQuorum(ctx, d)
		if err != nil {
			return fmt.Errorf("log: %s: %w", *device, err)
		}
		rp, err := qd.ReadLog(ctx)
		if err != nil {
			return fmt.Errorf("log: %s: read the recovery log: %w", *device, err)
		}
		l = clusterapi.LogOf(rp)
		if *asJSON {
			return writeJSON(stdout, l)
		}
	} else {
		cl, err := conn.client("log")
		if err != nil {
			return err
		}
		defer cl.Close()
		var raw []byte
		l, raw, err = cl.Log(ctx)
		if err != nil {
			return fmt.Errorf("log: %w", err)
		}
		if *asJSON {
			_, err := stdout.Write(raw)
			return err
		}
	}
	_, err = io.WriteString(stdout, renderLog(l))
	return err
}

// renderLog writes the log for people.
func renderLog(l clusterapi.Log) string {
	var b strings.Builder
	fmt.Fprintf(&b, "checkpoint #%d at LSN %d (a snapshot of %s); %d %s after it, last LSN %d; replay stopped at: %s\n",
		l.CheckpointSeq, l.CheckpointLSN, humanize.IBytes(uint64(l.SnapshotBytes)), len(l.Records), plural(len(l.Records), "record"), l.LastLSN, l.End)
	for _, r := range l.Records {
		fmt.Fprintf(&b, "LSN %-6d epoch %-3d gup %-6d %-10s", r.LSN, r.Epoch, r.GUPSeq, r.Type)
		var what []string
		if r.Type == "update" && r.Node != 0 {
			what = append(what, fmt.Sprintf("from node %d", r.Node))
		}
		if r.Text != "" {
			what = append(what, r.Text)
		}
		if r.Time != "" {
			what = append(what, "at "+whenString(r.Time))
		}
		fmt.Fprintf(&b, " %s\n", strings.Join(what, ", "))
		for _, c := range r.Changes {
			fmt.Fprintf(&b, "    %s\n", c)
		}
	}
	return b.String()
}
