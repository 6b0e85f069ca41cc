package quorumdisk

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

// fakeClock drives a Driver: the test advances time and delivers a tick.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
	c   chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1000, 0), c: make(chan time.Time)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) ticker(time.Duration) (<-chan time.Time, func()) { return f.c, func() {} }

// advance moves the clock by d and wakes the driver; it returns false if the
// driver has stopped.
func (f *fakeClock) advance(d time.Duration, done <-chan struct{}) bool {
	f.mu.Lock()
	f.now = f.now.Add(d)
	now := f.now
	f.mu.Unlock()
	select {
	case f.c <- now:
		return true
	case <-done:
		return false
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDriverTgtFallback: on a target that refuses PREEMPT AND ABORT (tgt),
// the driver preempts with PREEMPT instead, logs that once, wins against a
// dead holder after the defence delay, and, once preempted itself, returns
// ErrLostQuorum at its next check.
func TestDriverTgtFallback(t *testing.T) {
	lu := memtarget.New(memtarget.Config{Compat: memtarget.CompatTgt})
	ctx := context.Background()
	dead := lu.Nexus("dead")
	if err := scsi.RegisterAndIgnore(ctx, dead, Key(testTag, 5)); err != nil {
		t.Fatal(err)
	}
	if err := scsi.Reserve(ctx, dead, Key(testTag, 5), ReservationType); err != nil {
		t.Fatal(err)
	}
	// A second stranger key, so that cleanup preempts twice.
	if err := scsi.RegisterAndIgnore(ctx, lu.Nexus("stranger"), Key(testTag, 6)); err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	var logs syncBuf
	events := make(chan Event, 16)
	d := NewDriver(lu.Nexus("me"), DriverConfig{ClusterTag: testTag, Node: 1, Members: []uint32{1},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: clk.Now, NewTicker: clk.ticker,
		OnEvent: func(e Event) { events <- e }})
	done := make(chan struct{})
	var runErr error
	go func() { runErr = d.Run(ctx); close(done) }()

	var elapsed time.Duration
	won := false
	for !won {
		if !clk.advance(100*time.Millisecond, done) {
			t.Fatalf("driver stopped: %v\n%s", runErr, logs.String())
		}
		elapsed += 100 * time.Millisecond
	drain:
		for {
			select {
			case e := <-events:
				won = won || e.Kind == EventWon
			default:
				break drain
			}
		}
		if elapsed > 10*time.Second {
			t.Fatalf("no win after %s:\n%s", elapsed, logs.String())
		}
	}
	if elapsed < DefaultDefenceDelay {
		t.Fatalf("won after %s, before the defence delay", elapsed)
	}
	if n := strings.Count(logs.String(), "refused PREEMPT AND ABORT"); n != 1 {
		t.Fatalf("fallback logged %d times, want once:\n%s", n, logs.String())
	}
	if regs := lu.Registrations(); len(regs) != 1 || regs[0].Key != Key(testTag, 1) {
		t.Fatalf("registrations %+v", regs)
	}
	// Preempted by node 2: lost quorum at the next check.
	n2 := lu.Nexus("node2")
	if err := scsi.RegisterAndIgnore(ctx, n2, Key(testTag, 2)); err != nil {
		t.Fatal(err)
	}
	if err := scsi.Preempt(ctx, n2, Key(testTag, 2), Key(testTag, 1), ReservationType); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 11 && clk.advance(100*time.Millisecond, done); i++ {
	}
	<-done
	if !errors.Is(runErr, ErrLostQuorum) {
		t.Fatalf("Run: %v, want ErrLostQuorum", runErr)
	}
}
