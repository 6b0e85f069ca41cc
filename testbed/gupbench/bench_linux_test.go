package gupbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/testbed/etcdrig"
	"github.com/wolfpack-ha/wolfpack/testbed/loadgen"
	"github.com/wolfpack-ha/wolfpack/testbed/netns"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// A system is one system under test. start brings up a size of it for one
// run and returns what the run measures; everything it starts must stop
// at t's cleanups (the run's subtest ends before the next run starts).
type system struct {
	name  string
	sizes []int
	start func(t *testing.T, n int) *target
}

// systems are the systems TestIntegrationBenchGUP knows; WOLFPACK_BENCH_GUP
// picks among them. The first size of etcd is the reference of the
// ratios.
//
// Wolfpack's entry needs a startWolfpack that brings up n clusterd nodes
// (testbed/nscluster, the quorum log on its tgt LUN), waits for every node
// to be a member, and returns a target whose clients do one database
// update each Put through a node's admin socket (nscluster's Node.Socket,
// a file on the host: dial it with net.Dialer "unix"), returning when
// clusterd answers that the update is committed. The sequential client
// goes to the locker's node (etcd's to its leader; a second path through
// another node, as etcd's through a follower, shows the forwarding), the
// one fleet's client k to node k mod n + 1 (etcd's are spread so too);
// check reads an update back through any node, pids lists the daemons,
// gone checks that Close left no namespace or daemon (nscluster's Close
// deletes both).
var systems = []system{
	{name: "etcd", sizes: []int{3}, start: startEtcd},
	{name: "wolfpack", sizes: []int{2, 4, 8, 16}, start: func(t *testing.T, n int) *target { return startWolfpack(t, n, false) }},
	// The log on an O_SYNC LUN: each FUA write as durable as etcd's
	// fdatasync'd WAL.
	{name: "wolfpack-sync", sizes: []int{2, 4}, start: func(t *testing.T, n int) *target { return startWolfpack(t, n, true) }},
}

// target is one system of one size, up for one run.
type target struct {
	// seq are the sequential clients, each measured alone in turn (its
	// own warm-up, then the sequential run); the first is the row the
	// ratios use, the others show a different path (etcd: through a
	// follower; gRPC without the gateway).
	seq []path
	// conc are the concurrent runs, one after the other; the first is
	// the row the ratios use.
	conc []fleet
	// check reads a key back: the runs check that their last updates
	// landed.
	check loadgen.Getter
	// pids are the system's processes (for their CPU time).
	pids []int
	// note says where the run is (logged with it); after, called once the
	// measurements are done, says what changed (a new leader).
	note  string
	after func(ctx context.Context) string
	// gone, called after the run's cleanups, reports what is left
	// behind.
	gone func() error
}

type path struct {
	label string
	c     loadgen.Client
}

// fleet is a concurrent run's clients: client returns a new client k (from
// 0).
type fleet struct {
	label  string
	client func(k int) loadgen.Client
}

func startEtcd(t *testing.T, n int) *target {
	r := etcdrig.New(t, etcdrig.Config{Members: n, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	leader, err := r.Leader(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	gw := func(m int) loadgen.Client { g := r.Gateway(m); t.Cleanup(g.Close); return g }
	grpc := func(m int) loadgen.Client { g := r.GRPC(m); t.Cleanup(g.Close); return g }
	lead := r.Gateway(leader)
	t.Cleanup(lead.Close)
	tg := &target{
		seq: []path{{"gateway → leader", lead}},
		// Spread over the members, as etcd's clients balance.
		conc: []fleet{
			{"gateway, spread", func(k int) loadgen.Client { return gw(k%n + 1) }},
			{"gRPC, spread (no gateway)", func(k int) loadgen.Client { return grpc(k%n + 1) }},
		},
		check: lead,
		note:  fmt.Sprintf("etcd %d members, leader m%d, data in %s", n, leader, r.Dir),
		after: func(ctx context.Context) string {
			l, err := r.Leader(ctx)
			if err != nil {
				return fmt.Sprintf("leader afterwards: %v", err)
			}
			if l != leader {
				return fmt.Sprintf("the leader changed during the run: m%d → m%d", leader, l)
			}
			return fmt.Sprintf("leader afterwards still m%d", l)
		},
	}
	if n > 1 {
		tg.seq = append(tg.seq, path{"gateway → follower", gw(leader%n + 1)})
	}
	tg.seq = append(tg.seq, path{"gRPC → leader (no gateway)", grpc(leader)})
	for _, m := range r.Members {
		tg.pids = append(tg.pids, m.Pid())
	}
	names, pids := r.Namespaces(), slices.Clone(tg.pids)
	tg.gone = func() error { return leftovers(names, pids) }
	return tg
}

func startWolfpack(t *testing.T, n int, syncLUN bool) *target {
	c := nscluster.New(t, nscluster.Config{Nodes: n, SyncLUN: syncLUN, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	locker := waitWolfpack(ctx, t, c, n)
	cli := func(i int) *wpClient {
		w := &wpClient{clusterapi.NewClient(c.Node(i).Socket)}
		t.Cleanup(w.c.Close)
		return w
	}
	lead := cli(locker)
	tg := &target{
		seq: []path{{"admin API → locker", lead}},
		conc: []fleet{
			{"admin API, spread", func(k int) loadgen.Client { return cli(k%n + 1) }},
		},
		check: lead,
		note:  fmt.Sprintf("wolfpack %d nodes, locker node %d, recovery log on tgt (%s, O_SYNC backing file: %v)", n, locker, c.Device, syncLUN),
		after: func(ctx context.Context) string {
			info, err := lead.c.Info(ctx)
			if err != nil {
				return fmt.Sprintf("locker afterwards: %v", err)
			}
			if info.Locker != locker {
				return fmt.Sprintf("the locker changed during the run: node %d → node %d", locker, info.Locker)
			}
			return fmt.Sprintf("locker afterwards still node %d (term %d, #%d)", info.Locker, info.Term, info.Seq)
		},
	}
	tg.seq = append(tg.seq, path{"admin API → member", cli(locker%n + 1)})
	names := []string{c.Fabric, c.StorageNS, c.ClientNS}
	for _, nd := range c.Nodes() {
		tg.pids = append(tg.pids, nd.Pid())
		names = append(names, nd.Netns)
	}
	pids := slices.Clone(tg.pids)
	tg.gone = func() error { return leftovers(names, pids) }
	return tg
}

// waitWolfpack waits until every node is a member of one membership of
// all n, knows the same locker and has applied what it has; it returns
// the locker.
func waitWolfpack(ctx context.Context, t *testing.T, c *nscluster.Cluster, n int) int {
	t.Helper()
	for {
		locker, ok := 0, true
		for _, nd := range c.Nodes() {
			st, err := nd.Status(ctx)
			if err != nil || len(st.Members) != n || st.Stage != "stabilized" || st.GUP.Locker == 0 ||
				locker != 0 && st.GUP.Locker != locker {
				ok = false
				break
			}
			locker = st.GUP.Locker
		}
		if ok {
			return locker
		}
		select {
		case <-ctx.Done():
			t.Fatalf("wolfpack: %d nodes did not form one membership with a locker: %v", n, ctx.Err())
		case <-time.After(50 * time.Millisecond): // polling interval of a condition wait
		}
	}
}

// wpClient writes key k as property "v" of the network object named
// after k: set it, or create it the first time (the warm-up does).
type wpClient struct{ c *clusterapi.Client }

func objectName(key string) string { return strings.NewReplacer("/", "-", "_", "-").Replace(key) }

func (w *wpClient) Put(ctx context.Context, key, value string) error {
	name := objectName(key)
	_, err := w.c.Commit(ctx, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "set", Kind: "network", Name: name, Props: map[string]any{"v": value}}}})
	var se *clusterapi.StatusError
	if errors.As(err, &se) && se.Code == 409 && strings.Contains(se.Message, "no such object") {
		_, err = w.c.Commit(ctx, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "create", Kind: "network", Name: name, Props: map[string]any{"v": value}}}})
	}
	return err
}

func (w *wpClient) Get(ctx context.Context, key string) (string, error) {
	r, err := w.c.Get(ctx, "network", objectName(key), false)
	if err != nil {
		return "", err
	}
	v, _ := r.Object.Props["v"].(string)
	return v, nil
}

// leftovers reports namespaces that still exist and processes that still
// run.
func leftovers(names []string, pids []int) error {
	var errs []error
	for _, ns := range names {
		if netns.Exists(ns) {
			errs = append(errs, fmt.Errorf("namespace %s left behind", ns))
		}
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("process %d still there", pid))
		}
	}
	return errors.Join(errs...)
}

// knobs are the benchmark's sizes, from the environment.
type knobs struct {
	runs     int           // WOLFPACK_BENCH_GUP_RUNS, 3
	seq      int           // WOLFPACK_BENCH_GUP_SEQ: sequential updates measured, 2000
	warm     int           // WOLFPACK_BENCH_GUP_WARMUP: before them, 200
	clients  int           // WOLFPACK_BENCH_GUP_CLIENTS, 16
	duration time.Duration // WOLFPACK_BENCH_GUP_DURATION, 10s
}

func readKnobs(t *testing.T) knobs {
	k := knobs{runs: 3, seq: 2000, warm: 200, clients: 16, duration: 10 * time.Second}
	for _, v := range []struct {
		env string
		p   *int
	}{{"RUNS", &k.runs}, {"SEQ", &k.seq}, {"WARMUP", &k.warm}, {"CLIENTS", &k.clients}} {
		if s := os.Getenv("WOLFPACK_BENCH_GUP_" + v.env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				t.Fatalf("WOLFPACK_BENCH_GUP_%s=%q: want a positive number", v.env, s)
			}
			*v.p = n
		}
	}
	if s := os.Getenv("WOLFPACK_BENCH_GUP_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("WOLFPACK_BENCH_GUP_DURATION=%q: want a duration", s)
		}
		k.duration = d
	}
	return k
}

// measured is one run of one system of one size.
type measured struct {
	seq    []loadgen.Summary // as target.seq
	conc   []loadgen.Summary // as target.conc
	cpuSeq cpuShare
	took   time.Duration
}

// TestIntegrationBenchGUP measures, for each system WOLFPACK_BENCH_GUP names
// ("etcd", "wolfpack"; make bench-gup) and each of its sizes, over
// WOLFPACK_BENCH_GUP_RUNS runs (3), each on a system brought up for it:
// WARMUP (200) then SEQ (2000) updates one after the other from one client
// (latency p50/p99; per client path of the system, the paths taking turns
// in blocks of a quarter), then, for each fleet of clients the system
// has, after 10 updates per client, CLIENTS (16) clients at once for
// DURATION (10 s) (updates per second). Runs are interleaved (run 1 of every system, then
// run 2, ...), so that the machine's other load falls on every system
// alike. Each run checks its last updates read back, and that its
// teardown left nothing behind. The tables give the median over runs and
// the ratio to etcd's first size.
func TestIntegrationBenchGUP(t *testing.T) {
	env := os.Getenv("WOLFPACK_BENCH_GUP")
	if env == "" {
		t.Skip("set WOLFPACK_BENCH_GUP=etcd (make bench-gup) to run the replicated-update benchmark")
	}
	k := readKnobs(t)
	var chosen []system
	for _, item := range strings.Split(env, ",") {
		// "wolfpack:2" runs one size only.
		name, size, sized := strings.Cut(strings.TrimSpace(item), ":")
		i := slices.IndexFunc(systems, func(s system) bool { return s.name == name })
		if i < 0 {
			t.Fatalf("WOLFPACK_BENCH_GUP=%q: no system %q (have etcd, wolfpack, wolfpack-sync)", env, name)
		}
		sys := systems[i]
		if sized {
			n, err := strconv.Atoi(size)
			if err != nil || !slices.Contains(sys.sizes, n) {
				t.Fatalf("WOLFPACK_BENCH_GUP=%q: %s has sizes %v, not %q", env, name, sys.sizes, size)
			}
			sys.sizes = []int{n}
		}
		chosen = append(chosen, sys)
	}
	t.Logf("machine: %d CPUs, load average %s; %d runs: %d warm-up + %d sequential updates, %d clients × %v",
		numCPU(), loadgen.LoadAvg(), k.runs, k.warm, k.seq, k.clients, k.duration)
	t.Log(syncCost(t, os.TempDir()))

	type key struct {
		system string
		nodes  int
	}
	results := map[key][]measured{}
	labels := map[key][]string{}
	fleets := map[key][]string{}
	var order []key
	for run := 1; run <= k.runs; run++ {
		for _, sys := range chosen {
			for _, n := range sys.sizes {
				id := key{sys.name, n}
				name := fmt.Sprintf("%s/nodes=%d/run=%d", sys.name, n, run)
				var m *measured
				var tg *target
				ok := t.Run(name, func(t *testing.T) {
					tg = sys.start(t, n)
					m = runOnce(t, tg, k)
				})
				if tg != nil && tg.gone != nil {
					if err := tg.gone(); err != nil {
						t.Errorf("%s: after teardown: %v", name, err)
					}
				}
				if !ok || m == nil {
					continue
				}
				if _, seen := results[id]; !seen {
					order = append(order, id)
					for _, p := range tg.seq {
						labels[id] = append(labels[id], p.label)
					}
					for _, f := range tg.conc {
						fleets[id] = append(fleets[id], f.label)
					}
				}
				results[id] = append(results[id], *m)
			}
		}
	}
	if len(order) == 0 {
		return
	}
	t.Logf("machine at the end: load average %s", loadgen.LoadAvg())

	// The reference: etcd's first size, its first client path.
	var ref *key
	for i := range order {
		if order[i].system == "etcd" {
			ref = &order[i]
			break
		}
	}
	ratio := func(v, r float64) string {
		if r == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v/r)
	}
	med := func(ms []measured, f func(measured) float64) float64 {
		var xs []float64
		for _, m := range ms {
			xs = append(xs, f(m))
		}
		return loadgen.Median(xs)
	}
	var refP50, refP99, refRate float64
	if ref != nil {
		refP50 = med(results[*ref], func(m measured) float64 { return float64(m.seq[0].P50) })
		refP99 = med(results[*ref], func(m measured) float64 { return float64(m.seq[0].P99) })
		refRate = med(results[*ref], func(m measured) float64 { return m.conc[0].PerSecond })
	}
	var seqRows, concRows []string
	for _, id := range order {
		ms := results[id]
		for i, label := range labels[id] {
			p50 := med(ms, func(m measured) float64 { return float64(m.seq[i].P50) })
			p99 := med(ms, func(m measured) float64 { return float64(m.seq[i].P99) })
			mean := med(ms, func(m measured) float64 { return float64(m.seq[i].Mean) })
			var runs []string
			for _, m := range ms {
				runs = append(runs, fmt.Sprintf("%s/%s", msec(float64(m.seq[i].P50)), msec(float64(m.seq[i].P99))))
			}
			seqRows = append(seqRows, fmt.Sprintf("| %s | %d | %s | %s | %s | %s | %s | %s | %s |", id.system, id.nodes, label,
				msec(p50), msec(p99), msec(mean), ratio(p50, refP50), ratio(p99, refP99), strings.Join(runs, ", ")))
		}
		for i, label := range fleets[id] {
			rate := med(ms, func(m measured) float64 { return m.conc[i].PerSecond })
			p50 := med(ms, func(m measured) float64 { return float64(m.conc[i].P50) })
			p99 := med(ms, func(m measured) float64 { return float64(m.conc[i].P99) })
			var runs []string
			for _, m := range ms {
				runs = append(runs, fmt.Sprintf("%.0f", m.conc[i].PerSecond))
			}
			concRows = append(concRows, fmt.Sprintf("| %s | %d | %s | %.0f | %s | %s | %s | %s |", id.system, id.nodes, label,
				rate, msec(p50), msec(p99), ratio(rate, refRate), strings.Join(runs, ", ")))
		}
	}
	t.Logf("sequential updates, one client, %d after %d warm-up; median over %d runs (ratios: to etcd's first row):\n"+
		"| system | nodes | client | p50 ms | p99 ms | mean ms | p50 ratio | p99 ratio | runs p50/p99 ms |\n|---|---|---|---|---|---|---|---|---|\n%s",
		k.seq, k.warm, k.runs, strings.Join(seqRows, "\n"))
	t.Logf("concurrent updates, %d clients for %v; median over %d runs:\n"+
		"| system | nodes | clients | updates/s | p50 ms | p99 ms | updates/s ratio | runs updates/s |\n|---|---|---|---|---|---|---|---|\n%s",
		k.clients, k.duration, k.runs, strings.Join(concRows, "\n"))
}

// seqBlocks is the number of turns the sequential client paths take.
const seqBlocks = 4

// runOnce measures one system that start brought up.
func runOnce(t *testing.T, tg *target, k knobs) *measured {
	ctx := t.Context()
	t0 := time.Now()
	t.Logf("%s; load average %s", tg.note, loadgen.LoadAvg())
	m := &measured{}
	cpu0 := sampleCPU(tg.pids)
	// Every path warms up, then the paths take turns, seqBlocks blocks
	// each, so that a change in the machine's other load falls on every
	// path alike.
	ws := make([]loadgen.Workload, len(tg.seq))
	for i, p := range tg.seq {
		ws[i] = loadgen.Workload{Prefix: fmt.Sprintf("seq%d", i)}
		if err := ws[i].Warmup(ctx, []loadgen.Client{p.c}, k.warm); err != nil {
			t.Fatalf("%s: %v", p.label, err)
		}
	}
	res := make([]loadgen.Result, len(tg.seq))
	blocks := min(seqBlocks, k.seq)
	for b := range blocks {
		n := k.seq / blocks
		if b < k.seq%blocks {
			n++
		}
		for i, p := range tg.seq {
			r, err := ws[i].Sequential(ctx, p.c, n)
			if err != nil {
				t.Fatalf("%s: %v", p.label, err)
			}
			res[i].Latencies = append(res[i].Latencies, r.Latencies...)
			res[i].Elapsed += r.Elapsed
			if b == blocks-1 {
				checkLast(t, tg.check, ws[i], r)
			}
		}
	}
	for i, p := range tg.seq {
		s := res[i].Summary()
		m.seq = append(m.seq, s)
		t.Logf("sequential, %s: %v", p.label, s)
	}
	m.cpuSeq = sampleCPU(tg.pids).since(cpu0)

	t.Logf("CPU, sequential phase: %v", m.cpuSeq)

	for _, f := range tg.conc {
		clients := make([]loadgen.Client, k.clients)
		for i := range clients {
			clients[i] = f.client(i)
		}
		w := loadgen.Workload{Prefix: "conc"}
		if err := w.Warmup(ctx, clients, 10); err != nil {
			t.Fatalf("%s: %v", f.label, err)
		}
		cpu := sampleCPU(tg.pids)
		r, err := w.Concurrent(ctx, clients, k.duration)
		if err != nil {
			t.Fatalf("%s: %v", f.label, err)
		}
		share := sampleCPU(tg.pids).since(cpu)
		checkLast(t, tg.check, w, r)
		s := r.Summary()
		m.conc = append(m.conc, s)
		t.Logf("concurrent, %d clients, %s: %v; a client did %d..%d; CPU: %v", k.clients, f.label, s,
			slices.Min(r.PerClient), slices.Max(r.PerClient), share)
	}
	if tg.after != nil {
		t.Log(tg.after(ctx))
	}
	m.took = time.Since(t0)
	t.Logf("measuring took %v; load average %s", m.took.Round(time.Millisecond), loadgen.LoadAvg())
	return m
}

// checkLast reads back every client's last update of r.
func checkLast(t *testing.T, g loadgen.Getter, w loadgen.Workload, r loadgen.Result) {
	t.Helper()
	if g == nil {
		return
	}
	for c, n := range r.PerClient {
		if n == 0 {
			t.Errorf("client %d did no update", c)
			continue
		}
		key, want := w.Key(c, n-1), w.Value(c, n-1)
		got, err := g.Get(t.Context(), key)
		if err != nil || got != want {
			t.Errorf("client %d's last update: %s reads %q, %v; want %q", c, key, got, err, want)
		}
	}
}

func msec(ns float64) string { return fmt.Sprintf("%.2f", ns/1e6) }

func numCPU() int {
	n := 0
	b, _ := os.ReadFile("/proc/stat")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "cpu") && !strings.HasPrefix(l, "cpu ") {
			n++
		}
	}
	return n
}

// cpuSample is CPU time in clock ticks: the machine's, busy and total
// over every CPU (/proc/stat), this process's, and the system's
// processes'.
type cpuSample struct{ busy, total, self, sys uint64 }

// cpuShare is a phase's CPU use, in CPUs (1.0: one CPU busy throughout).
type cpuShare struct{ busy, self, sys, others float64 }

func (c cpuShare) String() string {
	return fmt.Sprintf("machine %.2f CPUs busy (this test %.2f, the system's processes %.2f, others %.2f)", c.busy, c.self, c.sys, c.others)
}

func sampleCPU(pids []int) cpuSample {
	var s cpuSample
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	// user nice system idle iowait irq softirq steal guest guest_nice;
	// guest time is counted in user and nice already.
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseUint(f, 10, 64)
		if i >= 8 {
			break
		}
		s.total += v
		if i != 3 && i != 4 {
			s.busy += v
		}
	}
	s.self = loadgen.ProcTicks(os.Getpid())
	for _, p := range pids {
		s.sys += loadgen.ProcTicks(p)
	}
	return s
}

func (s cpuSample) since(a cpuSample) cpuShare {
	total := float64(s.total - a.total)
	if total == 0 {
		return cpuShare{}
	}
	cpus := float64(numCPU())
	c := cpuShare{
		busy: float64(s.busy-a.busy) / total * cpus,
		self: float64(s.self-a.self) / total * cpus,
		sys:  float64(s.sys-a.sys) / total * cpus,
	}
	c.others = max(c.busy-c.self-c.sys, 0)
	return c
}

// syncCost measures, in dir, the two ways the systems make a 4 KiB write
// durable: etcd's fdatasync(2) of its WAL and tgt's answer to a WRITE with
// FUA (its default backing store: sync_file_range(2) of the range, which
// flushes neither the device's write cache nor the file's metadata). 500
// rewrites of a preallocated file each, alternating in blocks of 100.
func syncCost(t *testing.T, dir string) string {
	f, err := os.CreateTemp(dir, "gupbench-sync-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	fd := int(f.Fd())
	buf := make([]byte, 4096)
	const slots = 64
	for i := range slots {
		if _, err := unix.Pwrite(fd, buf, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Fsync(fd); err != nil {
		t.Fatal(err)
	}
	syncs := []struct {
		name string
		f    func(off int64) error
	}{
		{"fdatasync (etcd's WAL)", func(int64) error { return unix.Fdatasync(fd) }},
		{"sync_file_range (tgt's FUA)", func(off int64) error {
			return unix.SyncFileRange(fd, off, 4096, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
		}},
	}
	lat := make([][]time.Duration, len(syncs))
	for b := range 5 {
		for j, sy := range syncs {
			for i := range 100 {
				off := int64((b*100+i)%slots) * 4096
				t0 := time.Now()
				if _, err := unix.Pwrite(fd, buf, off); err != nil {
					t.Fatal(err)
				}
				if err := sy.f(off); err != nil {
					t.Fatalf("%s: %v", sy.name, err)
				}
				lat[j] = append(lat[j], time.Since(t0))
			}
		}
	}
	var parts []string
	for j, sy := range syncs {
		parts = append(parts, fmt.Sprintf("%s p50 %v p99 %v", sy.name,
			loadgen.Median(lat[j]).Round(time.Microsecond), loadgen.Percentile(lat[j], 99).Round(time.Microsecond)))
	}
	return fmt.Sprintf("a 4 KiB rewrite made durable in %s: %s", dir, strings.Join(parts, "; "))
}
