package announce

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/wolfpack-ha/wolfpack/internal/nstest"
)

type heardFrame struct {
	op arp.Operation
	at time.Time
}

// The schedule (two bursts and a refresh, both forms each time) reaches
// a client; once the address is removed the announcer ends with ErrGone
// and the client hears nothing more.
func TestIntegrationAnnounce(t *testing.T) {
	rig := nstest.New(t)
	a := rig.Node("a", "10.77.0.1/24")
	cl := rig.Node("cl", "10.77.0.100/24")
	if err := nstest.IPBatch(a.Name, "addr add 10.77.0.50/24 dev eth0"); err != nil {
		t.Fatal(err)
	}
	var listener *packet.Conn
	if err := cl.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		listener, err = packet.Listen(ifi, packet.Raw, etherTypeARP, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close() })
	var (
		mu    sync.Mutex
		heard []heardFrame
	)
	go func() {
		buf := make([]byte, 1600)
		for {
			n, _, err := listener.ReadFrom(buf)
			if err != nil {
				return
			}
			if p, _, err := parseARP(buf[:n]); err == nil && p.SenderIP == v4 && p.TargetIP == v4 {
				mu.Lock()
				heard = append(heard, heardFrame{p.Operation, time.Now()})
				mu.Unlock()
			}
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(heard)
	}

	h := a.Handle()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	present := func() (bool, error) {
		as, err := h.AddrList(eth0, netlink.FAMILY_V4)
		for _, x := range as {
			if x.IP.Equal(v4.AsSlice()) {
				return true, err
			}
		}
		return false, err
	}
	cfg := Config{Count: 2, Interval: 20 * time.Millisecond, SecondDelay: 150 * time.Millisecond, SecondCount: 2, Refresh: 100 * time.Millisecond, Present: present}
	ifi := a.Interface()
	var ann *Announcer
	if err := a.Do(func() (err error) { ann, err = Start(ifi, v4, cfg); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ann.Stop)
	// Two bursts of two and two refreshes: six announcements, two frames each.
	if err := nstest.WaitFor(t.Context(), 3*time.Second, func() (bool, error) { return count() >= 12, nil }); err != nil {
		t.Fatalf("client heard %d frames, want 12: %v", count(), err)
	}
	mu.Lock()
	var req, rep int
	for _, f := range heard[:12] {
		if f.op == arp.OperationRequest {
			req++
		} else {
			rep++
		}
	}
	gap := heard[4].at.Sub(heard[0].at)
	mu.Unlock()
	// 6 and 6, unless a frame was lost (see below).
	if req < 5 || rep < 5 {
		t.Errorf("forms: %d requests, %d replies of the first 12 frames, want 6 and 6", req, rep)
	}
	if gap < 140*time.Millisecond {
		t.Errorf("second burst %v after the first, want 150 ms", gap)
	}

	// Removed behind the announcer's back: it ends with ErrGone at its
	// next refresh and sends nothing more (its socket is closed). At most
	// one announcement can race the removal: its check passed just before.
	before, _ := ann.Sent()
	if err := nstest.IPBatch(a.Name, "addr del 10.77.0.50/24 dev eth0"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ann.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("announcer still running 2 s after the address was removed")
	}
	if err := ann.Err(); !errors.Is(err, ErrGone) {
		t.Fatalf("announcer ended with %v, want ErrGone", err)
	}
	n, _ := ann.Sent()
	if n > before+1 {
		t.Errorf("%d announcements before the removal, %d in all", before, n)
	}
	// The client hears no more than was sent (two frames an announcement).
	// A broadcast frame can be lost (the kernel's per-CPU backlog is shared
	// with everything else on the machine), so fewer is logged, not failed.
	if err := nstest.WaitFor(t.Context(), time.Second, func() (bool, error) { return count() >= 2*n, nil }); err != nil {
		t.Logf("client heard %d frames of %d announcements (a frame lost?): %v", count(), n, err)
	}
	if got := count(); got > 2*n {
		t.Errorf("client heard %d frames, the announcer sent %d announcements", got, n)
	}
}
