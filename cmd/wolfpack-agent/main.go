// Command wolfpack-agent is the init program of a testbed VM: it prepares the
// guest and runs programs on request from the host test over a serial port
// (see package testbed/agent).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/agent"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("prog", "wolfpack-agent")
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "wolfpack-agent: runs only as PID 1 of a testbed guest")
		os.Exit(2)
	}
	err := agent.Main(context.Background(), log)
	log.Error("agent stopped", "err", err)
	// As PID 1, exiting panics the kernel, which with panic=-1 and QEMU's
	// -no-reboot stops the VM: the host sees it and reports the console.
	time.Sleep(time.Second)
	os.Exit(1)
}
