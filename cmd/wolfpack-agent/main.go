// Command wolfpack-agent is the init program of a testbed VM: it prepares the
// guest and runs programs on request from the host test over a serial port
// (see package testbed/agent). With -serve it only serves: the appliance's
// init (cmd/wolfpack-init) has prepared the guest and runs it so when the
// testbed added it to the image.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/wolfpack-ha/wolfpack/initramfs/boot"
	"github.com/wolfpack-ha/wolfpack/testbed/agent"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("prog", "wolfpack-agent")
	serve := flag.Bool("serve", false, "serve only: the guest is set up already (run by the appliance's init)")
	port := flag.String("port", boot.DefaultPort, "with -serve: the protocol serial port")
	flag.Parse()
	if *serve {
		host, _ := os.Hostname()
		err := agent.Serve(context.Background(), log, *port, host, nil)
		log.Error("agent stopped", "err", err)
		os.Exit(1)
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "wolfpack-agent: runs only as PID 1 of a testbed guest, or with -serve")
		os.Exit(2)
	}
	err := agent.Main(context.Background(), log)
	log.Error("agent stopped", "err", err)
	// As PID 1, exiting panics the kernel, which with panic=-1 and QEMU's
	// -no-reboot stops the VM: the host sees it and reports the console.
	time.Sleep(time.Second)
	os.Exit(1)
}
