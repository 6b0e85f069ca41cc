package linkwatch_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/wolfpack-ha/wolfpack/net/internal/nstest"
	"github.com/wolfpack-ha/wolfpack/net/linkwatch"
)

// bound is what the test allows from the change to its report; the
// measured figures are logged (docs/net.md).
const bound = 500 * time.Millisecond

// Setting the owner's public link down, pulling its cable (the fabric end
// down) and removing the address are each reported, within bound.
func TestIntegrationLinkWatch(t *testing.T) {
	rig := nstest.New(t)
	a := rig.Node("a", "10.77.0.1/24")
	rig.Node("b", "10.77.0.2/24")
	addr := netip.MustParseAddr("10.77.0.50")
	if err := nstest.IPBatch(a.Name, "addr add 10.77.0.50/24 dev eth0"); err != nil {
		t.Fatal(err)
	}
	var w *linkwatch.Watcher
	if err := a.Do(func() (err error) {
		w, err = linkwatch.Watch(linkwatch.Config{Interface: "eth0", Addrs: []netip.Addr{addr}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	h := a.Handle()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	expect := func(what string, want linkwatch.Kind, change func() error) {
		t.Helper()
		start := time.Now()
		if err := change(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		timeout := time.After(5 * time.Second)
		for {
			select {
			case e, ok := <-w.Events():
				if !ok {
					t.Fatalf("%s: events closed", what)
				}
				if e.Kind != want {
					t.Logf("%s: also %v", what, e)
					continue
				}
				took := e.At.Sub(start)
				t.Logf("%s → %q reported after %v", what, e, took)
				if took > bound {
					t.Errorf("%s: reported after %v, want within %v", what, took, bound)
				}
				return
			case <-timeout:
				t.Fatalf("%s: no %v reported in 5 s", what, want)
			}
		}
	}
	expect("ip link set eth0 down on the owner", linkwatch.LinkDown, func() error { return h.LinkSetDown(eth0) })
	expect("ip link set eth0 up on the owner", linkwatch.CarrierRestored, func() error { return h.LinkSetUp(eth0) })
	expect("the fabric end down (cable pulled)", linkwatch.CarrierLost, func() error { return rig.SetPort("a", false) })
	expect("the fabric end up", linkwatch.CarrierRestored, func() error { return rig.SetPort("a", true) })
	expect("the address removed", linkwatch.AddrGone, func() error {
		return h.AddrDel(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(24, 32)}})
	})
}
