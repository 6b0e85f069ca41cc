// Command wolfpack-demo is what `make demo` runs: a small cluster of QEMU
// guests on a LUN shared through a real iSCSI target (tgtd), showing what
// Wolfpack can do today. Today that is the arbitration at the heart of
// quorum: two nodes race PREEMPT AND ABORT for the LUN's SCSI-3 persistent
// reservation, exactly one wins each round, and the loser is fenced: its
// reads still work, its writes get RESERVATION CONFLICT.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "wolfpack-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wolfpack-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rounds := fs.Int("rounds", 5, "preempt races to run")
	verbose := fs.Bool("v", false, "log the testbed's steps")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rounds < 1 {
		return fmt.Errorf("-rounds must be at least 1, got %d", *rounds)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	p := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }

	p("Wolfpack demo: two nodes race for a shared LUN's SCSI-3 persistent reservation")
	p("")
	work, err := os.MkdirTemp("", "wolfpack-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	cli, err := testbed.BuildGo(ctx, "./cmd/cluster")
	if err != nil {
		return err
	}

	start := time.Now()
	tb, err := testbed.Start(ctx, testbed.Config{Nodes: 2, Initiators: 1, Binaries: []string{cli}, Logger: log, WorkDir: work})
	if err != nil {
		return fmt.Errorf("start the testbed: %w", err)
	}
	defer func() {
		p("")
		p("Tearing down: VMs, tgtd, bridges, taps and namespaces ...")
		if err := tb.Close(); err != nil {
			p("  teardown: %v", err)
			return
		}
		p("  done; nothing left running.")
	}()
	p("Setup (%.1f s): tgtd on %s serving a %s LUN; node1 and node2 booted under QEMU (TCG)",
		time.Since(start).Seconds(), tb.Portal(), "64 MiB")
	n := []*testbed.Node{tb.Node(1), tb.Node(2)}
	keys := []string{"0x574f4c4600000001", "0x574f4c4600000002"}

	show, err := n[0].Run(ctx, "/bin/cluster", "disk", "show", n[0].Disk(1))
	if err != nil {
		return fmt.Errorf("node1: cluster disk show: %w", err)
	}
	p("")
	p("node1$ cluster disk show %s", n[0].Disk(1))
	fmt.Fprint(stdout, indent(string(show.Stdout)))

	cl := func(i int, args ...string) (testbed.Result, error) {
		r, err := n[i].Run(ctx, append(append([]string{"/bin/cluster", "disk"}, args...), n[i].Disk(1))...)
		var ee *testbed.ExitError
		if errors.As(err, &ee) && ee.Signal == "" {
			return ee.Result, nil // the tool said no: that is a result here
		}
		return r, err
	}
	must := func(i int, args ...string) error {
		r, err := cl(i, args...)
		if err != nil {
			return fmt.Errorf("node%d: cluster disk %s: %w", i+1, strings.Join(args, " "), err)
		}
		if r.ExitCode != 0 {
			return fmt.Errorf("node%d: cluster disk %s: %s", i+1, strings.Join(args, " "), bytes.TrimSpace(append(r.Stderr, r.Stdout...)))
		}
		return nil
	}
	p("")
	p("Both nodes register a key; node1 takes the reservation (Write Exclusive - Registrants Only).")
	for i := range n {
		if err := must(i, "register", "--ignore-existing", "--key", keys[i]); err != nil {
			return err
		}
	}
	if err := must(0, "reserve", "--key", keys[0], "--type", "we-ro"); err != nil {
		return err
	}

	p("")
	p("Each round both nodes PREEMPT AND ABORT the other's key at the same moment;")
	p("the target serialises the race. The loser is checked: can it still read, can it write?")
	p("")
	wins := [2]int{}
	for r := 1; r <= *rounds; r++ {
		var wg sync.WaitGroup
		res := make([]testbed.Result, 2)
		errs := make([]error, 2)
		took := make([]time.Duration, 2)
		for i := range n {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				t0 := time.Now()
				res[i], errs[i] = cl(i, "preempt", "--abort", "--json", "--key", keys[i], "--victim", keys[1-i], "--type", "we-ro")
				took[i] = time.Since(t0)
			}(i)
		}
		wg.Wait()
		winner := -1
		for i := range n {
			if errs[i] != nil {
				return fmt.Errorf("round %d: node%d: %w", r, i+1, errs[i])
			}
			if res[i].ExitCode == 0 {
				if winner >= 0 {
					return fmt.Errorf("round %d: both nodes won: split brain", r)
				}
				winner = i
			}
		}
		if winner < 0 {
			return fmt.Errorf("round %d: nobody won:\n%s\n%s", r, res[0].Stdout, res[1].Stdout)
		}
		loser := 1 - winner
		wins[winner]++
		var ck struct{ Read, Write string }
		cr, err := cl(loser, "check", "--json")
		if err != nil {
			return err
		}
		if err := json.Unmarshal(cr.Stdout, &ck); err != nil {
			return fmt.Errorf("round %d: node%d check: %v: %s", r, loser+1, err, cr.Stdout)
		}
		p("round %d: node%d wins (%3d ms round trip); node%d's preempt: %s; node%d reads: %s, writes: %s",
			r, winner+1, took[winner].Milliseconds(), loser+1, conflictOf(res[loser].Stdout), loser+1, ck.Read, ck.Write)
		if r == 1 {
			var won struct{ Note string }
			if json.Unmarshal(res[winner].Stdout, &won) == nil && won.Note != "" {
				p("         (%s)", won.Note)
			}
		}
		if err := must(loser, "register", "--ignore-existing", "--key", keys[loser]); err != nil {
			return err
		}
	}
	p("")
	p("%d rounds: node1 won %d, node2 won %d; exactly one winner each time, every loser fenced.", *rounds, wins[0], wins[1])
	p("node2$ cluster disk reservation %s", n[1].Disk(1))
	if r, err := cl(1, "reservation"); err == nil {
		fmt.Fprint(stdout, indent(string(r.Stdout)))
	}
	return nil
}

func conflictOf(jsonOut []byte) string {
	var e struct{ Status, Error string }
	if json.Unmarshal(jsonOut, &e) == nil && e.Status != "" {
		return e.Status
	}
	return string(bytes.TrimSpace(jsonOut))
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}
