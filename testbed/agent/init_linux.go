package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wolfpack-ha/wolfpack/initramfs/boot"
)

// Main is the agent as the init of a testbed guest: it prepares the guest
// (mounts, kernel modules, host name, NICs from the kernel command line,
// disks; package initramfs/boot) and serves the host on the protocol port
// until that fails. It returns only on a fatal error.
func Main(ctx context.Context, log *slog.Logger) error {
	start := time.Now()
	var warnings []string
	warn := func(err error) {
		log.Warn(err.Error())
		warnings = append(warnings, err.Error())
	}
	if err := boot.MountBasics(); err != nil {
		return err
	}
	_ = os.Setenv("PATH", boot.Path)
	cfg, err := boot.ReadCmdline()
	if err != nil {
		return err
	}
	if cfg.Hostname != "" {
		if err := boot.SetHostname(cfg.Hostname); err != nil {
			warn(err)
		}
	}
	for _, err := range boot.LoadModules(log, boot.ModuleOrder) {
		warn(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	if err := boot.SetupNet(cfg.Interfaces, deadline); err != nil {
		warn(err)
	}
	if err := boot.WaitSCSIDisks("/sys", cfg.Disks, deadline); err != nil {
		warn(err)
	}
	log.Info("guest set up", "setup", time.Since(start).Round(time.Millisecond))
	return Serve(ctx, log, cfg.Port, cfg.Hostname, warnings)
}

// Serve is the agent without the set-up: it opens the protocol port, says
// hello (with the set-up's warnings) and serves the host until the port
// fails. The appliance's init (cmd/wolfpack-init) runs the agent this way
// (wolfpack-agent -serve) after its own set-up, when the testbed added the
// agent to the image.
func Serve(ctx context.Context, log *slog.Logger, portPath, hostname string, warnings []string) error {
	port, err := OpenPort(portPath)
	if err != nil {
		return err
	}
	defer port.Close()
	hello := Hello{Ready: true, Hostname: hostname, Uptime: boot.Uptime(), Warnings: warnings}
	b, _ := json.Marshal(hello)
	if _, err := port.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write hello to %s: %w", portPath, err)
	}
	log.Info("ready", "port", portPath, "uptime", hello.Uptime)
	return NewServer(log).Serve(ctx, port, port)
}

// OpenPort opens a serial port in raw mode with its input flushed.
func OpenPort(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open protocol port: %w", err)
	}
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raw mode on %s: %w", path, os.NewSyscallError("ioctl TCGETS", err))
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CRTSCTS | unix.CBAUD
	t.Cflag |= unix.CS8 | unix.CLOCAL | unix.CREAD | unix.B115200
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		f.Close()
		return nil, fmt.Errorf("raw mode on %s: %w", path, os.NewSyscallError("ioctl TCSETS", err))
	}
	if err := unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH); err != nil {
		f.Close()
		return nil, fmt.Errorf("flush %s: %w", path, os.NewSyscallError("ioctl TCFLSH", err))
	}
	return f, nil
}
