package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted on purpose
	}
	for _, c := range []struct {
		xs   []int
		p    float64
		want int
	}{
		{hundred, 50, 50},
		{hundred, 99, 99},
		{hundred, 99.5, 100},
		{hundred, 100, 100},
		{hundred, 1, 1},
		{hundred, 0, 1},
		{hundred, 7, 7}, // 0.07·100 is 7.000000000000001 in float64
		{hundred, 150, 100},
		{[]int{5}, 99, 5},
		{[]int{5}, 0, 5},
		{[]int{3, 1, 2}, 50, 2},
		{[]int{3, 1, 2}, 34, 2}, // ⌈1.02⌉ = 2nd smallest
		{[]int{3, 1, 2}, 33, 1}, // ⌈0.99⌉ = 1st
		{[]int{4, 1, 3, 2}, 50, 2},
		{nil, 50, 0},
	} {
		if got := Percentile(c.xs, c.p); got != c.want {
			t.Errorf("Percentile(%v, %v) = %d, want %d", c.xs, c.p, got, c.want)
		}
	}
	if hundred[0] != 100 {
		t.Error("Percentile sorted its argument")
	}
	// p99 of 1000 latencies: the 990th smallest.
	ds := make([]time.Duration, 1000)
	for i := range ds {
		ds[i] = time.Duration(i+1) * time.Microsecond
	}
	if got := Percentile(ds, 99); got != 990*time.Microsecond {
		t.Errorf("p99 of 1..1000 µs = %v, want 990µs", got)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7}, 7},
		{nil, 0},
		{[]float64{4486, 3900, 5100}, 4486},
	} {
		if got := Median(c.xs); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
	if got := Median([]time.Duration{4, 1, 3, 2}); got != 2 {
		t.Errorf("Median of durations 1..4 ns = %v, want 2ns (rounded down)", got)
	}
}

func TestWorkload(t *testing.T) {
	w := Workload{}
	if got := w.Key(3, 1234); got != "loadgen/c3/k34" {
		t.Errorf("Key(3, 1234) = %q", got)
	}
	v := w.Value(3, 1234)
	if len(v) != 128 || !strings.HasSuffix(v, "c3i1234") {
		t.Errorf("Value(3, 1234) = %q (%d bytes)", v, len(v))
	}
	w = Workload{Prefix: "p", Keys: 2, ValueSize: 3}
	if got := w.Key(0, 5); got != "p/c0/k1" {
		t.Errorf("Key(0, 5) = %q", got)
	}
	if got := w.Value(0, 12345); got != "345" {
		t.Errorf("Value(0, 12345) with ValueSize 3 = %q", got)
	}
}

// fake is a Client that records its calls and takes delay(i) for its
// i-th Put (counting from 0); it fails the Put failAt (1-based, 0: never).
type fake struct {
	delay  func(i int) time.Duration
	failAt int

	mu       sync.Mutex
	keys     []string
	values   []string
	inFlight *atomic.Int32 // shared by a fleet of fakes
	maxSeen  *atomic.Int32
}

var errFake = errors.New("fake: refused")

func (f *fake) Put(ctx context.Context, key, value string) error {
	f.mu.Lock()
	i := len(f.keys)
	f.keys = append(f.keys, key)
	f.values = append(f.values, value)
	f.mu.Unlock()
	if f.inFlight != nil {
		n := f.inFlight.Add(1)
		defer f.inFlight.Add(-1)
		for {
			m := f.maxSeen.Load()
			if n <= m || f.maxSeen.CompareAndSwap(m, n) {
				break
			}
		}
	}
	if f.failAt == i+1 {
		return errFake
	}
	if f.delay != nil {
		select {
		case <-time.After(f.delay(i)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func TestSequential(t *testing.T) {
	// Every 10th update is slow: 10 % of them, so p99 is slow and p50
	// is not.
	const slow = 20 * time.Millisecond
	f := &fake{delay: func(i int) time.Duration {
		if i%10 == 9 {
			return slow
		}
		return 0
	}}
	r, err := Sequential(t.Context(), f, 100)
	if err != nil {
		t.Fatal(err)
	}
	if r.Updates() != 100 || len(f.keys) != 100 || len(r.PerClient) != 1 || r.PerClient[0] != 100 {
		t.Fatalf("%d latencies, %d calls; want 100 each", r.Updates(), len(f.keys))
	}
	for i := range 100 {
		if f.keys[i] != DefaultWorkload.Key(0, i) || f.values[i] != DefaultWorkload.Value(0, i) {
			t.Fatalf("call %d: Put(%q, %q), want update %d of client 0", i, f.keys[i], f.values[i], i)
		}
	}
	for i, d := range r.Latencies {
		if i%10 == 9 && d < slow {
			t.Errorf("latency %d = %v, want ≥ %v (the fake slept that long)", i, d, slow)
		}
	}
	s := r.Summary()
	if s.P99 < slow || s.Max < slow || s.P50 >= slow {
		t.Errorf("summary %v: want p99 and max ≥ %v, p50 below", s, slow)
	}
	if r.Elapsed < 10*slow {
		t.Errorf("elapsed %v, want ≥ %v (ten slow updates one after the other)", r.Elapsed, 10*slow)
	}
	if got, want := s.PerSecond, 100/r.Elapsed.Seconds(); got != want {
		t.Errorf("per second %v, want %v", got, want)
	}
}

func TestSequentialError(t *testing.T) {
	f := &fake{failAt: 7}
	r, err := Sequential(t.Context(), f, 100)
	if !errors.Is(err, errFake) {
		t.Fatalf("err = %v, want the client's error wrapped", err)
	}
	if !strings.Contains(err.Error(), "update 7 of 100") {
		t.Errorf("err = %v, want it to name update 7", err)
	}
	if r.Updates() != 6 || len(f.keys) != 7 || r.PerClient[0] != 6 {
		t.Errorf("%d updates completed, %d calls; want 6 and 7", r.Updates(), len(f.keys))
	}
}

func TestConcurrent(t *testing.T) {
	const (
		n     = 4
		delay = 2 * time.Millisecond
		d     = 200 * time.Millisecond
	)
	var inFlight, maxSeen atomic.Int32
	fakes := make([]*fake, n)
	clients := make([]Client, n)
	for k := range fakes {
		fakes[k] = &fake{delay: func(int) time.Duration { return delay }, inFlight: &inFlight, maxSeen: &maxSeen}
		clients[k] = fakes[k]
	}
	r, err := Concurrent(t.Context(), clients, d)
	if err != nil {
		t.Fatal(err)
	}
	if r.Elapsed < d {
		t.Errorf("elapsed %v, want ≥ %v", r.Elapsed, d)
	}
	calls := 0
	for k, f := range fakes {
		if len(f.keys) < 5 {
			t.Errorf("client %d did %d updates in %v at %v each", k, len(f.keys), d, delay)
		}
		for i, key := range f.keys {
			if key != DefaultWorkload.Key(k, i) || f.values[i] != DefaultWorkload.Value(k, i) {
				t.Fatalf("client %d call %d: Put(%q, ...), want update %d of client %d", k, i, key, i, k)
			}
		}
		// Each update takes delay, and none is issued once d has passed
		// since the start: at most d/delay a client, one more for rounding.
		// (A time taken inside Put may fall past the deadline by a
		// scheduling delay under load: that is not a late issue.)
		if most := int(d/delay) + 1; len(f.keys) > most {
			t.Errorf("client %d did %d updates of %v in a %v run: over %d, so it issued some after the end", k, len(f.keys), delay, d, most)
		}
		calls += len(f.keys)
		if r.PerClient[k] != len(f.keys) {
			t.Errorf("client %d: PerClient %d, %d calls", k, r.PerClient[k], len(f.keys))
		}
	}
	if r.Updates() != calls {
		t.Errorf("%d latencies for %d calls (every update in flight at the end should complete and count)", r.Updates(), calls)
	}
	// Each Put takes ≥ delay, so n clients cannot exceed n/delay per
	// second; a runner that serialised them would stay under 1/delay.
	if ceiling := float64(n) / delay.Seconds(); r.PerSecond() > ceiling {
		t.Errorf("%.0f per s, more than %d clients at %v each allow (%.0f)", r.PerSecond(), n, delay, ceiling)
	}
	if got := maxSeen.Load(); got != n {
		t.Errorf("at most %d updates in flight at once, want %d (one per client)", got, n)
	}
	if r.PerSecond() <= 1/delay.Seconds() {
		t.Errorf("%.0f per s: no better than one client at a time (%.0f)", r.PerSecond(), 1/delay.Seconds())
	}
}

func TestConcurrentError(t *testing.T) {
	// Client 2 fails its 5th update; the others would run for a minute
	// and must be stopped.
	clients := make([]Client, 4)
	for k := range clients {
		f := &fake{delay: func(int) time.Duration { return time.Millisecond }}
		if k == 2 {
			f.failAt = 5
		}
		clients[k] = f
	}
	start := time.Now()
	r, err := Concurrent(t.Context(), clients, time.Minute)
	if !errors.Is(err, errFake) || !strings.Contains(err.Error(), "client 2, update 5") {
		t.Fatalf("err = %v, want client 2's error on update 5", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("returned after %v: the error did not stop the run", took)
	}
	if r.Updates() < 4 {
		t.Errorf("%d updates reported, want at least client 2's 4", r.Updates())
	}
	if _, err := Concurrent(t.Context(), nil, time.Second); err == nil {
		t.Error("Concurrent without clients: no error")
	}
}

func TestConcurrentContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	clients := []Client{&fake{delay: func(int) time.Duration { return time.Millisecond }}}
	_, err := Concurrent(ctx, clients, time.Minute)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
}

func TestWarmup(t *testing.T) {
	fakes := []*fake{{}, {}, {failAt: 0}}
	clients := []Client{fakes[0], fakes[1], fakes[2]}
	if err := DefaultWorkload.Warmup(t.Context(), clients, 5); err != nil {
		t.Fatal(err)
	}
	for k, f := range fakes {
		if len(f.keys) != 5 || f.keys[4] != DefaultWorkload.Key(k, 4) {
			t.Errorf("client %d: %v, want 5 updates of its own", k, f.keys)
		}
	}
	bad := []Client{&fake{}, &fake{failAt: 2}}
	if err := DefaultWorkload.Warmup(t.Context(), bad, 5); !errors.Is(err, errFake) {
		t.Errorf("err = %v, want the failing client's", err)
	}
}

func ExampleSequential() {
	var c Client = nopClient{} // a rig's client: etcdrig.Rig.Gateway, a clusterd admin-socket client
	r, err := Sequential(context.Background(), c, 1000)
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Updates(), "updates")
	// Output: 1000 updates
}

type nopClient struct{}

func (nopClient) Put(context.Context, string, string) error { return nil }
