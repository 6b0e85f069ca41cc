package netname_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/nstest"
	"github.com/wolfpack-ha/wolfpack/internal/resmon"
	"github.com/wolfpack-ha/wolfpack/resources"
)

type logWriter struct{ t *testing.T }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func expect(t *testing.T, p *resmon.Process, resource string, s resources.State) {
	t.Helper()
	select {
	case st := <-p.Statuses():
		if st.Resource != resource || st.State != s {
			t.Fatalf("got %s %v %q; want %s %v", st.Resource, st.State, st.Reason, resource, s)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no report within 10 s; waiting for %s %v", resource, s)
	}
}

// A network name in mdns mode, with the address it names, hosted by the
// real resmon in a node's namespace: online, a client resolves it by mDNS
// (dig straight to the responder's port 5353 at the node's own address,
// RFC 6762 §5.5: dig takes an answer only from the address it asked; the avahi
// clients of net/mdns's test need a D-Bus of their own); offline, the
// goodbyes are sent and nothing answers.
func TestIntegrationNetworkNameResource(t *testing.T) {
	rig := nstest.New(t)
	nstest.RequireCommand(t, "dig", "bind9-dnsutils")
	node := rig.Node("n", "10.77.0.1/24")
	cl := rig.Node("cl", "10.77.0.100/24")

	bin := filepath.Join(t.TempDir(), "resmon")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/wolfpack-ha/wolfpack/cmd/resmon").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/resmon: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	p, err := resmon.Start(ctx, resmon.Config{Path: "ip", Args: []string{"netns", "exec", node.Name, bin, "-state-dir", t.TempDir()}, Stderr: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Stop(ctx)
	})
	p.LeaseFor(time.Hour)

	send := func(c resources.Command) {
		t.Helper()
		if err := p.Send(c); err != nil {
			t.Fatal(err)
		}
	}
	send(resources.Command{Op: resources.CmdOnline, Resource: "vip", Type: "ip_address",
		Props:        resources.Props{"address": db.StringValue("10.77.0.50")},
		LooksAliveMs: 100, IsAliveMs: 1000, PendingTimeoutMs: 5000})
	expect(t, p, "vip", resources.OnlinePending)
	expect(t, p, "vip", resources.Online)
	start := time.Now()
	send(resources.Command{Op: resources.CmdOnline, Resource: "name", Type: "network_name",
		Props: resources.Props{"name": db.StringValue("vs1"), "interface": db.StringValue("eth0"),
			"addresses": db.ListValue("10.77.0.50")},
		LooksAliveMs: 100, IsAliveMs: 1000, PendingTimeoutMs: 5000})
	expect(t, p, "name", resources.OnlinePending)
	expect(t, p, "name", resources.Online)
	t.Logf("network name online (mDNS probing) in %v", time.Since(start))

	dig := func(timeoutSec int) (string, error) {
		out, err := cl.Run(t.Context(), "dig", "-p", "5353", "@10.77.0.1", "vs1.local", "A", "+short", "+tries=1", "+time="+strconv.Itoa(timeoutSec))
		return strings.TrimSpace(string(out)), err
	}
	if got, err := dig(2); err != nil || got != "10.77.0.50" {
		t.Fatalf("dig vs1.local A: %q %v; want 10.77.0.50", got, err)
	}

	send(resources.Command{Op: resources.CmdOffline, Resource: "name"})
	expect(t, p, "name", resources.OfflinePending)
	expect(t, p, "name", resources.Offline)
	if got, err := dig(1); err == nil && got != "" {
		t.Fatalf("dig vs1.local A after offline: %q; want no answer", got)
	}
}
