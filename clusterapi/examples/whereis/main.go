// Command whereis is the Cluster API's example program: it prints where a
// group runs, and with -follow every change of its owner or state as the
// cluster moves it, until interrupted.
//
//	whereis [-socket /run/wolfpack/clusterd.sock] [-follow] GROUP
//
// It reads the database through a node's admin API (clusterapi.Client's
// Get) and follows it with Watch; it needs the read-only role only.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "whereis:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("whereis", flag.ContinueOnError)
	socket := fs.String("socket", "/run/wolfpack/clusterd.sock", "clusterd's admin socket")
	follow := fs.Bool("follow", false, "print every change of the group's owner or state")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: whereis [-socket PATH] [-follow] GROUP")
	}
	group := fs.Arg(0)
	cl := clusterapi.NewClient(*socket)
	defer cl.Close()

	last := ""
	show := func() error {
		r, err := cl.Get(ctx, "group", group, true)
		if err != nil {
			return err
		}
		owner, _ := r.Object.Props["owner"].(string)
		state, _ := r.Object.Props["state"].(string)
		if line := fmt.Sprintf("%s %s on %s", group, state, owner); line != last {
			last = line
			fmt.Fprintln(out, line)
		}
		return nil
	}
	if !*follow {
		return show()
	}
	// Watch first, then read: no change between the two is missed.
	err := cl.Watch(ctx, func() {
		if err := show(); err != nil {
			fmt.Fprintln(os.Stderr, "whereis:", err)
		}
	}, func(c clusterapi.Change) error {
		if c.Kind == "group" && c.Name == group || c.Op == "reset" {
			return show()
		}
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}
