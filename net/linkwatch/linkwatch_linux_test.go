package linkwatch_test

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/wolfpack-ha/wolfpack/internal/nstest"
	"github.com/wolfpack-ha/wolfpack/net/linkwatch"
)

// bound is what the test allows from the change to its report; the
// measured figures are logged (docs/net.md).
const bound = 500 * time.Millisecond

type watched struct {
	rig  *nstest.Rig
	w    *linkwatch.Watcher
	h    *netlink.Handle
	eth0 netlink.Link
	addr netip.Addr
}

func newWatched(t *testing.T) *watched {
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
	return &watched{rig: rig, w: w, h: h, eth0: eth0, addr: addr}
}

// expect makes a change and returns the time until want is reported.
func (x *watched) expect(t *testing.T, what string, want linkwatch.Kind, change func() error) time.Duration {
	t.Helper()
	start := time.Now()
	if err := change(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-x.w.Events():
			if !ok {
				t.Fatalf("%s: events closed", what)
			}
			if e.Kind != want {
				t.Logf("%s: also %v", what, e)
				continue
			}
			return e.At.Sub(start)
		case <-timeout:
			t.Fatalf("%s: no %v reported in 5 s", what, want)
		}
	}
}

// Setting the owner's public link down, pulling its cable (the fabric end
// down) and removing the address are each reported, within bound.
func TestIntegrationLinkWatch(t *testing.T) {
	x := newWatched(t)
	for _, step := range []struct {
		what   string
		want   linkwatch.Kind
		change func() error
	}{
		{"ip link set eth0 down on the owner", linkwatch.LinkDown, func() error { return x.h.LinkSetDown(x.eth0) }},
		{"ip link set eth0 up on the owner", linkwatch.CarrierRestored, func() error { return x.h.LinkSetUp(x.eth0) }},
		{"the fabric end down (cable pulled)", linkwatch.CarrierLost, func() error { return x.rig.SetPort("a", false) }},
		{"the fabric end up", linkwatch.CarrierRestored, func() error { return x.rig.SetPort("a", true) }},
		{"the address removed", linkwatch.AddrGone, func() error {
			return x.h.AddrDel(x.eth0, &netlink.Addr{IPNet: &net.IPNet{IP: x.addr.AsSlice(), Mask: net.CIDRMask(24, 32)}})
		}},
	} {
		took := x.expect(t, step.what, step.want, step.change)
		t.Logf("%s → %v reported after %v", step.what, step.want, took)
		if took > bound {
			t.Errorf("%s: reported after %v, want within %v", step.what, took, bound)
		}
	}
}

// TestIntegrationBenchLinkWatch measures, for docs/net.md, the time from
// the change to its report over WOLFPACK_BENCH_NET rounds.
func TestIntegrationBenchLinkWatch(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WOLFPACK_BENCH_NET"))
	if n <= 0 {
		t.Skip("set WOLFPACK_BENCH_NET=N to run")
	}
	x := newWatched(t)
	var down, pulled []time.Duration
	for i := 0; i < n; i++ {
		down = append(down, x.expect(t, "link down", linkwatch.LinkDown, func() error { return x.h.LinkSetDown(x.eth0) }))
		x.expect(t, "link up", linkwatch.CarrierRestored, func() error { return x.h.LinkSetUp(x.eth0) })
		// The netlink call returns when the change is made; ip -batch
		// (a process) is in the cable figure.
		pulled = append(pulled, x.expect(t, "cable pulled", linkwatch.CarrierLost, func() error { return x.rig.SetPort("a", false) }))
		x.expect(t, "cable back", linkwatch.CarrierRestored, func() error { return x.rig.SetPort("a", true) })
	}
	t.Logf("BENCH linkwatch n=%d: link down → reported median %v (max %v); fabric end down (ip -batch included) → carrier lost reported median %v (max %v)",
		n, median(down), slices.Max(down), median(pulled), slices.Max(pulled))
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
