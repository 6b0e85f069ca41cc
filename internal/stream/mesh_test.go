package stream

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// exchange sends count numbered frames of type 17 from every node to every
// other, with one frame of big bytes in the middle of each stream, and
// checks that each receiver got every sender's frames complete and in
// order.
func exchange(t *testing.T, ns []*node, count, big int) {
	t.Helper()
	for _, n := range ns {
		n.in.mu.Lock()
		n.in.frames = nil
		n.in.mu.Unlock()
	}
	for seq := range count {
		for _, a := range ns {
			for _, b := range ns {
				if a == b {
					continue
				}
				size := 200
				if seq == count/2 {
					size = big
				}
				if err := a.Send(b.id, 17, seqPayload(a.id, seq, size)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, b := range ns {
		want := count * (len(ns) - 1)
		// Frames of type 16 are connect's, late.
		got := func() []frame {
			var out []frame
			for _, f := range b.in.snapshot() {
				if f.typ != 16 {
					out = append(out, f)
				}
			}
			return out
		}
		if !wait(20*time.Second, func() bool { return len(got()) >= want }) {
			t.Fatalf("node %d received %d frames, want %d; counters %+v", b.id, len(got()), want, b.Counters())
		}
		next := map[nodes.ID]int{}
		for _, f := range got() {
			seq := next[f.from]
			size := 200
			if seq == count/2 {
				size = big
			}
			if f.typ != 17 || !bytes.Equal(f.payload, seqPayload(f.from, seq, size)) {
				t.Fatalf("node %d: frame %d from node %d: type %d, %d bytes starting %q: not frame %d of %d bytes (out of order or damaged)",
					b.id, seq, f.from, f.typ, len(f.payload), f.payload[:min(8, len(f.payload))], seq, size)
			}
			next[f.from]++
		}
	}
}

// TestMeshTwo: two meshes exchange 200 frames each way, one of them 8 MiB,
// complete and in order; nothing is dropped on a settled connection.
func TestMeshTwo(t *testing.T) {
	ns := startCluster(t, 2, nil)
	connect(t, ns)
	exchange(t, ns, 200, 8<<20)
	for _, n := range ns {
		if c := n.Counters(); c.Dropped != 0 || c.RefusedTotal() != 0 || c.BadRecords != 0 || c.DecodeErrors != 0 {
			t.Errorf("node %d: counters %+v", n.id, c)
		}
	}
}

// TestMeshThree: three meshes, every pair both ways, one 8 MiB frame in
// each of the six streams.
func TestMeshThree(t *testing.T) {
	ns := startCluster(t, 3, nil)
	connect(t, ns)
	exchange(t, ns, 100, 8<<20)
	for _, n := range ns {
		if got := n.Connected(); got.Len() != 2 {
			t.Errorf("node %d connected to %v, want both others", n.id, got)
		}
	}
}

// TestSimultaneousDial: both nodes send first at the same moment, many
// times over; each time they end with one connection between them, the
// same at both ends.
func TestSimultaneousDial(t *testing.T) {
	for round := range 5 {
		ns := startCluster(t, 2, nil)
		start := make(chan struct{})
		done := make(chan struct{}, 2)
		for i, n := range ns {
			go func() {
				<-start
				n.Send(ns[1-i].id, 16, nil)
				done <- struct{}{}
			}()
		}
		close(start)
		<-done
		<-done
		if !wait(5*time.Second, func() bool { return settled(ns[0], ns[1]) }) {
			t.Fatalf("round %d: no single connection: node 1 uses %v, node 2 %v", round, ns[0].active(2), ns[1].active(1))
		}
		// It stays the one: no further churn.
		time.Sleep(100 * time.Millisecond)
		if !samePair(ns[0], ns[1]) {
			t.Fatalf("round %d: connection changed after settling", round)
		}
		exchange(t, ns, 20, 1000)
		for _, n := range ns {
			n.Close()
		}
	}
}

// TestSendErrors: what Send refuses outright, and drops when the peer is
// unreachable or its queue is full.
func TestSendErrors(t *testing.T) {
	dead := listen(t, "")
	deadAddr := dead.Addr().String()
	dead.Close()
	n := startMesh(t, creds(t, clusterCA(t), 1), listen(t, ""), map[nodes.ID]string{2: deadAddr}, func(c *Config) {
		c.QueueLen = 4
		c.MaxFrame = 1000
		c.MinBackoff = time.Second
	})
	for _, tc := range []struct {
		to   nodes.ID
		typ  uint8
		size int
		want string
	}{
		{3, 16, 0, "not a peer"},
		{2, TypePing, 0, "reserved"},
		{2, 15, 0, "reserved"},
		{2, 16, 1001, "over the maximum"},
	} {
		if err := n.Send(tc.to, tc.typ, make([]byte, tc.size)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Send(%d, %d, %d bytes) = %v, want an error with %q", tc.to, tc.typ, tc.size, err, tc.want)
		}
	}
	for range 100 {
		if err := n.Send(2, 16, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if !wait(5*time.Second, func() bool { c := n.Counters(); return c.Dropped == 100 }) {
		t.Fatalf("counters %+v, want all 100 frames dropped", n.Counters())
	}
	c := n.Counters()
	if c.QueueFull == 0 || c.Unreachable == 0 || c.Sent != 0 || c.DialFailed == 0 {
		t.Errorf("counters %+v: want drops for a full queue and an unreachable peer, a failed dial, nothing sent", c)
	}
	if l := n.log.line("stream dial failed", "peer=2", "remote="+deadAddr); l == "" {
		t.Errorf("no log of the failed dial:\n%s", n.log)
	}
	n.Close()
	if err := n.Send(2, 16, nil); err != ErrClosed {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
}

// TestReconnectAfterRestart: the peer closes and comes back on the same
// address with a new incarnation; the frames sent meanwhile are dropped
// and counted, and later frames reach the new process.
func TestReconnectAfterRestart(t *testing.T) {
	ns := startCluster(t, 2, nil)
	connect(t, ns)
	addr := ns[1].ln.Addr().String()
	ns[1].Close()
	for range 20 {
		ns[0].Send(2, 17, []byte("while down"))
		time.Sleep(5 * time.Millisecond)
	}
	if !wait(5*time.Second, func() bool { return ns[0].Counters().Dropped > 0 }) {
		t.Fatalf("nothing dropped while the peer was down: %+v", ns[0].Counters())
	}
	b := startMesh(t, creds(t, clusterCA(t), 2), listen(t, addr), map[nodes.ID]string{1: ns[0].ln.Addr().String()}, nil)
	if !wait(10*time.Second, func() bool {
		ns[0].Send(2, 18, []byte("after"))
		time.Sleep(20 * time.Millisecond)
		return len(b.in.snapshot()) > 0
	}) {
		t.Fatalf("the restarted peer received nothing; sender's counters %+v\n%s", ns[0].Counters(), ns[0].log)
	}
	for _, f := range b.in.snapshot() {
		if f.typ != 18 || string(f.payload) != "after" {
			t.Fatalf("restarted peer got %d %q: a frame from before its restart", f.typ, f.payload)
		}
	}
	if c := ns[0].Counters(); c.Connections < 2 {
		t.Errorf("sender counted %d connections, want the reconnection too", c.Connections)
	}
	// The restarted peer answers on the connection it was dialled on.
	if err := b.Send(1, 19, []byte("back")); err != nil {
		t.Fatal(err)
	}
	if !wait(5*time.Second, func() bool {
		for _, f := range ns[0].in.snapshot() {
			if f.typ == 19 {
				return true
			}
		}
		return false
	}) {
		t.Fatal("the restarted peer's reply never arrived")
	}
}

// TestCloseLeaksNothing: three meshes that exchanged frames, one with a
// client stuck in its TLS handshake and one dialling a peer that never
// answers the handshake, all close and leave no goroutine behind.
func TestCloseLeaksNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		silent := listen(t, "")
		defer silent.Close()
		accepted := make(chan struct{})
		go func() {
			defer close(accepted)
			var held []net.Conn
			for {
				c, err := silent.Accept()
				if err != nil {
					for _, c := range held {
						c.Close()
					}
					return
				}
				held = append(held, c) // never answers the handshake
			}
		}()
		defer func() { silent.Close(); <-accepted }()
		ns := startCluster(t, 3, func(c *Config) { c.DialTimeout = time.Minute })
		connect(t, ns)
		exchange(t, ns, 20, 100<<10)
		// A client that connects and says nothing.
		mute, err := net.Dial("tcp", ns[0].ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer mute.Close()
		// A mesh dialling a node that accepts and never speaks.
		d := startMesh(t, creds(t, clusterCA(t), 5), listen(t, ""), map[nodes.ID]string{6: silent.Addr().String()},
			func(c *Config) { c.DialTimeout = time.Minute })
		d.Send(6, 16, nil)
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		for _, n := range append(ns, d) {
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("Close took %v: it waited out a handshake", el)
		}
		silent.Close()
	}()
	if !wait(5*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf)
	}
}

// TestCountersString: the reasons print as the log names them.
func TestReasonNames(t *testing.T) {
	for r := ReasonNone; r < numReasons; r++ {
		if s := r.String(); s == "" || strings.HasPrefix(s, "reason(") {
			t.Errorf("reason %d has no name", int(r))
		}
	}
	if s := fmt.Sprint(numReasons); !strings.HasPrefix(s, "reason(") {
		t.Errorf("out of range reason printed %q", s)
	}
}
