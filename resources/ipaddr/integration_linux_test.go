package ipaddr_test

import (
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/nstest"
	"github.com/wolfpack-ha/wolfpack/internal/resmon"
	"github.com/wolfpack-ha/wolfpack/internal/resmon/resmontest"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// startResmon builds cmd/resmon and runs it in ns (ip netns exec passes
// the socket on as fd 3).
func startResmon(t *testing.T, ns *nstest.NS) *resmon.Process {
	t.Helper()
	return startResmonIn(t, ns, t.TempDir())
}

// startResmonIn is startResmon with the state directory dir.
func startResmonIn(t *testing.T, ns *nstest.NS, dir string) *resmon.Process {
	t.Helper()
	p := resmontest.Start(t, "ip", "netns", "exec", ns.Name, resmontest.Build(t), "-state-dir", dir)
	if err := p.LeaseFor(time.Hour); err != nil {
		t.Fatal(err)
	}
	return p
}

func expect(t *testing.T, p *resmon.Process, s resources.State, reason string) resources.Status {
	t.Helper()
	return resmontest.Expect(t, p, "", s, reason)
}

const vip = "10.77.0.50"

func online(t *testing.T, p *resmon.Process) {
	t.Helper()
	err := p.Send(resources.Command{Op: resources.CmdOnline, Resource: "vip", Type: "ip_address",
		Props:        resources.Props{"address": db.StringValue(vip), "probe": db.BoolValue(true)},
		LooksAliveMs: 100, IsAliveMs: 1000, PendingTimeoutMs: 5000})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, p, resources.OnlinePending, "")
	expect(t, p, resources.Online, "")
}

func hasAddr(t *testing.T, ns *nstest.NS) bool {
	out, err := ns.Run(t.Context(), "ip", "-4", "addr", "show", "dev", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(out), " "+vip+"/")
}

// Online: a client reaches the address. Removed behind resmon's back, or
// the cable pulled: the resource fails. Offline: the address is gone.
func TestIntegrationIPAddressResource(t *testing.T) {
	rig := nstest.New(t)
	node := rig.Node("n", "10.77.0.1/24")
	cl := rig.Node("cl", "10.77.0.100/24")
	p := startResmon(t, node)
	// Reached: a TCP connect to a closed port is refused (the node's
	// kernel answered with a RST); unreachable: it times out.
	ping := func() error {
		return cl.Do(func() error {
			c, err := net.DialTimeout("tcp", vip+":9", time.Second)
			if err == nil {
				c.Close()
				return nil
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				return nil
			}
			return err
		})
	}

	online(t, p)
	if err := ping(); err != nil {
		t.Fatalf("client cannot reach the address: %v", err)
	}
	start := time.Now()
	if err := nstest.IPBatch(node.Name, "addr del "+vip+"/24 dev eth0"); err != nil {
		t.Fatal(err)
	}
	st := expect(t, p, resources.Failed, "")
	t.Logf("address removed -> failed in %v: %s", time.Since(start), st.Reason)

	online(t, p)
	start = time.Now()
	if err := rig.SetPort("n", false); err != nil {
		t.Fatal(err)
	}
	st = expect(t, p, resources.Failed, "carrier lost")
	t.Logf("cable pulled -> failed in %v: %s", time.Since(start), st.Reason)
	if hasAddr(t, node) {
		t.Fatal("a failed address was left on the interface")
	}
	if err := rig.SetPort("n", true); err != nil {
		t.Fatal(err)
	}
	if err := nstest.WaitFor(t.Context(), 5*time.Second, func() (bool, error) {
		out, err := node.Run(t.Context(), "ip", "link", "show", "eth0")
		return err == nil && strings.Contains(string(out), "LOWER_UP"), nil
	}); err != nil {
		t.Fatalf("carrier not back: %v", err)
	}

	online(t, p)
	if err := ping(); err != nil {
		t.Fatalf("client cannot reach the address: %v", err)
	}
	if err := p.Send(resources.Command{Op: resources.CmdOffline, Resource: "vip"}); err != nil {
		t.Fatal(err)
	}
	expect(t, p, resources.OfflinePending, "")
	expect(t, p, resources.Offline, "")
	if hasAddr(t, node) {
		t.Fatal("address still on the interface after offline")
	}
	if err := ping(); err == nil {
		t.Fatal("client still reaches the address after offline")
	}
}

// A resmon killed with SIGKILL leaves its address on the interface; the
// next resmon removes it before its hello (its predecessor's record), so
// the group may leave the node.
func TestIntegrationIPAddressOrphan(t *testing.T) {
	rig := nstest.New(t)
	node := rig.Node("n", "10.77.0.1/24")
	dir := t.TempDir()
	p := startResmonIn(t, node, dir)
	online(t, p)
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if !hasAddr(t, node) {
		t.Fatal("the address went with resmon: the test cannot show the sweep")
	}
	startResmonIn(t, node, dir)
	if hasAddr(t, node) {
		t.Fatal("the new resmon said hello with its predecessor's address still on eth0")
	}
}
