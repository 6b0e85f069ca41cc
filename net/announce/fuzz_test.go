package announce

import "testing"

// FuzzARPConflict: the probe's reader takes any frame from the wire.
func FuzzARPConflict(f *testing.F) {
	for _, form := range []ARPForm{ARPRequest, ARPReply} {
		b, _ := garpFrame(form, other, v4)
		f.Add(b)
	}
	b, _ := probeFrame(other, v4)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		mac, ok := arpConflict(b, us, v4)
		if ok && len(mac) == 0 {
			t.Fatalf("conflict without a hardware address")
		}
	})
}

// FuzzNDConflict: DAD's reader takes any IPv6 frame from the wire.
func FuzzNDConflict(f *testing.F) {
	b, _ := naFrame(other, v6)
	f.Add(b)
	b, _ = dadFrame(other, v6)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		ndConflict(b, us, v6)
		if p, err := parseNDP(b); err == nil && p.msg == nil {
			t.Fatalf("parsed without a message")
		}
	})
}
