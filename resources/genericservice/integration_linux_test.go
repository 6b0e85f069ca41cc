package genericservice_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/resmon"
	"github.com/wolfpack-ha/wolfpack/internal/resmon/resmontest"
	"github.com/wolfpack-ha/wolfpack/resources"
	"github.com/wolfpack-ha/wolfpack/testbed/systemdrig"
)

// The test's unit: a shell sleeping in a loop (a main process and a child).
const sleepUnit = `[Unit]
Description=wolfpack generic_service test: a sleep loop

[Service]
ExecStart=/bin/sh -c 'while :; do sleep 1; done'
`

// A unit systemd would restart by itself: the cluster's restart policy
// applies instead (docs/resources.md).
const restartUnit = `[Service]
ExecStart=/bin/sh -c 'while :; do sleep 1; done'
Restart=always
RestartSec=1
`

// A unit that ignores SIGTERM: offline kills it after stop_timeout_ms.
const stubbornUnit = `[Service]
ExecStart=/bin/sh -c 'trap "" TERM; while :; do sleep 0.05; done'
`

func online(name, unit string) resources.Command {
	return resources.Command{Op: resources.CmdOnline, Resource: name, Type: "generic_service",
		Props: resources.Props{"unit": db.StringValue(unit), "stop_timeout_ms": db.IntValue(300),
			// What the failover manager adds.
			resources.PropNodeID: db.IntValue(1), resources.PropNodeName: db.StringValue("n1")},
		LooksAliveMs: 1000, IsAliveMs: 5000, PendingTimeoutMs: 10000}
}

func send(t *testing.T, p *resmon.Process, c resources.Command) {
	t.Helper()
	if err := p.Send(c); err != nil {
		t.Fatal(err)
	}
}

// The real resmon, inside a container running a real systemd: online
// (systemd says active), the main process killed behind systemd's back
// (failed, with systemd's reason), online again (a new main process),
// offline (inactive, no process left); a unit the node lacks fails hard.
func TestIntegrationGenericService(t *testing.T) {
	systemdrig.Require(t)
	t0 := time.Now()
	bin := resmontest.Build(t)
	units := t.TempDir()
	for n, u := range map[string]string{"wpsleep.service": sleepUnit, "wprestart.service": restartUnit, "wpstubborn.service": stubbornUnit} {
		if err := os.WriteFile(filepath.Join(units, n), []byte(u), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rig := systemdrig.New(t, systemdrig.Config{UnitDir: units,
		Binds:  []systemdrig.Bind{{Host: filepath.Dir(bin), Container: "/opt/wolfpack"}},
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	booted := time.Now()
	// resmon in the container's namespaces, as it runs on a node: it
	// reaches that systemd through /run/systemd/private like any root
	// program there (nsenter passes the socket on as fd 3).
	p := resmontest.Start(t, "nsenter", rig.Enter("/opt/wolfpack/"+filepath.Base(bin), "-log-level", "debug")...)
	if err := p.LeaseFor(time.Hour); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	showUnit := func(unit, prop string) string {
		t.Helper()
		out, err := rig.Systemctl(ctx, "show", "-p", prop, "--value", unit)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	show := func(prop string) string { t.Helper(); return showUnit("wpsleep.service", prop) }
	bringOnline := func(name, unit string) int {
		t.Helper()
		send(t, p, online(name, unit))
		resmontest.Expect(t, p, name, resources.OnlinePending, "")
		resmontest.Expect(t, p, name, resources.Online, "")
		if s := showUnit(unit, "ActiveState"); s != "active" {
			t.Fatalf("online, and systemd says %s", s)
		}
		pid, err := strconv.Atoi(showUnit(unit, "MainPID"))
		if err != nil || pid == 0 {
			t.Fatalf("MainPID %d: %v", pid, err)
		}
		return pid
	}

	pid := bringOnline("svc", "wpsleep.service")
	killed := kill(t, rig, pid)
	st := resmontest.Expect(t, p, "svc", resources.Failed, "watch failed: unit wpsleep.service left active")
	t.Logf("main process killed -> failed in %v: %s", time.Since(killed), st.Reason)
	for _, want := range []string{"result signal", "main process " + strconv.Itoa(pid) + " killed by signal 9 (KILL)"} {
		if !strings.Contains(st.Reason, want) {
			t.Errorf("reason %q; want it to say %q", st.Reason, want)
		}
	}
	if st.Class != resources.FailSoft {
		t.Errorf("class %v; want soft (restart here)", st.Class)
	}
	// resmon terminated it: systemd has it down, nothing of it runs.
	waitNoUnitProcs(t, rig)
	if s := show("ActiveState"); s == "active" || s == "activating" {
		t.Errorf("after the failure systemd says %s", s)
	}

	// The failover manager's restart: a new online.
	pid2 := bringOnline("svc", "wpsleep.service")
	if pid2 == pid {
		t.Errorf("MainPID %d again", pid2)
	}

	start := time.Now()
	send(t, p, resources.Command{Op: resources.CmdOffline, Resource: "svc"})
	resmontest.Expect(t, p, "svc", resources.OfflinePending, "")
	resmontest.Expect(t, p, "svc", resources.Offline, "")
	t.Logf("offline in %v", time.Since(start))
	if s := show("ActiveState"); s != "inactive" {
		t.Errorf("offline, and systemd says %s", s)
	}
	waitNoUnitProcs(t, rig)

	// A unit this node does not have: hard (the group moves at once).
	send(t, p, online("none", "wpnone.service"))
	resmontest.Expect(t, p, "none", resources.OnlinePending, "")
	st = resmontest.Expect(t, p, "none", resources.Failed, "unit wpnone.service not found")
	if st.Class != resources.FailHard {
		t.Errorf("unknown unit: class %v; want hard", st.Class)
	}

	// Restart=always: the failure is reported at once, naming systemd's
	// restart, and resmon's terminate cancels that restart.
	pid = bringOnline("rs", "wprestart.service")
	killed = kill(t, rig, pid)
	st = resmontest.Expect(t, p, "rs", resources.Failed, "wprestart.service")
	t.Logf("Restart=always, main process killed -> failed in %v: %s", time.Since(killed), st.Reason)
	if !strings.Contains(st.Reason, "Restart=always") {
		t.Errorf("reason %q; want it to name Restart=always", st.Reason)
	}
	waitNoUnitProcs(t, rig)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		a, sub := showUnit("wprestart.service", "ActiveState"), showUnit("wprestart.service", "SubState")
		if (a == "inactive" || a == "failed") && sub != "auto-restart" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd's restart not cancelled: %s (%s)", a, sub)
		}
	}
	if n := showUnit("wprestart.service", "NRestarts"); n != "0" {
		t.Errorf("systemd restarted the unit itself %s times", n)
	}
	// SIGTERM ignored: SIGKILL after stop_timeout_ms (300), not
	// systemd's own TimeoutStopSec (90 s).
	bringOnline("stubborn", "wpstubborn.service")
	start = time.Now()
	send(t, p, resources.Command{Op: resources.CmdOffline, Resource: "stubborn"})
	resmontest.Expect(t, p, "stubborn", resources.OfflinePending, "")
	st = resmontest.Expect(t, p, "stubborn", resources.Offline, "")
	took := time.Since(start)
	t.Logf("offline of a unit ignoring SIGTERM: %v (stop_timeout_ms 300)", took)
	if took < 300*time.Millisecond || took > 3*time.Second || st.Reason != "" {
		t.Errorf("offline took %v (reason %q); want SIGKILL just after the 300 ms stop timeout", took, st.Reason)
	}
	if s := showUnit("wpstubborn.service", "ActiveState"); s != "inactive" && s != "failed" {
		t.Errorf("offline, and systemd says %s", s)
	}
	waitNoUnitProcs(t, rig)

	t.Logf("the whole test: %v (resmon built and the container booted in %v, the scenario %v)", time.Since(t0), booted.Sub(t0), time.Since(booted))
}

// kill sends SIGKILL to the container's process pid from the host,
// behind systemd's back.
func kill(t *testing.T, rig *systemdrig.Rig, pid int) time.Time {
	t.Helper()
	host, err := rig.HostPID(pid)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := syscall.Kill(host, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	return now
}

// waitNoUnitProcs waits until no process of the unit (the shell or its
// sleep) is left in the container.
func waitNoUnitProcs(t *testing.T, rig *systemdrig.Rig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for {
		ps, err := rig.Procs()
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, p := range ps {
			if strings.Contains(p.Cmdline, "while :; do sleep") || strings.HasPrefix(p.Cmdline, "sleep ") {
				left = append(left, strconv.Itoa(p.PID)+" "+p.Cmdline)
			}
		}
		if len(left) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("processes of the unit left: %v", left)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
