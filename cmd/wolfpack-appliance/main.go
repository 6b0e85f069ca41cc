// Command wolfpack-appliance builds the Wolfpack appliance (make
// appliance; docs/appliance.md):
//
//	wolfpack-appliance build -o dist/appliance [-kernel .cache/kernel] [-version V] [-cmdline ...]
//
// It writes vmlinuz, initramfs.cpio.gz, wolfpack.efi and SHA256SUMS into
// the output directory and prints their sizes. Run it from the module's
// directory (it builds the module's commands with go build).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/wolfpack-ha/wolfpack/initramfs"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	err := run(context.Background(), log, os.Args[1:], os.Stdout)
	var usage usageError
	switch {
	case err == nil:
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "wolfpack-appliance:", err)
		os.Exit(2)
	default:
		log.Error("build failed", "err", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

const usage = `usage: wolfpack-appliance build -o DIR [-kernel DIR] [-version V] [-cmdline LINE] [-stub FILE]`

func run(ctx context.Context, log *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "build" {
		return usageError{errors.New(usage)}
	}
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("o", "", "output directory")
	kernel := fs.String("kernel", ".cache/kernel", "an unpacked kernel package: boot/vmlinuz-V and lib/modules/V")
	version := fs.String("version", "", "version stamped into the binaries")
	cmdline := fs.String("cmdline", initramfs.DefaultCmdline, "the UKI's kernel command line")
	stub := fs.String("stub", initramfs.DefaultStub, "systemd-boot's EFI stub")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{fmt.Errorf("%w\n%s", err, usage)}
	}
	if *out == "" || fs.NArg() != 0 {
		return usageError{errors.New(usage)}
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("run from the module's directory: %w", err)
	}
	r, err := initramfs.Build(ctx, initramfs.Options{
		Log: log, Root: root, KernelDir: *kernel, Out: *out, Version: *version, Cmdline: *cmdline, Stub: *stub,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "appliance for kernel %s in %s:\n", r.KernelVersion, *out)
	for _, p := range []string{r.Vmlinuz, r.Initramfs, r.EFI, r.Sums} {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  %-18s %10d bytes (%.1f MB)\n", filepath.Base(p), st.Size(), float64(st.Size())/1e6)
	}
	return nil
}
