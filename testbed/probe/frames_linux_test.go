package probe

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func frame(at int, mac byte, seq uint64) Frame {
	return Frame{At: time.Unix(0, 0).Add(time.Duration(at) * time.Millisecond), MAC: net.HardwareAddr{2, 0, 0, 0, 0, mac}, Seq: seq}
}

func TestSplitBrain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frames []Frame
		want   []string // substrings, one per finding
	}{
		{"one MAC", []Frame{frame(0, 1, 1), frame(10, 1, 2), frame(20, 1, 3)}, nil},
		{"a move", []Frame{frame(0, 1, 1), frame(10, 1, 2), frame(500, 2, 50), frame(510, 2, 51)}, nil},
		{"a move and back, later than the window", []Frame{frame(0, 1, 1), frame(500, 2, 50), frame(2000, 1, 200)}, nil},
		{"one probe, two MACs", []Frame{frame(0, 1, 1), frame(1, 2, 1)}, []string{"probe #1 answered by 02:00:00:00:00:01 and by 02:00:00:00:00:02"}},
		{"alternating", []Frame{frame(0, 1, 1), frame(10, 2, 2), frame(20, 1, 3)}, []string{"02:00:00:00:00:01 again from #3"}},
		// Answers to probes 2 and 3 from the old owner arrive after the new
		// owner answered probe 10: late, not interleaved by the probes' order.
		{"late answers", []Frame{frame(0, 1, 1), frame(100, 2, 10), frame(110, 1, 2), frame(111, 1, 3), frame(120, 2, 11)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := SplitBrain(tc.frames, 100)
			if len(got) != len(tc.want) {
				t.Fatalf("SplitBrain: %q, want %d findings %q", got, len(tc.want), tc.want)
			}
			for k, w := range tc.want {
				if !strings.Contains(got[k], w) {
					t.Errorf("finding %d: %q, want it to contain %q", k, got[k], w)
				}
			}
		})
	}
}

func TestLate(t *testing.T) {
	frames := []Frame{frame(0, 1, 1), frame(100, 2, 10), frame(110, 1, 2), frame(111, 1, 3), frame(120, 2, 11), frame(130, 2, 9)}
	late := Late(frames)
	if len(late) != 2 || late[0].Seq != 2 || late[1].Seq != 3 {
		t.Errorf("Late: %+v, want the old MAC's answers to #2 and #3 (not #9: the same MAC's reordering)", late)
	}
}

func TestNameSplitBrain(t *testing.T) {
	vip := netip.MustParseAddr("10.99.0.50")
	a := func(q uint16, from string, addrs ...string) NameAnswer {
		na := NameAnswer{Query: q, From: netip.MustParseAddr(from)}
		for _, s := range addrs {
			na.Addrs = append(na.Addrs, netip.MustParseAddr(s))
		}
		return na
	}
	if got := NameSplitBrain([]NameAnswer{a(1, "10.99.0.11", "10.99.0.50"), a(2, "10.99.0.12", "10.99.0.50")}, vip); len(got) != 0 {
		t.Errorf("a move: %q", got)
	}
	got := NameSplitBrain([]NameAnswer{a(1, "10.99.0.11", "10.99.0.50"), a(1, "10.99.0.12", "10.99.0.50"), a(2, "10.99.0.11", "10.99.0.51")}, vip)
	if len(got) != 2 || !strings.Contains(got[0], "query 1 answered by 10.99.0.11 and by 10.99.0.12") || !strings.Contains(got[1], "want 10.99.0.50") {
		t.Errorf("two responders, a wrong address: %q", got)
	}
}
