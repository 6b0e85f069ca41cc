// Command wolfpack-sim runs Wolfpack's deterministic simulator (package
// sim) for one seed, or a range of seeds, and replays a failing seed's
// event trace:
//
//	go run ./cmd/wolfpack-sim -seed 42 -nodes 7 -v
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/wolfpack-ha/wolfpack/sim"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wolfpack-sim:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wolfpack-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", 1, "first seed")
	count := fs.Uint64("count", 1, "number of seeds to run from -seed")
	nodes := fs.Int("nodes", 5, "number of nodes (2..64)")
	faults := fs.Bool("faults", true, "inject the seed's random faults")
	clients := fs.Int("clients", 3, "GUP clients writing and reading through random nodes (0: none)")
	groups := fs.Int("groups", 4, "most groups the failover manager's workload creates (0: none)")
	verbose := fs.Bool("v", false, "print the event trace")
	hb := fs.Bool("heartbeats", false, "with -v, trace every heartbeat datagram too")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil // the usage is printed
	} else if err != nil {
		return err
	}
	if *nodes < 2 || *nodes > 64 {
		return fmt.Errorf("-nodes %d: want 2..64", *nodes)
	}
	bad := 0
	start := time.Now()
	for s := *seed; s < *seed+*count; s++ {
		cfg := sim.Config{Seed: s, Nodes: *nodes, Faults: *faults, Clients: *clients, Groups: *groups}
		if *verbose {
			cfg.Trace, cfg.TraceHeartbeats = stdout, *hb
		}
		r := sim.Run(cfg)
		if *verbose || len(r.Violations) > 0 {
			for _, f := range r.Faults {
				fmt.Fprintln(stdout, "fault plan:", f)
			}
			fmt.Fprint(stdout, "final state:\n", r.State)
		}
		status := "ok"
		if len(r.Violations) > 0 {
			status = fmt.Sprintf("%d violations", len(r.Violations))
			bad++
			for _, v := range r.Violations {
				fmt.Fprintln(stdout, "VIOLATION", v)
			}
		}
		fmt.Fprintf(stdout, "seed %d nodes %d: %s, stable %.3fs after faults, %d events\n",
			s, *nodes, status, float64(r.StableAfter)/float64(sim.Second), r.Events)
		if *verbose && *groups > 0 {
			fmt.Fprintf(stdout, "failover manager: %v\n", r.FM)
		}
	}
	if *count > 1 {
		fmt.Fprintf(stdout, "%d seeds, %d failed, %v\n", *count, bad, time.Since(start).Round(time.Millisecond))
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d seeds broke an invariant", bad, *count)
	}
	return nil
}
