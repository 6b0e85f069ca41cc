package gup

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// Log messages of the clusterd contract (docs/clusterd.md, docs/gup.md).
const (
	msgInstalled = "membership installed"
	msgJoined    = "joined"
	msgFormed    = "formed"
	// msgLocker: this node became the locker {term, seq, records}.
	msgLocker      = "locker"
	msgLockerKnown = "locker known"
	msgReset       = "database reset"
	msgLoaded      = "local copy of the database loaded"
	msgNoCopy      = "no local copy of the database yet"
	// msgDupSequenced: the apply-side guard caught a request the locker
	// sequenced a second time (gup.Node.apply).
	msgDupSequenced = "duplicate request sequenced twice: not applied"
	msgRefused      = "stream connection refused"
)

// kinds is every kind of database object (docs/database.md).
var kinds = []string{"cluster", "node", "network", "group", "resource", "resourcetype"}

// The rig's shared helpers (testbed/nscluster/helpers_linux.go), by the
// names the tests here use.
func newCluster(t testing.TB, cfg nscluster.Config) *nscluster.Cluster {
	if cfg.Resmon == "" {
		// No failover manager: these tests account for every update
		// (its node objects would be updates nobody made).
		cfg.Resmon = "none"
	}
	return nscluster.Start(t, cfg)
}
func ids(n int) []int                              { return nscluster.IDs(n) }
func without(l []int, x ...int) []int              { return nscluster.Without(l, x...) }
func recent(c *nscluster.Cluster, mark int) string { return c.Recent(mark) }
func waitMembership(ctx context.Context, t testing.TB, c *nscluster.Cluster, mark int, nodes, members []int) map[int]nscluster.Event {
	return c.WaitMembership(ctx, t, mark, nodes, members)
}

// clientOf returns an admin API client of node i; t's cleanup closes it.
func clientOf(t testing.TB, c *nscluster.Cluster, i int) *clusterapi.Client {
	cl := clusterapi.NewClient(c.Node(i).Socket)
	t.Cleanup(cl.Close)
	return cl
}

// clientsOf returns a client of each node in nodes, and a function that
// closes them.
func clientsOf(c *nscluster.Cluster, nodes []int) (map[int]*clusterapi.Client, func()) {
	m := map[int]*clusterapi.Client{}
	for _, i := range nodes {
		m[i] = clusterapi.NewClient(c.Node(i).Socket)
	}
	return m, func() {
		for _, cl := range m {
			cl.Close()
		}
	}
}

// lockerOf polls the nodes' GET /v1/db until exactly one says it is the
// locker and every one of them names it, and returns it.
func lockerOf(ctx context.Context, t testing.TB, c *nscluster.Cluster, nodes []int) (int, clusterapi.DBInfo) {
	t.Helper()
	cls, done := clientsOf(c, nodes)
	defer done()
	var last []clusterapi.DBInfo
	for {
		last = last[:0]
		lockers := []int{}
		agree := true
		var info clusterapi.DBInfo
		for _, i := range nodes {
			in, err := cls[i].Info(ctx)
			if err != nil {
				agree = false
				break
			}
			last = append(last, in)
			if in.IsLocker {
				lockers = append(lockers, i)
				info = in
			}
		}
		if agree && len(lockers) == 1 {
			for _, in := range last {
				if in.Locker != lockers[0] || in.Term != info.Term {
					agree = false
				}
			}
			if agree {
				return lockers[0], info
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no single locker known to all of %v: %+v: %v\n%s", nodes, last, ctx.Err(), recent(c, 0))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// commit sends tx through cl until the node answers it (200, or 409 with
// the transaction's outcome), retrying after any other error (an unknown
// outcome). It returns the answer, whether it was a 409, the errors of
// the attempts that were not answered, and when the answered attempt was
// sent.
func commit(ctx context.Context, cl *clusterapi.Client, tx clusterapi.Tx) (r clusterapi.TxResult, conflict bool, errs []error, sent time.Time) {
	for {
		sent = time.Now()
		// Longer than the daemon's own bound of a request (30 s), so
		// that the daemon decides.
		cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		var err error
		r, err = cl.Commit(cctx, tx)
		cancel()
		var se *clusterapi.StatusError
		switch {
		case err == nil:
			return r, false, errs, sent
		case errors.As(err, &se) && se.Code == 409 && r.Error != "":
			return r, true, errs, sent
		}
		errs = append(errs, err)
		select {
		case <-ctx.Done():
			return clusterapi.TxResult{}, false, append(errs, ctx.Err()), sent
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// mustCommit commits tx (retrying an unknown outcome) and fails t unless
// it succeeded; it returns the sequence number.
func mustCommit(ctx context.Context, t testing.TB, cl *clusterapi.Client, tx clusterapi.Tx) uint64 {
	t.Helper()
	r, conflict, errs, _ := commit(ctx, cl, tx)
	if ctx.Err() != nil {
		t.Fatalf("commit on %s: %v", cl.Socket, errors.Join(errs...))
	}
	if conflict {
		t.Fatalf("commit on %s: outcome %q at #%d (after %d failed attempts: %v)", cl.Socket, r.Error, r.Seq, len(errs), errors.Join(errs...))
	}
	return r.Seq
}

// waitConverged polls GET /v1/db on every node until all of them applied
// the same sequence number, at least min, and name the same locker and
// term; it returns that number.
func waitConverged(ctx context.Context, t testing.TB, c *nscluster.Cluster, nodes []int, min uint64) uint64 {
	t.Helper()
	cls, done := clientsOf(c, nodes)
	defer done()
	var infos map[int]clusterapi.DBInfo
	for {
		infos = map[int]clusterapi.DBInfo{}
		ok := true
		for _, i := range nodes {
			in, err := cls[i].Info(ctx)
			if err != nil {
				ok = false
				break
			}
			infos[i] = in
		}
		if ok {
			first := infos[nodes[0]]
			for _, in := range infos {
				if in.Seq != first.Seq || in.Seq < min || in.Locker != first.Locker || in.Term != first.Term || in.Locker == 0 {
					ok = false
				}
			}
			if ok {
				return first.Seq
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("nodes %v do not converge at #%d or later: %+v: %v\n%s", nodes, min, infos, ctx.Err(), recent(c, 0))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dump is a node's whole database: every kind's objects, in name order.
type dump map[string][]clusterapi.Object

// dumpOf lists every kind on cl (stale: the node's own copy, without
// asking the locker); it fails t if the kinds were read at different
// sequence numbers.
func dumpOf(ctx context.Context, t testing.TB, cl *clusterapi.Client, stale bool) (dump, uint64) {
	t.Helper()
	d := dump{}
	var seq uint64
	for i, k := range kinds {
		r, err := cl.List(ctx, k, stale)
		if err != nil {
			t.Fatalf("list %s on %s: %v", k, cl.Socket, err)
		}
		if i > 0 && r.Seq != seq {
			t.Fatalf("list on %s: %s read at #%d, %s at #%d (no writes run now)", cl.Socket, kinds[0], seq, k, r.Seq)
		}
		seq = r.Seq
		d[k] = r.Objects
	}
	return d, seq
}

func (d dump) objects() int {
	n := 0
	for _, l := range d {
		n += len(l)
	}
	return n
}

// diff describes how b differs from a (empty: identical), at most a few
// objects.
func (d dump) diff(b dump) string {
	var out []string
	for _, k := range kinds {
		am, bm := map[string]clusterapi.Object{}, map[string]clusterapi.Object{}
		for _, o := range d[k] {
			am[o.Name] = o
		}
		for _, o := range b[k] {
			bm[o.Name] = o
		}
		for name, o := range am {
			if p, ok := bm[name]; !ok {
				out = append(out, fmt.Sprintf("%s %q only in the first", k, name))
			} else if !reflect.DeepEqual(o, p) {
				out = append(out, fmt.Sprintf("%s %q: %+v vs %+v", k, name, o, p))
			}
		}
		for name := range bm {
			if _, ok := am[name]; !ok {
				out = append(out, fmt.Sprintf("%s %q only in the second", k, name))
			}
		}
	}
	slices.Sort(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("... %d differences in all", len(out)))
	}
	return strings.Join(out, "\n")
}

// sameEverywhere compares every node's own copy (stale reads, after
// waitConverged) with the first node's and returns the first node's.
func sameEverywhere(ctx context.Context, t testing.TB, c *nscluster.Cluster, nodes []int) dump {
	t.Helper()
	ref, seq := dumpOf(ctx, t, clientOf(t, c, nodes[0]), true)
	for _, i := range nodes[1:] {
		d, s := dumpOf(ctx, t, clientOf(t, c, i), true)
		if s != seq {
			t.Errorf("node %d's copy is at #%d, node %d's at #%d", i, s, nodes[0], seq)
		}
		if df := ref.diff(d); df != "" {
			t.Errorf("node %d's database differs from node %d's:\n%s", nodes[0], i, df)
		}
	}
	return ref
}

// dupSequenced lists the apply-side guard's warnings since mark.
func dupSequenced(c *nscluster.Cluster, mark int) []nscluster.Event {
	return c.Events(0, msgDupSequenced, nscluster.After(mark))
}

// monitor samples every node's GUP status every interval until the
// returned stop is called; stop returns the samples, one line each, for a
// failure's log.
func monitor(c *nscluster.Cluster, nodes []int, every time.Duration) (stop func() []string) {
	var (
		mu    sync.Mutex
		lines []string
		done  = make(chan struct{})
		ended = make(chan struct{})
	)
	go func() {
		defer close(ended)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
			}
			var b strings.Builder
			b.WriteString(time.Now().Format("15:04:05.000"))
			for _, i := range nodes {
				ctx, cancel := context.WithTimeout(context.Background(), every)
				st, err := c.Node(i).Status(ctx)
				cancel()
				if err != nil {
					fmt.Fprintf(&b, " | n%d: -", i)
					continue
				}
				g := st.GUP
				fmt.Fprintf(&b, " | n%d: #%d locker %d/%d pending %d conn %v sent %d recv %d drop %d",
					i, g.Seq, g.Locker, g.Term, g.Pending, g.Connected, g.Streams.Sent, g.Streams.Received, g.Streams.Dropped)
			}
			mu.Lock()
			lines = append(lines, b.String())
			mu.Unlock()
		}
	}()
	return func() []string {
		select {
		case <-done:
		default:
			close(done)
		}
		<-ended
		mu.Lock()
		defer mu.Unlock()
		return lines
	}
}
