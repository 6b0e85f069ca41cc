package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Action is how the appliance stops: what init does once clusterd has
// drained.
type Action int

// The actions, as busybox's init and sysvinit's signals name them.
const (
	PowerOff Action = iota + 1
	Reboot
	Halt
)

func (a Action) String() string {
	switch a {
	case PowerOff:
		return "power off"
	case Reboot:
		return "reboot"
	case Halt:
		return "halt"
	}
	return "action " + strconv.Itoa(int(a))
}

// SignalAction is the action a signal to PID 1 asks for, as busybox's
// init reads them: SIGUSR2 and SIGPWR power off, SIGTERM reboots, SIGINT
// (Ctrl-Alt-Del, once the kernel is told to send it: DisableCtrlAltDel)
// reboots, SIGUSR1 halts.
func SignalAction(sig os.Signal) (Action, bool) {
	switch sig {
	case unix.SIGUSR2, unix.SIGPWR:
		return PowerOff, true
	case unix.SIGTERM, unix.SIGINT:
		return Reboot, true
	case unix.SIGUSR1:
		return Halt, true
	}
	return 0, false
}

// ShutdownSignals are the signals SignalAction maps.
var ShutdownSignals = []os.Signal{unix.SIGUSR2, unix.SIGPWR, unix.SIGTERM, unix.SIGINT, unix.SIGUSR1}

// ActionSignal is the signal that asks PID 1 for a; the commands poweroff,
// reboot and halt send it.
func ActionSignal(a Action) syscall.Signal {
	switch a {
	case Reboot:
		return unix.SIGTERM
	case Halt:
		return unix.SIGUSR1
	}
	return unix.SIGUSR2
}

// DisableCtrlAltDel makes the kernel send SIGINT to PID 1 on
// Ctrl-Alt-Del instead of rebooting at once.
func DisableCtrlAltDel() error {
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		return fmt.Errorf("ctrl-alt-del to SIGINT: %w", err)
	}
	return nil
}

// powerButtonName is what the kernel's ACPI button driver names the
// power button's input device.
const powerButtonName = "Power Button"

// PowerButtons returns the event devices (devDir/input/eventN) of every
// input device sysfs names "Power Button": the ACPI fixed-feature button
// and a PNP0C0C one (module "button"; the event devices need "evdev").
func PowerButtons(sysfs, devDir string) ([]string, error) {
	ms, err := filepath.Glob(filepath.Join(sysfs, "class/input/event*/device/name"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil || strings.TrimSpace(string(b)) != powerButtonName {
			continue
		}
		out = append(out, filepath.Join(devDir, "input", filepath.Base(filepath.Dir(filepath.Dir(m)))))
	}
	return out, nil
}

// WatchPowerButtons waits until wait for the power buttons' event devices
// to appear, then calls press for each press of one, for as long as the
// devices can be read; it returns when none is left. A machine without
// one is not an error: it logs so and returns.
func WatchPowerButtons(log *slog.Logger, sysfs, devDir string, wait time.Duration, press func()) {
	deadline := time.Now().Add(wait)
	var devs []string
	for {
		devs, _ = PowerButtons(sysfs, devDir)
		if len(devs) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(devs) == 0 {
		log.Info("no power button: only signals to init shut the appliance down")
		return
	}
	done := make(chan struct{}, len(devs))
	for _, dev := range devs {
		go func() {
			defer func() { done <- struct{}{} }()
			f, err := os.Open(dev)
			if err != nil {
				log.Warn("power button", "device", dev, "err", err)
				return
			}
			defer f.Close()
			log.Info("power button", "device", dev)
			if err := readKeyPresses(f, keyPower, press); err != nil {
				log.Warn("power button", "device", dev, "err", err)
			}
		}()
	}
	for range devs {
		<-done
	}
}

// The input event codes (linux/input-event-codes.h).
const (
	evKey    = 1
	keyPower = 116
)

// inputEventLen is struct input_event's size on 64-bit Linux: a timeval
// of two 8-byte fields, then type and code (2 bytes each) and value (4).
const inputEventLen = 24

// readKeyPresses reads struct input_event records from r and calls press
// for each press (value 1) of key, until r fails.
func readKeyPresses(r io.Reader, key uint16, press func()) error {
	var ev [inputEventLen]byte
	for {
		if _, err := io.ReadFull(r, ev[:]); err != nil {
			return fmt.Errorf("read input event: %w", err)
		}
		typ := binary.NativeEndian.Uint16(ev[16:])
		code := binary.NativeEndian.Uint16(ev[18:])
		value := int32(binary.NativeEndian.Uint32(ev[20:]))
		if typ == evKey && code == key && value == 1 {
			press()
		}
	}
}

// Finish ends the machine: SIGTERM to every process left (init's own
// children and orphans; clusterd has already drained), SIGKILL to those
// still there after grace, sync, then a reboot(2) of action. It returns
// only if the reboot call fails.
func Finish(log *slog.Logger, action Action, grace time.Duration) error {
	start := time.Now()
	_ = unix.Kill(-1, unix.SIGTERM)
	left := waitUserProcesses("/proc", grace)
	if len(left) > 0 {
		log.Warn("processes left after SIGTERM, killing them", "pids", left, "grace", grace)
		_ = unix.Kill(-1, unix.SIGKILL)
		waitUserProcesses("/proc", time.Second)
	}
	log.Info("stopping the machine", "action", action.String(), "stopping_processes", time.Since(start).Round(time.Millisecond), "uptime", Uptime())
	return Stop(action)
}

// Stop syncs the filesystems and stops the machine with reboot(2) at
// once. It returns only if that fails.
func Stop(action Action) error {
	unix.Sync()
	cmd := map[Action]int{PowerOff: unix.LINUX_REBOOT_CMD_POWER_OFF, Reboot: unix.LINUX_REBOOT_CMD_RESTART, Halt: unix.LINUX_REBOOT_CMD_HALT}[action]
	if err := unix.Reboot(cmd); err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	return errors.New(action.String() + ": the reboot call returned")
}

// waitUserProcesses waits up to d for every user process but PID 1 to be
// gone (kernel threads have an empty cmdline, as have zombies, which the
// reaper collects), and returns the pids still there.
func waitUserProcesses(proc string, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := userProcesses(proc)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func userProcesses(proc string) []int {
	ents, _ := os.ReadDir(proc)
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline")); err == nil && len(b) > 0 {
			out = append(out, pid)
		}
	}
	return out
}
