package testbed

import (
	"os"
	"testing"
	"time"
)

func TestFirstMembership(t *testing.T) {
	log := []byte(`{"time":"2026-11-29T10:00:00Z","msg":"starting","incarnation":1}
{"time":"2026-11-29T10:00:01Z","msg":"membership installed","members":[1]}
{"time":"2026-11-29T10:00:02Z","msg":"membership installed","members":[1,2]}
clusterd: a line that is not JSON
{"time":"2026-11-29T10:00:05Z","msg":"starting","incarnation":2}
{"time":"2026-11-29T10:00:06Z","msg":"membership installed","members":[2]}
{"time":"2026-11-29T10:00:07.250Z","msg":"membership installed","members":[1,2]}
{"time":"2026-11-29T10:00:09Z","msg":"membership installed","members":[1,2,3]}
`)
	for _, tc := range []struct {
		members int
		want    string // "" : none
	}{
		{1, "2026-11-29T10:00:06Z"},
		{2, "2026-11-29T10:00:07.25Z"}, // the current clusterd's, not the first one's
		{3, "2026-11-29T10:00:09Z"},
		{4, ""},
	} {
		got, err := firstMembership(log, tc.members)
		if tc.want == "" {
			if err == nil {
				t.Errorf("members %d: %v, want none", tc.members, got)
			}
			continue
		}
		want, _ := time.Parse(time.RFC3339Nano, tc.want)
		if err != nil || !got.Equal(want) {
			t.Errorf("members %d: %v, %v; want %v", tc.members, got, err, want)
		}
	}
}

func TestConsoleWatch(t *testing.T) {
	path := t.TempDir() + "/console"
	var w consoleWatch
	if w.sawMembership(path, 2) {
		t.Fatal("a console that does not exist yet shows a membership")
	}
	write := func(s string) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	write("[    5.1] virtio_net virtio1 eth0: renamed\r\n" + `{"time":"2026-11-29T10:00:01Z","level":"INFO","msg":"membership installed","node":1,"members":[1]}` + "\n")
	if w.sawMembership(path, 2) {
		t.Fatal("a membership of 1 taken for one of 2")
	}
	write(`{"time":"2026-11-29T10:00:02Z","level":"INFO","msg":"membership installed","node":1,`) // half a line
	if w.sawMembership(path, 2) {
		t.Fatal("half a record taken for one")
	}
	write(`"members":[1,2]}` + "\n")
	if !w.sawMembership(path, 2) {
		t.Fatal("the membership of 2 not seen")
	}
	if w.sawMembership(path, 2) {
		t.Fatal("seen again with nothing new on the console")
	}
}
