// Command pdctl drives the physical_disk type for tests where resmon
// cannot run (the testbed's guests): it opens one resource and runs the
// operations named on its command line in order, printing "OP ok" for
// each, and stops at the first that fails (exit status 1, the error and
// its failure class on stderr). Not shipped: test-only.
//
//	pdctl -device /dev/sdb -mount /mnt/data -node 1 online looks-alive is-alive
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/resources"
	"github.com/wolfpack-ha/wolfpack/resources/physicaldisk"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pdctl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pdctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	device := fs.String("device", "", "the block device")
	mount := fs.String("mount", "", "the mount point")
	node := fs.Int64("node", 0, "this node's id (1..64)")
	fstype := fs.String("fstype", "ext4", "fstype")
	fsck := fs.String("fsck", "auto", "fsck: auto, force or never")
	options := fs.String("options", "", "mount_options")
	timeout := fs.Duration("timeout", time.Minute, "bound on each operation")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	props := resources.Props{
		"device": db.StringValue(*device), "mount_point": db.StringValue(*mount),
		"fstype": db.StringValue(*fstype), "fsck": db.StringValue(*fsck),
		"mount_options": db.StringValue(*options), resources.PropNodeID: db.IntValue(*node),
	}
	inst, err := physicaldisk.Type{}.Open("data", props, log)
	if err != nil {
		return classed("open", err)
	}
	defer inst.Close()
	for _, op := range fs.Args() {
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		switch op {
		case "online":
			err = inst.Online(ctx)
		case "offline":
			err = inst.Offline(ctx)
		case "terminate":
			inst.Terminate()
		case "looks-alive":
			err = inst.LooksAlive()
		case "is-alive":
			err = inst.IsAlive(ctx)
		default:
			err = fmt.Errorf("unknown operation %q: want online, offline, terminate, looks-alive or is-alive", op)
		}
		cancel()
		if err != nil {
			return classed(op, err)
		}
		fmt.Fprintln(stdout, op, "ok")
	}
	return nil
}

func classed(op string, err error) error {
	return fmt.Errorf("%s: %w (class %s)", op, err, resources.ClassOf(err))
}
