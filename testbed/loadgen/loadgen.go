// Package loadgen drives the replicated-update benchmark (make bench-gup):
// the same client load against Wolfpack's GUP and against its peer (etcd),
// so that the two are measured the same way in the same session.
//
// A system under test supplies a Client per simulated client; a Client does
// one replicated update per Put and returns when the system has committed
// it (what that means is the system's: a GUP update acknowledged by the
// locker, an etcd put answered by the member the client talks to). Two
// runners time the Puts:
//
//   - Sequential: one client, n updates one after the other; the latencies
//     give p50/p99.
//   - Concurrent: every client in its own goroutine, each issuing its next
//     update as soon as the last one returned, for a duration; the count
//     gives updates per second.
//
// What each update writes is a Workload's: client c's i-th update puts
// Key(c, i) with Value(c, i). Percentile and Median are the summaries.
//
// The package does no I/O of its own and needs no root; the Clients do
// (testbed/etcdrig's, and the Wolfpack side's through clusterd's admin
// socket).
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client does replicated updates.
type Client interface {
	// Put writes value under key and returns once the update is
	// committed; an error fails the run.
	Put(ctx context.Context, key, value string) error
}

// Getter is a Client that can also read a key back (a rig's check that
// the updates landed; the runners never call it).
type Getter interface {
	Client
	// Get returns key's value; a missing key is an error.
	Get(ctx context.Context, key string) (string, error)
}

// Workload says what the runners write.
type Workload struct {
	// Prefix starts every key; empty means "loadgen".
	Prefix string
	// Keys is the number of distinct keys each client cycles through;
	// zero means 100.
	Keys int
	// ValueSize is each value's length in bytes; zero means 128 (a
	// configuration update of a few properties; one 512-byte block of
	// the quorum log with its record header).
	ValueSize int
}

// DefaultWorkload is the zero Workload with its defaults.
var DefaultWorkload = Workload{Prefix: "loadgen", Keys: 100, ValueSize: 128}

func (w Workload) norm() Workload {
	if w.Prefix == "" {
		w.Prefix = DefaultWorkload.Prefix
	}
	if w.Keys <= 0 {
		w.Keys = DefaultWorkload.Keys
	}
	if w.ValueSize <= 0 {
		w.ValueSize = DefaultWorkload.ValueSize
	}
	return w
}

// Key is the key of client c's i-th update: "<Prefix>/c<c>/k<i mod Keys>".
func (w Workload) Key(c, i int) string {
	w = w.norm()
	return fmt.Sprintf("%s/c%d/k%d", w.Prefix, c, i%w.Keys)
}

// Value is the value of client c's i-th update: ValueSize bytes of
// printable ASCII ending in "c<c>i<i>", so that a read-back names the
// update that wrote it (a value shorter than that suffix is its tail).
func (w Workload) Value(c, i int) string {
	w = w.norm()
	tail := "c" + strconv.Itoa(c) + "i" + strconv.Itoa(i)
	if len(tail) >= w.ValueSize {
		return tail[len(tail)-w.ValueSize:]
	}
	return strings.Repeat("-", w.ValueSize-len(tail)) + tail
}

// Result is what a runner measured.
type Result struct {
	// Latencies has one entry per completed update: each Put's time from
	// call to return. Concurrent lists them client by client, each
	// client's in the order it issued them.
	Latencies []time.Duration
	// Elapsed is from the first Put's call to the last one's return.
	Elapsed time.Duration
	// PerClient is the number of completed updates of each client (client
	// k's last one was update PerClient[k]-1: Key(k, PerClient[k]-1) holds
	// Value(k, PerClient[k]-1) if nothing else wrote it since).
	PerClient []int
}

// Updates is the number of completed updates.
func (r Result) Updates() int { return len(r.Latencies) }

// PerSecond is completed updates per second of Elapsed (0 if none).
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(len(r.Latencies)) / r.Elapsed.Seconds()
}

// Summary is a Result's figures.
type Summary struct {
	N              int
	P50, P99       time.Duration
	Mean, Min, Max time.Duration
	PerSecond      float64
}

// Summary summarises r: P50 is the median, P99 the nearest-rank 99th
// percentile of the latencies.
func (r Result) Summary() Summary {
	s := Summary{N: len(r.Latencies), PerSecond: r.PerSecond()}
	if s.N == 0 {
		return s
	}
	s.P50 = Median(r.Latencies)
	s.P99 = Percentile(r.Latencies, 99)
	s.Min = Percentile(r.Latencies, 0)
	s.Max = Percentile(r.Latencies, 100)
	var sum time.Duration
	for _, d := range r.Latencies {
		sum += d
	}
	s.Mean = sum / time.Duration(s.N)
	return s
}

func (s Summary) String() string {
	return fmt.Sprintf("n=%d p50 %v p99 %v mean %v min %v max %v, %.0f per s", s.N,
		round(s.P50), round(s.P99), round(s.Mean), round(s.Min), round(s.Max), s.PerSecond)
}

func round(d time.Duration) time.Duration { return d.Round(time.Microsecond) }

// Sequential runs DefaultWorkload.Sequential.
func Sequential(ctx context.Context, c Client, n int) (Result, error) {
	return DefaultWorkload.Sequential(ctx, c, n)
}

// Concurrent runs DefaultWorkload.Concurrent.
func Concurrent(ctx context.Context, clients []Client, d time.Duration) (Result, error) {
	return DefaultWorkload.Concurrent(ctx, clients, d)
}

// Sequential does n updates through c (as client 0), one after the other,
// and returns every latency. The first error stops it: the result holds
// the updates completed before it.
func (w Workload) Sequential(ctx context.Context, c Client, n int) (Result, error) {
	r := Result{Latencies: make([]time.Duration, 0, n)}
	start := time.Now()
	for i := range n {
		t0 := time.Now()
		if err := c.Put(ctx, w.Key(0, i), w.Value(0, i)); err != nil {
			r.Elapsed = time.Since(start)
			r.PerClient = []int{i}
			return r, fmt.Errorf("loadgen: sequential update %d of %d: %w", i+1, n, err)
		}
		r.Latencies = append(r.Latencies, time.Since(t0))
	}
	r.Elapsed = time.Since(start)
	r.PerClient = []int{n}
	return r, nil
}

// Concurrent runs every client (client k as client k of the Workload) in a
// goroutine of its own, each issuing its next update as soon as its last
// one returned, until d has passed since the start; updates in flight then
// complete and count. The first error stops every client (their context
// is cancelled) and is returned with what completed.
func (w Workload) Concurrent(ctx context.Context, clients []Client, d time.Duration) (Result, error) {
	if len(clients) == 0 {
		return Result{}, errors.New("loadgen: concurrent run without clients")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lat := make([][]time.Duration, len(clients))
	last := make([]time.Time, len(clients))
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for k, c := range clients {
		wg.Go(func() {
			for i := 0; ; i++ {
				t0 := time.Now()
				if !t0.Before(deadline) || ctx.Err() != nil {
					return
				}
				err := c.Put(ctx, w.Key(k, i), w.Value(k, i))
				t1 := time.Now()
				if err != nil {
					cancel(fmt.Errorf("loadgen: client %d, update %d: %w", k, i+1, err))
					return
				}
				lat[k] = append(lat[k], t1.Sub(t0))
				last[k] = t1
			}
		})
	}
	wg.Wait()
	r := Result{PerClient: make([]int, len(clients))}
	end := start
	for k := range clients {
		r.Latencies = append(r.Latencies, lat[k]...)
		r.PerClient[k] = len(lat[k])
		if last[k].After(end) {
			end = last[k]
		}
	}
	r.Elapsed = end.Sub(start)
	if err := context.Cause(ctx); err != nil {
		return r, err
	}
	return r, nil
}

// Warmup has every client do n updates at once (Concurrent's pattern,
// counted in updates rather than time), e.g. to open connections and fill
// caches before a measurement; it returns the first error.
func (w Workload) Warmup(ctx context.Context, clients []Client, n int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for k, c := range clients {
		wg.Go(func() {
			for i := range n {
				if ctx.Err() != nil {
					return
				}
				if err := c.Put(ctx, w.Key(k, i), w.Value(k, i)); err != nil {
					cancel(fmt.Errorf("loadgen: warm-up, client %d, update %d: %w", k, i+1, err))
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}
