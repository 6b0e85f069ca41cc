package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serve runs a Server over pipes and returns a function that sends a request
// line and the channel of parsed replies.
func serve(t *testing.T) (send func(string), replies <-chan Response) {
	t.Helper()
	reqR, reqW := io.Pipe()
	respR, respW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = NewServer(slog.New(slog.NewTextHandler(t.Output(), nil))).Serve(ctx, reqR, respW)
		respW.Close()
	}()
	t.Cleanup(func() { cancel(); reqW.Close(); <-done })
	ch := make(chan Response, 16)
	go func() {
		sc := bufio.NewScanner(respR)
		for sc.Scan() {
			var r Response
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Errorf("bad reply line %q: %v", sc.Text(), err)
				continue
			}
			ch <- r
		}
		close(ch)
	}()
	return func(line string) {
		if _, err := io.WriteString(reqW, line+"\n"); err != nil {
			t.Errorf("send: %v", err)
		}
	}, ch
}

func request(t *testing.T, r Request) string {
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func next(t *testing.T, ch <-chan Response) Response {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no reply within 10 s")
		return Response{}
	}
}

func TestServeRunsAndReplies(t *testing.T) {
	send, replies := serve(t)
	// Noise before the first request (an echo, a half line) is skipped.
	send("garbage from before the port was raw")
	send(`{"id":`)
	send(request(t, Request{ID: 1, Argv: []string{"sh", "-c", "cat; echo err >&2; exit 3"}, Stdin: []byte("in")}))
	r := next(t, replies)
	want := Response{Reply: 1, Exit: 3, Pid: r.Pid, Stdout: []byte("in"), Stderr: []byte("err\n")}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got %+v, want %+v", r, want)
	}

	send(request(t, Request{ID: 2, Argv: []string{"no-such-program-here"}}))
	if r := next(t, replies); r.Reply != 2 || r.Exit != -1 || !strings.Contains(r.Error, "not found") {
		t.Errorf("missing program: %+v", r)
	}
	send(request(t, Request{ID: 3, Argv: []string{BuiltinPing}}))
	if r := next(t, replies); r.Reply != 3 || r.Exit != 0 {
		t.Errorf("ping: %+v", r)
	}
	before := time.Now().UnixNano()
	send(request(t, Request{ID: 4, Argv: []string{BuiltinClock}}))
	r = next(t, replies)
	ns, err := strconv.ParseInt(string(r.Stdout), 10, 64)
	if r.Reply != 4 || r.Exit != 0 || err != nil || ns < before || ns > time.Now().UnixNano() {
		t.Errorf("clock: %+v (%v), want a time between the request and its reply", r, err)
	}
}

func TestServeConcurrentTimeoutCancel(t *testing.T) {
	send, replies := serve(t)
	start := time.Now()
	send(request(t, Request{ID: 1, Argv: []string{"sleep", "30"}, TimeoutMS: 200}))
	send(request(t, Request{ID: 2, Argv: []string{"sleep", "30"}}))
	send(request(t, Request{ID: 3, Argv: []string{"echo", "quick"}}))
	// The quick one is not held up by the sleeping ones.
	if r := next(t, replies); r.Reply != 3 || string(r.Stdout) != "quick\n" {
		t.Fatalf("first reply: %+v", r)
	}
	if r := next(t, replies); r.Reply != 1 || r.Signal != "SIGKILL" || !strings.Contains(r.Error, "timed out") {
		t.Errorf("timeout: %+v", r)
	}
	send(request(t, Request{ID: 2, Cancel: true}))
	if r := next(t, replies); r.Reply != 2 || r.Signal != "SIGKILL" {
		t.Errorf("cancel: %+v", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestServeBackgroundDaemonKeepsPipes(t *testing.T) {
	send, replies := serve(t)
	// The shell exits at once but leaves a child holding stdout: the reply
	// must not wait for it.
	send(request(t, Request{ID: 1, Argv: []string{"sh", "-c", "echo hi; sleep 30 &"}}))
	if r := next(t, replies); r.Exit != 0 || string(r.Stdout) != "hi\n" {
		t.Errorf("got %+v", r)
	}
	log := filepath.Join(t.TempDir(), "bg.log")
	send(request(t, Request{ID: 2, Argv: []string{"sh", "-c", "echo started"}, Background: true, LogPath: log}))
	if r := next(t, replies); r.Exit != 0 || r.Pid <= 0 {
		t.Errorf("background: %+v", r)
	}
}

func TestListDisks(t *testing.T) {
	sys := t.TempDir()
	mk := func(sg, hctl, block, vendor string) {
		dev := filepath.Join(sys, "devices/pci0000:00/0000:00:03.0/virtio0/host0/target0:0:"+hctl[4:5]+"/"+hctl)
		for _, d := range []string{dev, filepath.Join(sys, "class/scsi_generic", sg)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if block != "" {
			if err := os.MkdirAll(filepath.Join(dev, "block", block), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dev, "vendor"), []byte(vendor+"  \n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(dev, filepath.Join(sys, "class/scsi_generic", sg, "device")); err != nil {
			t.Fatal(err)
		}
	}
	mk("sg1", "0:0:2:0", "sdb", "WOLFPACK")
	mk("sg0", "0:0:1:0", "", "WOLFPACK")
	got, err := ListDisks(sys)
	if err != nil {
		t.Fatal(err)
	}
	want := []Disk{
		{SG: "/dev/sg0", Target: 1, Vendor: "WOLFPACK"},
		{SG: "/dev/sg1", Block: "/dev/sdb", Target: 2, Vendor: "WOLFPACK"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}
