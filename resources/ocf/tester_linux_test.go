package ocf

import (
	"log/slog"
	"testing"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/nstest"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// The sequence Debian's ocf-tester (/usr/sbin/ocf-tester) runs, through
// the adapter's own calls, for ocf:pacemaker:Dummy and, in a namespace,
// ocf:heartbeat:IPaddr2: meta-data, validate-all, monitor when stopped,
// the probe, start, monitor, probe, stop, monitor, start, monitor, start
// again, monitor, stop, monitor, stop again, monitor, reload if
// advertised; then the adapter's Online, LooksAlive, IsAlive, Offline.
func TestIntegrationOCFTesterSequence(t *testing.T) {
	requireAgents(t)
	rig := nstest.New(t)
	node := rig.Node("n", "10.77.0.1/24")
	dir := t.TempDir()
	for _, c := range []struct {
		agent  string
		params map[string]db.Value
		reload bool
	}{
		{"pacemaker:Dummy", map[string]db.Value{"state": db.StringValue(dir + "/d.state")}, true},
		{"heartbeat:IPaddr2", map[string]db.Value{"ip": db.StringValue("10.77.0.60"), "cidr_netmask": db.StringValue("24"),
			"nic": db.StringValue("eth0"), "network_namespace": db.StringValue(node.Name), "arp_bg": db.StringValue("false")}, false},
	} {
		t.Run(c.agent, func(t *testing.T) {
			inst, err := NewType("").Open("r1", typeProps(t, DefaultRoot, c.agent, c.params), slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
			if err != nil {
				t.Fatal(err)
			}
			i := inst.(*instance)
			ctx := t.Context()
			act := func(name string, want int) {
				t.Helper()
				if o, _ := i.action(ctx, name, i.currentEpoch()); o.rc != want {
					t.Fatalf("%s: rc %d (%+v), want %d", name, o.rc, o, want)
				}
			}
			mon := func(probe bool, want state) {
				t.Helper()
				if s, err := i.monitor(ctx, i.looks, probe, i.currentEpoch()); s != want {
					t.Fatalf("monitor (probe %v): %v %v, want %v", probe, s, err, want)
				}
			}
			act("validate-all", 0)
			mon(false, stateStopped)
			mon(true, stateStopped)
			act("start", 0)
			mon(false, stateRunning)
			mon(true, stateRunning)
			act("stop", 0)
			mon(false, stateStopped)
			act("start", 0)
			mon(false, stateRunning)
			act("start", 0) // a started resource
			mon(false, stateRunning)
			act("stop", 0)
			mon(false, stateStopped)
			act("stop", 0) // a stopped resource
			mon(false, stateStopped)
			if err := i.Reload(ctx); (err == nil) != c.reload {
				t.Fatalf("reload: %v, want it to work: %v", err, c.reload)
			}

			// The adapter's own calls.
			if err := i.Online(ctx); err != nil {
				t.Fatal(err)
			}
			if err := i.LooksAlive(); err != nil {
				t.Fatal(err)
			}
			if err := i.IsAlive(ctx); err != nil {
				t.Fatal(err)
			}
			if err := i.Offline(ctx); err != nil {
				t.Fatal(err)
			}
			if err := i.LooksAlive(); err == nil || resources.ClassOf(err) != resources.FailSoft {
				t.Fatalf("LooksAlive after Offline: %v, want a soft failure", err)
			}
		})
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}
