package gup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// write is one client write: create group <client>-<k>, resolved.
type write struct {
	client string
	k      int
	name   string
	// seq is the answer's sequence number: of the apply that created the
	// object (acked), or of the apply that found it there (conflict).
	seq      uint64
	conflict bool
	outcome  string
	// failed are the attempts before the answer, each an unknown
	// outcome (the node did not answer, or not with the outcome).
	failed     []error
	sent, done time.Time // of the answered attempt
}

// streamer writes uniquely named groups through one node, one after
// another, until stop is closed; every write is resolved (answered)
// before the next starts.
type streamer struct {
	name string
	node int
	cl   *clusterapi.Client

	mu     sync.Mutex
	writes []write
}

// maxWrites bounds a client's writes: one that keeps going while the
// other is stuck must not fill the database.
const maxWrites = 3000

// maxWait bounds the wait for an answer, the takeover included (about
// 0.5 s here).
const maxWait = 3 * time.Second

func (s *streamer) run(ctx context.Context, stop <-chan struct{}) error {
	for k := 0; ; k++ {
		if k == maxWrites {
			<-stop
		}
		select {
		case <-stop:
			return nil
		default:
		}
		name := fmt.Sprintf("%s-%05d", s.name, k)
		// Create only if absent: a retry after an unknown outcome finds
		// the object there and changes nothing (409).
		tx := clusterapi.Tx{Ops: []clusterapi.Op{{Op: "create", Kind: "group", Name: name, IfAbsent: true,
			Props: map[string]any{"client": s.name, "k": k, "description": "written by " + s.name + " through node " + fmt.Sprint(s.node)}}}}
		r, conflict, errs, sent := commit(ctx, s.cl, tx)
		if ctx.Err() != nil {
			return fmt.Errorf("%s: write %d unresolved: %w", s.name, k, errors.Join(errs...))
		}
		s.mu.Lock()
		s.writes = append(s.writes, write{client: s.name, k: k, name: name, seq: r.Seq, conflict: conflict, outcome: r.Error,
			failed: errs, sent: sent, done: time.Now()})
		s.mu.Unlock()
	}
}

func (s *streamer) snapshot() []write {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.writes)
}

// TestIntegrationLockerCrash: two clients stream writes through the two
// nodes that are not the locker; the locker is SIGKILLed in the middle of
// the stream. Reference: docs/gup.md, "Failures (MSCS §5.5)": the next
// holder of the reservation replays the log, members send their pending
// requests again, and the marks make the new locker drop what the old one
// committed. The killed node comes back and catches up. Checked:
//
//   - (a) no acknowledged write is lost: every acknowledged create is on
//     every node (a linearizable List), created at exactly the sequence
//     number its answer gave;
//   - (b) nothing is applied twice: the sequence numbers 1..final are
//     accounted for one by one (each write creates a new object, so each
//     apply that succeeded is an object's Created; a 409 answer carries the
//     number of the apply that failed); a request sequenced twice would
//     leave a number nobody can account for (or, if the apply-side guard
//     catches it, a "duplicate request sequenced twice" warning);
//   - (c) every node's database is the same: every kind listed from each
//     node's own copy, compared object by object (created, version,
//     properties).
func TestIntegrationLockerCrash(t *testing.T) {
	c := newCluster(t, nscluster.Config{Nodes: 3})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	all := ids(3)
	waitMembership(ctx, t, c, 0, all, all)
	locker, info := lockerOf(ctx, t, c, all)
	writers := without(all, locker)
	t.Logf("formed %v; locker node %d (term %d, #%d); clients on nodes %v", all, locker, info.Term, info.Seq, writers)

	setupSeq := mustCommit(ctx, t, clientOf(t, c, writers[0]), clusterapi.Tx{Ops: []clusterapi.Op{{Op: "create", Kind: "cluster", Name: "cluster"}}})

	samples := monitor(c, all, 250*time.Millisecond)
	t.Cleanup(func() {
		if l := samples(); t.Failed() {
			t.Logf("GUP status every 250 ms:\n%s", strings.Join(l, "\n"))
		}
	})

	streamers := make([]*streamer, len(writers))
	stop := make(chan struct{})
	errc := make(chan error, len(writers))
	// A write still unresolved a minute after stop is given up on.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	for i, n := range writers {
		streamers[i] = &streamer{name: fmt.Sprintf("c%d", i+1), node: n, cl: clientOf(t, c, n)}
		go func(s *streamer) { errc <- s.run(wctx, stop) }(streamers[i])
	}
	stopped := false
	stopAll := func() []error {
		if !stopped {
			close(stop)
			stopped = true
			time.AfterFunc(time.Minute, wcancel)
		}
		var errs []error
		for range writers {
			if err := <-errc; err != nil {
				errs = append(errs, err)
			}
		}
		return errs
	}
	defer func() {
		if !stopped {
			stopAll()
		}
	}()
	// acked waits until every client has n more answered writes than at
	// the call, all sent after since.
	waitWrites := func(n int, since time.Time, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			ok := true
			for _, s := range streamers {
				got := 0
				for _, w := range s.snapshot() {
					if !w.sent.Before(since) && !w.conflict {
						got++
					}
				}
				if got < n {
					ok = false
				}
			}
			if ok {
				return
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				counts := []int{}
				for _, s := range streamers {
					counts = append(counts, len(s.snapshot()))
				}
				stopAll()
				t.Fatalf("the clients did not get %d writes each answered within %v since %s (answered so far %v)\n%s",
					n, within, since.Format("15:04:05.000"), counts, recent(c, 0))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	begin := time.Now()
	waitWrites(150, begin, 60*time.Second)

	mark := c.Mark()
	killed := time.Now()
	if err := c.Node(locker).Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the locker, node %d, after %v of writes", locker, killed.Sub(begin).Round(time.Millisecond))
	newLocker, err := c.WaitEvent(ctx, 0, msgLocker, nscluster.After(mark))
	if err != nil {
		t.Fatalf("%v\n%s", err, recent(c, mark))
	}
	// Keep writing for a while after the takeover.
	waitWrites(150, time.Now(), 60*time.Second)
	if errs := stopAll(); len(errs) > 0 {
		t.Fatalf("clients: %v", errors.Join(errs...))
	}

	// The numbers.
	var ws []write
	for _, s := range streamers {
		ws = append(ws, s.snapshot()...)
	}
	acked, conflicts, unknown := 0, 0, 0
	nl, _ := newLocker.Int("seq")
	var firstAfter, firstNew time.Time
	longest := map[string]time.Duration{}
	for _, s := range streamers {
		prev := begin
		for _, w := range s.snapshot() {
			if gap := w.done.Sub(prev); gap > longest[s.name] {
				longest[s.name] = gap
			}
			prev = w.done
		}
	}
	for _, w := range ws {
		unknown += len(w.failed)
		if w.conflict {
			conflicts++
			continue
		}
		acked++
		if w.sent.After(killed) && (firstAfter.IsZero() || w.done.Before(firstAfter)) {
			firstAfter = w.done
		}
		if w.seq > uint64(nl) && (firstNew.IsZero() || w.done.Before(firstNew)) {
			firstNew = w.done
		}
	}
	recs, _ := newLocker.Int("records")
	t.Logf("takeover: kill → node %d is the locker (term %s, #%d, %d update records replayed): %v; kill → first write the new locker committed acknowledged: %v; kill → first write sent after the kill acknowledged: %v",
		newLocker.Node, newLocker.String("term"), nl, recs, newLocker.Time.Sub(killed).Round(time.Millisecond),
		firstNew.Sub(killed).Round(time.Millisecond), firstAfter.Sub(killed).Round(time.Millisecond))
	t.Logf("writes: %d acknowledged, %d answered 409 after a retry, %d attempts with an unknown outcome; longest wait between two answers per client: %v",
		acked, conflicts, unknown, longest)
	for _, w := range ws {
		if len(w.failed) > 0 {
			t.Logf("  %s: %d unknown outcome(s) (%v), then %s at #%d", w.name, len(w.failed), w.failed[0], map[bool]string{true: "409 " + w.outcome, false: "acknowledged"}[w.conflict], w.seq)
		}
	}

	// No client waits long for an answer: the takeover takes about half
	// a second (suspicion after 500 ms of silence, regroup, the replay);
	// a client stuck for seconds while the other writes on is a member
	// the new locker does not catch up (gup/catchup_test.go).
	for _, s := range streamers {
		prev := begin
		for _, w := range s.snapshot() {
			if gap := w.done.Sub(prev); gap > maxWait {
				t.Errorf("%s (through node %d) waited %v for an answer, to %s at #%d (%s → %s; kill at %s, new locker at %s)",
					s.name, s.node, gap.Round(time.Millisecond), w.name, w.seq, prev.Format("15:04:05.000"), w.done.Format("15:04:05.000"),
					killed.Format("15:04:05.000"), newLocker.Time.Format("15:04:05.000"))
			}
			prev = w.done
		}
	}

	// The killed node comes back (from its local copy) and catches up.
	mark = c.Mark()
	restarted := time.Now()
	if err := c.Node(locker).Start(); err != nil {
		t.Fatal(err)
	}
	waitMembership(ctx, t, c, mark, all, all)
	final := waitConverged(ctx, t, c, all, 0)
	t.Logf("node %d restarted and caught up with #%d in %v", locker, final, time.Since(restarted).Round(time.Millisecond))
	if e := c.Events(locker, msgLoaded, nscluster.After(mark)); len(e) == 1 {
		s, _ := e[0].Int("seq")
		t.Logf("node %d loaded its local copy at #%d", locker, s)
	}

	// (a) Every acknowledged write is on every node, created by the
	// apply its answer named; a 409 found the object a failed attempt
	// had created before.
	groups := map[int]map[string]clusterapi.Object{}
	for _, i := range all {
		r, err := clientOf(t, c, i).List(ctx, "group", false)
		if err != nil {
			t.Fatalf("node %d: list groups: %v", i, err)
		}
		if r.Seq < final {
			t.Errorf("node %d: a linearizable list at #%d, before #%d", i, r.Seq, final)
		}
		groups[i] = map[string]clusterapi.Object{}
		for _, o := range r.Objects {
			groups[i][o.Name] = o
		}
	}
	lost := 0
	for _, w := range ws {
		for _, i := range all {
			o, ok := groups[i][w.name]
			switch {
			case !ok:
				lost++
				if lost <= 10 {
					t.Errorf("node %d: %s (answered %s at #%d) is missing", i, w.name, map[bool]string{true: "409", false: "200"}[w.conflict], w.seq)
				}
			case !w.conflict && o.Created != w.seq:
				t.Errorf("node %d: %s acknowledged at #%d but created at #%d", i, w.name, w.seq, o.Created)
			case w.conflict && (len(w.failed) == 0 || o.Created >= w.seq):
				t.Errorf("node %d: %s answered 409 (%s) at #%d after %d failed attempts; created at #%d", i, w.name, w.outcome, w.seq, len(w.failed), o.Created)
			case o.Props["client"] != w.client || o.Props["k"] != float64(w.k):
				t.Errorf("node %d: %s has properties %v", i, w.name, o.Props)
			}
		}
	}
	// Each client's acknowledgements come in its order.
	for _, s := range streamers {
		var last uint64
		for _, w := range s.snapshot() {
			if !w.conflict && w.seq <= last {
				t.Errorf("%s: %s acknowledged at #%d, after #%d", s.name, w.name, w.seq, last)
			}
			if !w.conflict {
				last = w.seq
			}
		}
	}

	// (b) Every sequence number is accounted for, once.
	why := map[uint64][]string{setupSeq: {"the cluster object"}}
	objs := groups[all[0]]
	for name, o := range objs {
		why[o.Created] = append(why[o.Created], "created "+name)
	}
	for _, w := range ws {
		if w.conflict {
			why[w.seq] = append(why[w.seq], "409 for "+w.name)
		}
	}
	if len(objs) != len(ws) {
		t.Errorf("%d groups in the database, %d writes answered", len(objs), len(ws))
	}
	var unexplained []uint64
	for s := uint64(1); s <= final; s++ {
		switch len(why[s]) {
		case 0:
			unexplained = append(unexplained, s)
		case 1:
		default:
			t.Errorf("#%d: %s", s, strings.Join(why[s], ", "))
		}
	}
	for s := range why {
		if s > final {
			t.Errorf("#%d (%v) is past the last applied #%d", s, why[s], final)
		}
	}
	dups := dupSequenced(c, 0)
	for _, e := range dups {
		t.Logf("apply-side guard on node %d: %s", e.Node, e.Format())
	}
	// An attempt whose outcome was unknown, retried, may still have been
	// applied after its retry: a failed create nobody was answered. That
	// is the only way a number may go unexplained.
	if len(unexplained) > unknown {
		t.Errorf("sequence numbers no write accounts for: %v (%d unknown outcomes could; %d requests sequenced twice)", unexplained, unknown, len(dups))
	} else {
		t.Logf("sequence numbers 1..%d: %d accounted for by an answer or an object, %d not (%d unknown outcomes allow that many); %d requests sequenced twice",
			final, int(final)-len(unexplained), len(unexplained), unknown, len(dups))
	}

	// (c) Every node's own copy is the same.
	d := sameEverywhere(ctx, t, c, all)
	t.Logf("database at #%d: %d objects, identical on nodes %v", final, d.objects(), all)
}
