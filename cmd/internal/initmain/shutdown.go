package initmain

import (
	"flag"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/wolfpack-ha/wolfpack/initramfs/boot"
)

// PowerOff, Reboot and Halt are the appliance's poweroff, reboot and halt
// commands: each asks init (PID 1) for a clean shutdown with the signal
// busybox's init reads, so clusterd drains first. -f skips init and the
// drain: sync, then reboot(2) at once, as a node that fails would.
func PowerOff() { shutdown("poweroff", boot.PowerOff) }
func Reboot()   { shutdown("reboot", boot.Reboot) }
func Halt()     { shutdown("halt", boot.Halt) }

func shutdown(name string, a boot.Action) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	force := fs.Bool("f", false, "at once: no drain of clusterd, no SIGTERM to the processes")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s [-f]\n\nAsks init to %s the appliance after clusterd has moved its groups away and left the cluster.\n\n", name, a)
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		os.Exit(2)
	}
	if *force {
		err := boot.Stop(a)
		fmt.Fprintf(os.Stderr, "%s -f: %v\n", name, err)
		os.Exit(1)
	}
	if err := unix.Kill(1, boot.ActionSignal(a)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: signal init: %v\n", name, err)
		os.Exit(1)
	}
}
