package netns

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"
)

func TestDeadOwner(t *testing.T) {
	// A pid that cannot be running: above the kernel's pid_max limit.
	const gone = 1 << 23
	for _, c := range []struct {
		name string
		want bool
	}{
		{fmt.Sprintf("wpt%dx1-st", gone), true},
		{fmt.Sprintf("wpt%dx3", gone), true},
		{fmt.Sprintf("wpt%dx1-st", os.Getpid()), false}, // this process
		{"wpt1x1-st", false},                            // init lives
		{fmt.Sprintf("wpq%dx1", gone), false},           // another base
		{"wptx1", false},
		{fmt.Sprintf("wpt%d", gone), false}, // no x<n>
	} {
		if got := DeadOwner(c.name, "wpt"); got != c.want {
			t.Errorf("DeadOwner(%q) = %v, want %v", c.name, got, c.want)
		}
	}
	if p := Unique("wpt"); DeadOwner(p, "wpt") {
		t.Errorf("DeadOwner(Unique()) = true")
	}
}

func TestOwner(t *testing.T) {
	self := Self()
	if !self.Alive() || self.Start == "" {
		t.Fatalf("Self() = %+v, not alive", self)
	}
	if (Owner{Pid: self.Pid, Start: self.Start + "0"}).Alive() {
		t.Error("an owner with another start time is alive")
	}
}

// TestIntegrationSet builds two namespaces joined by a veth on a bridge,
// pings across, lists one's links from Go inside it (Do), and checks Close
// removes both.
func TestIntegrationSet(t *testing.T) {
	Require(t, "netns")
	ctx := t.Context()
	SweepDead(slog.New(slog.NewTextHandler(t.Output(), nil)), "wpt")
	p := Unique("wpt")
	s := NewSet().CloseOnSignal()
	t.Cleanup(func() { s.Close() })
	a, b := p+"-a", p+"-b"
	for _, ns := range []string{a, b} {
		if err := s.Add(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	addr := func(h byte) netip.Prefix { return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 96, 0, h}), 24) }
	if err := In(a).Iface("lo").Bridge("br0").Iface("br0", addr(1)).Veth("pb", "br0", b, "eth0").Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := In(b).Iface("lo").Iface("eth0", addr(2)).Run(ctx); err != nil {
		t.Fatal(err)
	}
	// A socket belongs to the namespace it was made in: listen in a, dial
	// from b, across the veth.
	var l net.Listener
	if err := Do(a, func() (err error) {
		l, err = net.Listen("tcp", netip.AddrPortFrom(addr(1).Addr(), 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := Do(b, func() error {
		c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("dial from %s to %s in %s: %v", b, l.Addr(), a, err)
	}
	var names []string
	err := Do(b, func() error {
		l, err := LinksWithPrefix("")
		names = l
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"eth0", "lo"}) {
		t.Errorf("links in %s: %v, want [eth0 lo]", b, names)
	}
	// This goroutine's namespace is the host's still.
	if host, err := LinksWithPrefix("pb"); err != nil || len(host) != 0 {
		t.Errorf("host links named pb: %v, %v", host, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{a, b} {
		if Exists(ns) {
			t.Errorf("%s still exists after Close", ns)
		}
	}
	if err := s.Add(ctx, p+"-c"); err == nil {
		t.Error("Add after Close succeeded")
	}
}
