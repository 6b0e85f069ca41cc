package main

import (
	"strings"
	"testing"
	"time"
)

// The timeline takes each step's first record after the kill, on the
// host's clock (the guest's times less its offset), in time order.
func TestTimeline(t *testing.T) {
	log := `{"time":"2026-11-29T10:00:00.500Z","msg":"peer suspected","peer":1,"silent_ms":500}
not json
{"time":"2026-11-29T10:00:02.100Z","msg":"peer suspected","peer":1,"silent_ms":2000}
{"time":"2026-11-29T10:00:02.110Z","msg":"regroup started","round":3}
{"time":"2026-11-29T10:00:02.400Z","msg":"key removed","victim":"0x1"}
{"time":"2026-11-29T10:00:02.500Z","msg":"arbitration done","won":true}
{"time":"2026-11-29T10:00:02.520Z","msg":"membership installed","epoch":"3.2","members":[2]}
{"time":"2026-11-29T10:00:03.100Z","msg":"state","resource":"web-ip","state":"online-pending"}
{"time":"2026-11-29T10:00:03.200Z","msg":"state","resource":"web-ip","state":"online"}
{"time":"2026-11-29T10:00:03.300Z","msg":"state","resource":"web-ip","state":"online"}
`
	offset := 100 * time.Millisecond // the guest is 100 ms ahead
	kill := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC).Add(time.Second)
	var got []string
	for _, l := range timeline(parseLog([]byte(log), offset), kill) {
		got = append(got, l.at.Sub(kill).String()+" "+strings.Fields(l.what)[0])
	}
	want := []string{"1s detection:", "1.01s regroup", "1.3s fencing:", "1.4s arbitration", "1.42s membership", "2.1s web-ip"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("timeline:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
