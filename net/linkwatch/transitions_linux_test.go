package linkwatch

import (
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The flags of successive RTM_NEWLINK messages become events only on a
// change that matters.
func TestTransitions(t *testing.T) {
	w := &Watcher{index: 3, up: true, carrier: true}
	msg := func(typ uint16, flags uint32) netlink.LinkUpdate {
		var u netlink.LinkUpdate
		u.Header.Type = typ
		u.Index = 3
		u.Flags = flags
		return u
	}
	const up, lower = unix.IFF_UP, unix.IFF_LOWER_UP
	for i, step := range []struct {
		u    netlink.LinkUpdate
		want Kind // 0: no event
	}{
		{msg(unix.RTM_NEWLINK, up|lower), 0},
		{msg(unix.RTM_NEWLINK, up), CarrierLost},
		{msg(unix.RTM_NEWLINK, up), 0},
		{msg(unix.RTM_NEWLINK, up|lower), CarrierRestored},
		{msg(unix.RTM_NEWLINK, 0), LinkDown},
		{msg(unix.RTM_NEWLINK, up), 0}, // up, no carrier yet
		{msg(unix.RTM_NEWLINK, up|lower), CarrierRestored},
		{msg(unix.RTM_DELLINK, 0), LinkGone},
	} {
		e, ok := w.link(step.u)
		if got := map[bool]Kind{true: e.Kind}[ok]; got != step.want {
			t.Errorf("step %d: %v, want %v", i, got, step.want)
		}
	}
	other := msg(unix.RTM_DELLINK, 0)
	other.Index = 4
	if _, ok := w.link(other); ok {
		t.Errorf("another link's message made an event")
	}
}
