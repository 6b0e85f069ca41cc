package netname_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/nstest"
	"github.com/wolfpack-ha/wolfpack/internal/resmon"
	"github.com/wolfpack-ha/wolfpack/internal/resmon/resmontest"
	"github.com/wolfpack-ha/wolfpack/resources"
)

func expect(t *testing.T, p *resmon.Process, resource string, s resources.State) {
	t.Helper()
	resmontest.Expect(t, p, resource, s, "")
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

	p := resmontest.Start(t, "ip", "netns", "exec", node.Name, resmontest.Build(t), "-state-dir", t.TempDir())
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
