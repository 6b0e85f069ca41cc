package genericservice

import (
	"fmt"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// What systemd shows of a simple service killed by SIGKILL, by Restart=
// always, and of one stopping, as reasons: the states, the result and the
// main process.
func TestDescribe(t *testing.T) {
	for _, c := range []struct {
		st   unitState
		want string
	}{
		{unitState{ActiveState: "failed", SubState: "failed", Result: "signal", MainPID: 42, MainCode: cldKilled, MainStatus: 9, Restart: "no"},
			"failed (failed), result signal, main process 42 killed by signal 9 (KILL)"},
		{unitState{ActiveState: "activating", SubState: "auto-restart", Result: "exit-code", MainPID: 7, MainCode: cldExited, MainStatus: 3, Restart: "always"},
			"activating (auto-restart), result exit-code, main process 7 exited with status 3, Restart=always"},
		{unitState{ActiveState: "failed", SubState: "failed", Result: "core-dump", MainPID: 8, MainCode: cldDumped, MainStatus: 11},
			"failed (failed), result core-dump, main process 8 killed by signal 11 (SEGV), core dumped"},
		{unitState{ActiveState: "inactive", SubState: "dead"}, "inactive (dead)"},
	} {
		if got := c.st.describe(); got != c.want {
			t.Errorf("describe = %q; want %q", got, c.want)
		}
	}
}

// Online's outcome once the start job is done: active is online;
// activating waits; a unit systemd is restarting, or one that went down
// again, failed.
func TestSettled(t *testing.T) {
	for _, c := range []struct {
		active, sub string
		done        bool
		err         string
	}{
		{"active", "running", true, ""},
		{"active", "exited", true, ""},
		{"reloading", "reload", true, ""},
		{"activating", "start", false, ""},
		{"deactivating", "stop-sigterm", false, ""},
		{"activating", "auto-restart", true, "failed and systemd is restarting it"},
		{"failed", "failed", true, "did not stay up: failed (failed)"},
		{"inactive", "dead", true, "did not stay up: inactive (dead)"},
	} {
		done, err := unitState{ActiveState: c.active, SubState: c.sub}.settled("a.service")
		if done != c.done || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s/%s: settled = %v, %v; want %v, %q", c.active, c.sub, done, err, c.done, c.err)
		}
	}
}

// The watch: active and reloading are up; anything else left active, and
// a restart by systemd's Restart= says so.
func TestLeftActive(t *testing.T) {
	for _, c := range []struct {
		active, sub string
		err         string
	}{
		{"active", "running", ""},
		{"reloading", "reload", ""},
		{"deactivating", "stop-sigterm", "unit a.service left active: deactivating (stop-sigterm)"},
		{"failed", "failed", "unit a.service left active: failed (failed)"},
		{"inactive", "dead", "left active: inactive (dead)"},
		{"activating", "auto-restart", "systemd is restarting it (the cluster's restart policy applies instead)"},
	} {
		err := unitState{ActiveState: c.active, SubState: c.sub}.leftActive("a.service")
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s/%s: leftActive = %v; want %q", c.active, c.sub, err, c.err)
		}
		if err != nil && resources.ClassOf(err) != resources.FailSoft {
			t.Errorf("%s/%s: class %v; want soft", c.active, c.sub, resources.ClassOf(err))
		}
	}
}

// IsAlive: the substate an up unit of each type shows.
func TestIsAlive(t *testing.T) {
	for _, c := range []struct {
		unit, active, sub string
		remain            bool
		alive             bool
	}{
		{"a.service", "active", "running", false, true},
		{"a.service", "active", "exited", true, true},
		{"a.service", "active", "exited", false, false},
		{"a.service", "reloading", "reload", false, true},
		{"a.service", "activating", "start", false, false},
		{"a.socket", "active", "listening", false, true},
		{"a.mount", "active", "mounted", false, true},
		{"a.mount", "active", "remounting", false, false},
		{"a.timer", "active", "waiting", false, true},
		{"a.target", "active", "active", false, true},
		{"a.device", "active", "plugged", false, true},
	} {
		err := unitState{ActiveState: c.active, SubState: c.sub, RemainAfter: c.remain}.isAlive(c.unit)
		if (err == nil) != c.alive {
			t.Errorf("%s %s/%s remain=%v: isAlive = %v; want alive %v", c.unit, c.active, c.sub, c.remain, err, c.alive)
		}
	}
}

// A unit this node cannot load is a hard failure (the group moves); a
// loaded one is none.
func TestLoadFailure(t *testing.T) {
	for _, c := range []struct {
		load, msg string
		err       string
	}{
		{"loaded", "", ""},
		{"not-found", "Unit a.service not found.", "unit a.service not found: it is not installed on this node"},
		{"masked", "Unit a.service is masked.", "cannot be loaded on this node (load state masked): Unit a.service is masked."},
		{"bad-setting", "", "(load state bad-setting)"},
		{"error", "", "(load state error)"},
	} {
		err := unitState{LoadState: c.load, LoadErrorMsg: c.msg}.loadFailure("a.service")
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: loadFailure = %v; want %q", c.load, err, c.err)
			continue
		}
		if err != nil && resources.ClassOf(err) != resources.FailHard {
			t.Errorf("%s: class %v; want hard", c.load, resources.ClassOf(err))
		}
	}
}

// systemd's D-Bus errors that say the unit cannot run here are hard; the
// others (a timeout, a broken connection) stay soft.
func TestCallClass(t *testing.T) {
	for name, want := range map[string]resources.FailureClass{
		"org.freedesktop.systemd1.NoSuchUnit":     resources.FailHard,
		"org.freedesktop.systemd1.UnitMasked":     resources.FailHard,
		"org.freedesktop.systemd1.LoadFailed":     resources.FailHard,
		"org.freedesktop.DBus.Error.NoReply":      resources.FailSoft,
		"org.freedesktop.systemd1.JobFailed":      resources.FailSoft,
		"org.freedesktop.DBus.Error.AccessDenied": resources.FailSoft,
	} {
		// A method call's error is a value, others a pointer.
		for _, err := range []error{dbus.Error{Name: name, Body: []any{"x"}}, dbus.NewError(name, []any{"x"})} {
			if got := resources.ClassOf(callClass(fmt.Errorf("start: %w", err))); got != want {
				t.Errorf("%s (%T): class %v; want %v", name, err, got, want)
			}
		}
	}
}

func TestOpen(t *testing.T) {
	for want, props := range map[string]resources.Props{
		"property unit: required":                    {},
		`property unit: "web.conf" is not a unit`:    {"unit": db.StringValue("web.conf")},
		"property stop_timeout_ms: must be positive": {"unit": db.StringValue("web.service"), "stop_timeout_ms": db.IntValue(0)},
	} {
		_, err := Type{}.Open("web", props, nil)
		if err == nil || !strings.Contains(err.Error(), "generic_service web: "+want) {
			t.Errorf("Open(%v) = %v; want %q", props, err, want)
		}
	}
	// The failover manager's extra properties are accepted.
	i, err := Type{}.Open("web", resources.Props{"unit": db.StringValue("web.service"), resources.PropNodeID: db.IntValue(1),
		resources.PropResourceTypePrefix + "agent": db.StringValue(TypeName)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	i.Close()
}
