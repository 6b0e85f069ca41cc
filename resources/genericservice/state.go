package genericservice

import (
	"errors"
	"fmt"
	"strings"

	"github.com/godbus/dbus/v5"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// unitState is what systemd says of a unit: the org.freedesktop.systemd1.Unit
// properties, and the Result, Restart and main process of its type's
// interface where it has them (a service, socket, mount, ...).
type unitState struct {
	ID           string // the unit's own name (the resource may name an alias)
	LoadState    string // loaded, not-found, masked, error, bad-setting
	ActiveState  string // active, reloading, inactive, failed, activating, deactivating
	SubState     string // the type's own state: running, exited, auto-restart, listening, mounted...
	Result       string // success, exit-code, signal, core-dump, timeout, start-limit-hit... ("" if the type has none)
	Restart      string // a service's Restart= ("no", "on-failure", "always", ...)
	RemainAfter  bool   // a service's RemainAfterExit=
	MainPID      uint32 // a service's ExecMainPID: the last main process
	MainCode     int32  // ExecMainCode: CLD_EXITED 1, CLD_KILLED 2, CLD_DUMPED 3 (0: none yet)
	MainStatus   int32  // ExecMainStatus: exit status or signal number
	LoadErrorMsg string // LoadError's message, when the unit did not load
}

// The CLD_* codes of ExecMainCode (waitid(2)).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// suffix is the unit's type: "service", "socket", ...
func suffix(unit string) string {
	return unit[strings.LastIndexByte(unit, '.')+1:]
}

// typeInterface is the D-Bus interface of the unit's type's properties
// ("Service" for org.freedesktop.systemd1.Service), "" for the types whose
// interface has neither Result nor anything this type reads.
func typeInterface(unit string) string {
	switch s := suffix(unit); s {
	case "service", "socket", "mount", "timer", "path", "swap", "automount", "scope":
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return ""
}

// loadFailure returns a hard error when the unit cannot be loaded on this
// node: not installed (not-found), masked, or its unit file broken (error,
// bad-setting). Another node's copy may be fine, so the group moves.
func (s unitState) loadFailure(unit string) error {
	switch s.LoadState {
	case "loaded", "stub", "merged", "":
		return nil
	case "not-found":
		return resources.Hard(fmt.Errorf("unit %s not found: it is not installed on this node", unit))
	}
	msg := ""
	if s.LoadErrorMsg != "" {
		msg = ": " + s.LoadErrorMsg
	}
	return resources.Hard(fmt.Errorf("unit %s cannot be loaded on this node (load state %s)%s", unit, s.LoadState, msg))
}

// looksAlive: the unit is active, or reloading (a reload keeps it
// running). Every other state is down or on its way there or back up.
func (s unitState) looksAlive() bool {
	return s.ActiveState == "active" || s.ActiveState == "reloading"
}

// healthySub is whether SubState is what an up unit of its type shows:
// a service's processes running (or, with RemainAfterExit=, exited), a
// socket listening, a mount mounted...
func (s unitState) healthySub(unit string) bool {
	switch suffix(unit) {
	case "service":
		return s.SubState == "running" || s.SubState == "reload" || (s.RemainAfter && s.SubState == "exited")
	case "socket":
		return s.SubState == "listening" || s.SubState == "running"
	case "mount":
		return s.SubState == "mounted"
	case "timer", "path", "automount":
		return s.SubState == "waiting" || s.SubState == "running"
	case "swap", "target", "slice":
		return s.SubState == "active"
	case "device":
		return s.SubState == "plugged"
	case "scope":
		return s.SubState == "running"
	}
	return true
}

// isAlive: looksAlive, and the substate fits the unit's type.
func (s unitState) isAlive(unit string) error {
	if !s.looksAlive() {
		return fmt.Errorf("unit %s is not active: %s", unit, s.describe())
	}
	if !s.healthySub(unit) {
		return fmt.Errorf("unit %s is active but %s, not what an up %s shows", unit, s.SubState, suffix(unit))
	}
	return nil
}

// settled says whether a start is over, and how: online (active), or
// failed, with systemd's reason. A unit still activating (or
// deactivating on its way to a restart) is not settled.
func (s unitState) settled(unit string) (done bool, err error) {
	switch s.ActiveState {
	case "active", "reloading":
		return true, nil
	case "activating", "deactivating":
		if s.SubState == "auto-restart" {
			return true, fmt.Errorf("unit %s failed and systemd is restarting it: %s", unit, s.describe())
		}
		return false, nil
	}
	return true, fmt.Errorf("unit %s did not stay up: %s", unit, s.describe())
}

// describe is the state as systemd gives it: "failed (failed), result
// signal, main process 42 killed by signal 9 (KILL), Restart=always".
func (s unitState) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s)", s.ActiveState, s.SubState)
	if s.Result != "" {
		fmt.Fprintf(&b, ", result %s", s.Result)
	}
	if s.MainPID != 0 {
		switch s.MainCode {
		case cldExited:
			fmt.Fprintf(&b, ", main process %d exited with status %d", s.MainPID, s.MainStatus)
		case cldKilled, cldDumped:
			fmt.Fprintf(&b, ", main process %d killed by signal %d", s.MainPID, s.MainStatus)
			if n := signalName(s.MainStatus); n != "" {
				fmt.Fprintf(&b, " (%s)", n)
			}
			if s.MainCode == cldDumped {
				b.WriteString(", core dumped")
			}
		}
	}
	if s.Restart != "" && s.Restart != "no" {
		fmt.Fprintf(&b, ", Restart=%s", s.Restart)
	}
	return b.String()
}

func signalName(n int32) string {
	names := map[int32]string{1: "HUP", 2: "INT", 3: "QUIT", 4: "ILL", 6: "ABRT", 7: "BUS", 8: "FPE", 9: "KILL",
		11: "SEGV", 13: "PIPE", 14: "ALRM", 15: "TERM"}
	return names[n]
}

// leftActive is the watch's failure when the unit, online, was seen in
// state s: nil while it is up. A unit systemd restarts by itself
// (Restart=) is down meanwhile: that is a failure as well, and the
// cluster's restart policy applies instead of systemd's (the terminate
// that follows cancels systemd's restart).
func (s unitState) leftActive(unit string) error {
	if s.looksAlive() {
		return nil
	}
	if s.SubState == "auto-restart" {
		return fmt.Errorf("unit %s failed and systemd is restarting it (the cluster's restart policy applies instead): %s", unit, s.describe())
	}
	return fmt.Errorf("unit %s left active: %s", unit, s.describe())
}

// jobFailure turns a job's result other than "done" into an error, with
// the unit's state as systemd gives it.
func jobFailure(verb, unit, result string, s unitState) error {
	return fmt.Errorf("%s job for unit %s ended %q: %s", verb, unit, result, s.describe())
}

// callClass marks the errors of systemd's D-Bus calls that say the unit
// cannot run on this node: no such unit, masked, not loadable.
func callClass(err error) error {
	switch errorName(err) {
	case "org.freedesktop.systemd1.NoSuchUnit", "org.freedesktop.systemd1.UnitMasked",
		"org.freedesktop.systemd1.LoadFailed", "org.freedesktop.systemd1.BadUnitSetting":
		return resources.Hard(err)
	}
	return err
}

// errorName is the D-Bus error name of err ("" if it is none). godbus
// returns a method call's error as a dbus.Error value, some others as a
// pointer.
func errorName(err error) string {
	var v dbus.Error
	if errors.As(err, &v) {
		return v.Name
	}
	var p *dbus.Error
	if errors.As(err, &p) {
		return p.Name
	}
	return ""
}
