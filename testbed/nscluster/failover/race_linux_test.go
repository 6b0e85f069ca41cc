package failover

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/testbed"
	"github.com/wolfpack-ha/wolfpack/testbed/loadgen"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// The race's IP-only group: an address whose service (the echo server)
// runs on both nodes outside the cluster, as keepalived's users run theirs.
const (
	ipGroup = "ip1"
	ipRes   = "ip1-ip"
	ipPort  = 7778
)

// ipVIP is the IP-only group's address (the full group has vip).
var ipVIP = netip.MustParseAddr("10.97.0.51")

// raceSystem is one contestant of TestIntegrationBenchRace, on a rig of
// its own (the same namespace layout for all): node crash and planned
// move, each measured by the client's longest silence.
type raceSystem interface {
	name() string
	// crash crashes the node that serves the address, measures, and brings
	// the node back (rebooted, a standby again). It returns the outages by
	// series name.
	crash(k int) map[string]int64
	// move makes a planned move of the address and measures it.
	move(k int) map[string]int64
}

// TestIntegrationBenchRace is the race against keepalived (issue 14):
// keepalived 2.2.7 (VRRPv2 with 1 s adverts, VRRPv3 with 0.1 s) and
// Wolfpack (timing profiles default and fast), each on a two-node rig of
// testbed/nscluster in the same namespace layout, with the same client
// probe (a datagram to the virtual address every 10 ms; the outage is the
// longest gap between two answers). WOLFPACK_BENCH_RACE rounds (make
// bench-race: 10); each round crashes every system's serving node
// (every process of its namespace SIGKILLed, its links down; then it
// reboots and comes back as the standby), then makes a planned move on
// every system, the systems' order rotating from round to round. A
// random pause of 0.3-1.3 s before each event puts it at a random point
// of every advert and heartbeat cycle. The planned move is SIGTERM to the master's keepalived
// (it sends priority 0) and, for Wolfpack, moving_to through the admin
// API: of the IP-only group (an ip_address; the echo server runs on both
// nodes outside the cluster, as with keepalived) and of the full group
// (address, mDNS name, the echo server as a generic_application).
// Wolfpack's crash outage includes fencing: the survivor preempts the
// dead node's key on the quorum LUN before it installs the membership,
// and waits out the dead node's lease before the address comes up.
// WOLFPACK_BENCH_RACE_SYSTEMS (comma-separated, default all of
// keepalived-v2,keepalived-v3,wolfpack-default,wolfpack-fast) picks the
// contestants.
func TestIntegrationBenchRace(t *testing.T) {
	env := os.Getenv("WOLFPACK_BENCH_RACE")
	if env == "" {
		t.Skip("set WOLFPACK_BENCH_RACE=N (make bench-race) to race Wolfpack against keepalived N rounds")
	}
	runs, err := strconv.Atoi(env)
	if err != nil || runs < 1 || runs > 1000 {
		t.Fatalf("WOLFPACK_BENCH_RACE=%q: want a count of rounds, 1..1000", env)
	}
	all := []string{"keepalived-v2", "keepalived-v3", "wolfpack-default", "wolfpack-fast"}
	names := all
	if s := os.Getenv("WOLFPACK_BENCH_RACE_SYSTEMS"); s != "" {
		names = strings.Split(s, ",")
		for _, n := range names {
			if !slices.Contains(all, n) {
				t.Fatalf("WOLFPACK_BENCH_RACE_SYSTEMS=%q: unknown system %q, want some of %s", s, n, strings.Join(all, ","))
			}
		}
	}
	nscluster.Require(t)
	timeout := time.Duration(runs)*time.Duration(len(names))*20*time.Second + 5*time.Minute
	var systems []raceSystem
	for _, n := range names {
		switch n {
		case "keepalived-v2":
			systems = append(systems, newKeepalivedSystem(t, n, 2, time.Second, timeout))
		case "keepalived-v3":
			systems = append(systems, newKeepalivedSystem(t, n, 3, 100*time.Millisecond, timeout))
		case "wolfpack-default":
			systems = append(systems, newWolfpackSystem(t, n, "default", timeout))
		case "wolfpack-fast":
			systems = append(systems, newWolfpackSystem(t, n, "fast", timeout))
		}
	}
	t.Logf("race: %d rounds of %s; load average at the start: %s", runs, strings.Join(names, ", "), loadgen.LoadAvg())

	results := map[string][]int64{} // "system crash series" → ms per round
	var order []string
	add := func(sys, event string, m map[string]int64) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			key := sys + " " + event + " " + k
			if _, ok := results[key]; !ok {
				order = append(order, key)
			}
			results[key] = append(results[key], m[k])
		}
	}
	pause := func() { time.Sleep(300*time.Millisecond + rand.N(time.Second)) }
	summary := func() {
		med := map[string]int64{}
		for _, key := range order {
			v := results[key]
			med[key] = loadgen.Median(v)
			t.Logf("RACE %s: runs=%d median=%d p95=%d min=%d max=%d all=%v", key, len(v), loadgen.Median(v),
				loadgen.Percentile(v, 95), loadgen.Percentile(v, 0), loadgen.Percentile(v, 100), v)
		}
		for _, c := range []struct{ wp, ka string }{
			{"wolfpack-default crash ip_only_outage_ms", "keepalived-v2 crash outage_ms"},
			{"wolfpack-default crash ip_only_outage_ms", "keepalived-v3 crash outage_ms"},
			{"wolfpack-fast crash ip_only_outage_ms", "keepalived-v2 crash outage_ms"},
			{"wolfpack-fast crash ip_only_outage_ms", "keepalived-v3 crash outage_ms"},
			{"wolfpack-default move ip_only_outage_ms", "keepalived-v2 move outage_ms"},
			{"wolfpack-default move ip_only_outage_ms", "keepalived-v3 move outage_ms"},
			{"wolfpack-fast move ip_only_outage_ms", "keepalived-v2 move outage_ms"},
			{"wolfpack-fast move ip_only_outage_ms", "keepalived-v3 move outage_ms"},
		} {
			w, okw := med[c.wp]
			ka, okk := med[c.ka]
			if !okw || !okk || ka == 0 {
				continue
			}
			t.Logf("RATIO %s / %s = %d / %d ms = %.2f", c.wp, c.ka, w, ka, float64(w)/float64(ka))
		}
		for _, s := range systems {
			if tr, ok := s.(interface{ trouble() string }); ok {
				t.Logf("RACE %s trouble over the whole run: %s", s.name(), tr.trouble())
			}
		}
		t.Logf("race done; load average at the end: %s", loadgen.LoadAvg())
	}
	// A round that could not finish (t.Fatal) still leaves the rounds before it.
	summaryDone := false
	t.Cleanup(func() {
		if !summaryDone {
			t.Logf("the race stopped early; the rounds so far:")
			summary()
		}
	})
	for k := 1; k <= runs; k++ {
		rot := append(slices.Clone(systems[(k-1)%len(systems):]), systems[:(k-1)%len(systems)]...)
		for _, s := range rot {
			pause()
			m := s.crash(k)
			t.Logf("round=%d %s crash: %s", k, s.name(), render(m))
			add(s.name(), "crash", m)
		}
		for _, s := range rot {
			pause()
			m := s.move(k)
			t.Logf("round=%d %s move: %s", k, s.name(), render(m))
			add(s.name(), "move", m)
		}
		t.Logf("round=%d done, load average %s", k, loadgen.LoadAvg())
	}

	summary()
	summaryDone = true
}

func render(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// probeOutage waits for an answer from node to since the event, then
// 300 ms more of answers, and returns the longest silence since the
// event; the answers after it must come from node to.
func probeOutage(ctx context.Context, t *testing.T, p *nscluster.Prober, since time.Time, to int, recent func() string) nscluster.Outage {
	t.Helper()
	if _, err := p.WaitReply(ctx, since, func(rp nscluster.Reply) bool { return rp.Node() == to }); err != nil {
		t.Fatalf("%v\n%s", err, recent())
	}
	time.Sleep(300 * time.Millisecond)
	o, err := p.Outage(since, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if o.After.Node() != to {
		t.Errorf("%v: the answers after the outage came from %q, want node %d", p.Target, o.After.From, to)
	}
	return o
}

// keepalivedSystem: two keepalived instances holding vip, the echo server
// on both nodes.
type keepalivedSystem struct {
	t      *testing.T
	label  string
	c      *nscluster.Cluster
	ctx    context.Context
	kcfg   nscluster.Keepalived
	echo   string
	kp     [3]*nscluster.KeepalivedProc
	p      *nscluster.Prober
	master int
	events int // crashes and moves made
}

func newKeepalivedSystem(t *testing.T, label string, version int, advert, timeout time.Duration) *keepalivedSystem {
	t.Helper()
	nscluster.RequireKeepalived(t)
	// The same layout as Wolfpack's rig; no clusterd runs on it.
	c := nscluster.Start(t, nscluster.Config{Nodes: 2, Resmon: "none", Deferred: []int{1, 2}})
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	echo, err := testbed.BuildGo(ctx, "./testbed/probe/echo")
	if err != nil {
		t.Fatal(err)
	}
	s := &keepalivedSystem{t: t, label: label, c: c, ctx: ctx, echo: echo,
		kcfg: nscluster.Keepalived{Version: version, Advert: advert, VIP: netip.PrefixFrom(vip, 24), RTPriority: raceRTPriority}}
	for i := 1; i <= 2; i++ {
		s.startNode(i)
	}
	if s.p, err = c.StartProber(netip.AddrPortFrom(vip, port), probeEvery); err != nil {
		t.Fatal(err)
	}
	first, err := s.p.WaitReply(ctx, time.Time{}, nil)
	if err != nil {
		t.Fatalf("%s: no answer: %v\n%s", label, err, s.logs())
	}
	s.master = first.Node()
	s.settle(s.master)
	t.Logf("%s: node %d is the master", label, s.master)
	return s
}

func (s *keepalivedSystem) name() string { return s.label }

// trouble counts the instances' transitions to MASTER over the whole run
// against the ones the race caused (the first election, one per crash and
// per move): more means a backup took the address while the master lived
// (adverts late under load: both masters for a while).
func (s *keepalivedSystem) trouble() string {
	n := 0
	for i := 1; i <= 2; i++ {
		b, err := os.ReadFile(filepath.Join(s.c.Dir, fmt.Sprintf("node%d-keepalived.log", i)))
		if err != nil {
			return err.Error()
		}
		n += strings.Count(string(b), "Entering MASTER STATE")
	}
	return fmt.Sprintf("master_transitions=%d caused_by_the_race=%d", n, 1+s.events)
}

// startNode starts node i's echo server and keepalived.
func (s *keepalivedSystem) startNode(i int) {
	s.t.Helper()
	if _, err := s.c.Node(i).Spawn("env", "WOLFPACK_PROBE_ID="+s.label, s.echo, "-listen", fmt.Sprintf("0.0.0.0:%d", port)); err != nil {
		s.t.Fatal(err)
	}
	kp, err := s.c.Node(i).StartKeepalived(s.kcfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.kp[i] = kp
}

// settle waits until the address is on master only and has stayed so for
// four advert intervals (a restarted backup has heard the master).
func (s *keepalivedSystem) settle(master int) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var stable time.Time
	for {
		on1, err1 := s.c.Node(master).HasAddr(vip)
		on2, err2 := s.c.Node(3 - master).HasAddr(vip)
		switch {
		case err1 != nil || err2 != nil:
			s.t.Fatalf("%s: %v %v", s.label, err1, err2)
		case on1 && !on2:
			if stable.IsZero() {
				stable = time.Now()
			}
			if time.Since(stable) >= 4*s.kcfg.Advert {
				return
			}
		default:
			stable = time.Time{}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: the address is not on node %d alone (node%d %v, node%d %v)\n%s", s.label, master, master, on1, 3-master, on2, s.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *keepalivedSystem) logs() string {
	var b strings.Builder
	for i := 1; i <= 2; i++ {
		if s.kp[i] != nil {
			fmt.Fprintf(&b, "node%d keepalived:\n%s\n", i, s.kp[i].LogTail(15))
		}
	}
	return b.String()
}

func (s *keepalivedSystem) crash(k int) map[string]int64 {
	s.t.Helper()
	m := s.master
	s.events++
	at := time.Now()
	if err := s.c.Crash(m); err != nil {
		s.t.Fatal(err)
	}
	o := probeOutage(s.ctx, s.t, s.p, at, 3-m, s.logs)
	if err := s.c.Revive(m); err != nil {
		s.t.Fatal(err)
	}
	s.startNode(m)
	s.master = 3 - m
	s.settle(s.master)
	return map[string]int64{"outage_ms": ms(o.Gap)}
}

func (s *keepalivedSystem) move(k int) map[string]int64 {
	s.t.Helper()
	m := s.master
	s.events++
	at := time.Now()
	if err := s.kp[m].Term(); err != nil {
		s.t.Fatal(err)
	}
	o := probeOutage(s.ctx, s.t, s.p, at, 3-m, s.logs)
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if err := s.kp[m].Wait(ctx); err != nil {
		s.t.Fatal(err)
	}
	kp, err := s.c.Node(m).StartKeepalived(s.kcfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.kp[m] = kp
	s.master = 3 - m
	s.settle(s.master)
	return map[string]int64{"outage_ms": ms(o.Gap)}
}

// raceRTPriority is the SCHED_RR priority of every contestant's daemon,
// as each runs on a busy machine: clusterd's default realtime_priority
// (resmon inherits it, what resmon starts does not), keepalived's
// vrrp_rt_priority, and Wolfpack's tgtd, which stands for a storage
// array that the nodes' load does not slow down.
const raceRTPriority = 10

// wolfpackSystem: a two-node Wolfpack cluster at one timing profile with
// two groups on the same owner: the full virtual server (vs1: address,
// mDNS name, echo server as a resource) and the IP-only group (ip1: an
// address; the echo server runs on both nodes outside the cluster).
type wolfpackSystem struct {
	label   string
	r       *rig
	pIP     *nscluster.Prober
	owner   int
	resyncs int
	halts   int
}

func newWolfpackSystem(t *testing.T, label, profile string, timeout time.Duration) *wolfpackSystem {
	t.Helper()
	r := newRigWith(t, nscluster.Config{Nodes: 2, Timing: nscluster.Timing{Profile: profile}, StorageRealtime: raceRTPriority}, timeout)
	// Restarted in place, never pushed, as keepalived leaves a service
	// where it is: a lease that runs out under load (counted in trouble)
	// must not move a group between the race's events.
	r.createVS(vsOpts{restartInPlace: true}, 1)
	s := &wolfpackSystem{label: label, r: r, owner: 1}
	for i := 1; i <= 2; i++ {
		s.startEcho(i)
	}
	r.commit(1, clusterapi.Tx{Ops: []clusterapi.Op{
		{Op: "create", Kind: "group", Name: ipGroup, Props: map[string]any{"preferred_owners": []string{"node1", "node2"}}},
		{Op: "create", Kind: "resource", Name: ipRes, Props: inPlace(map[string]any{
			"group": ipGroup, "type": "ip_address", "address": ipVIP.String(), "prefix_len": 24, "interface": "eth0",
			"looks_alive_ms": 200})},
	}})
	var err error
	if s.pIP, err = r.c.StartProber(netip.AddrPortFrom(ipVIP, ipPort), probeEvery); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pIP.WaitReply(r.ctx, time.Time{}, func(rp nscluster.Reply) bool { return rp.Node() == 1 }); err != nil {
		t.Fatalf("%s: no answer from node 1 on %v: %v\n%s", label, ipVIP, err, r.c.Recent(0))
	}
	return s
}

func (s *wolfpackSystem) name() string { return s.label }

// startEcho starts node i's echo server of the IP-only group, outside
// the cluster.
func (s *wolfpackSystem) startEcho(i int) {
	s.r.t.Helper()
	if _, err := s.r.c.Node(i).Spawn("env", "WOLFPACK_PROBE_ID="+ipGroup, s.r.echo, "-listen", fmt.Sprintf("0.0.0.0:%d", ipPort)); err != nil {
		s.r.t.Fatal(err)
	}
}

// settle waits until both groups are online on one node and makes it
// the owner the next event starts from. Under load a lease can run out
// (a disk heartbeat answered too late): resmon takes the resources down,
// the failover manager restarts them and, after the fourth failure,
// pushes the group to the other node. A group found elsewhere is moved
// back, unmeasured, and counted (trouble).
func (s *wolfpackSystem) settle() {
	r := s.r
	r.t.Helper()
	for i := 1; i <= 2; i++ {
		if r.c.Node(i).Running() {
			continue
		}
		// It halted by itself (pruned after a false suspicion, or lost
		// quorum): back it comes, counted.
		s.halts++
		r.t.Logf("%s: node %d is not running (it halted): rebooting it, not measured", s.label, i)
		mark := r.c.Mark()
		if err := r.c.Reboot(i); err != nil {
			r.t.Fatal(err)
		}
		r.c.WaitMembership(r.ctx, r.t, mark, []int{1, 2}, []int{1, 2})
		r.waitEvent(i, "locker known", mark, nil)
	}
	owners := map[string]string{}
	r.poll(s.label+": both groups online", func() (bool, string) {
		via := 1
		if !r.c.Node(1).Running() {
			via = 2
		}
		for _, g := range []string{group, ipGroup} {
			o, err := r.get(via, "group", g, true)
			if err != nil {
				return false, err.Error()
			}
			if st, _ := o.Props["state"].(string); st != "online" {
				return false, fmt.Sprintf("group %s: %v", g, o.Props)
			}
			owners[g], _ = o.Props["owner"].(string)
		}
		return true, ""
	})
	owner, _ := strconv.Atoi(strings.TrimPrefix(owners[group], "node"))
	if owners[ipGroup] != owners[group] {
		s.resyncs++
		r.t.Logf("%s: group %s is on %s, %s on %s: moving %s back (not measured)", s.label, ipGroup, owners[ipGroup], group, owners[group], ipGroup)
		mark := r.c.Mark()
		r.commit(owner, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "set", Kind: "group", Name: ipGroup, Props: map[string]any{"moving_to": owners[group]}}}})
		r.waitEvent(owner, evGroupOnline, mark, func(e nscluster.Event) bool { return e.String("group") == ipGroup })
	}
	if owner != s.owner {
		r.t.Logf("%s: the groups are on node %d, not node %d", s.label, owner, s.owner)
		s.owner = owner
	}
}

// trouble counts what went wrong without a test's doing in the whole
// run: leases that ran out, resources that failed, groups pushed.
func (s *wolfpackSystem) trouble() string {
	c := s.r.c
	n := func(pred func(nscluster.Event) bool) int { return len(c.Events(0, "", pred)) }
	return fmt.Sprintf("lease_expired=%d resource_failed=%d pushed=%d moved_back_unmeasured=%d peer_suspected=%d halted_rebooted_unmeasured=%d",
		n(func(e nscluster.Event) bool { return strings.HasPrefix(e.Msg, "lease expired") }),
		n(func(e nscluster.Event) bool { return e.Msg == evResourceFailed }),
		n(func(e nscluster.Event) bool { return e.Msg == evPush }), s.resyncs,
		n(func(e nscluster.Event) bool { return e.Msg == "peer suspected" }), s.halts)
}

// bounded gives one event of the race 2 minutes: a cluster that does not
// settle in that time ends the race (with the rounds so far) rather than
// hang until the rig's deadline.
func (s *wolfpackSystem) bounded() func() {
	orig := s.r.ctx
	ctx, cancel := context.WithTimeout(orig, 2*time.Minute)
	s.r.ctx = ctx
	return func() { cancel(); s.r.ctx = orig }
}

func (s *wolfpackSystem) crash(k int) map[string]int64 {
	r := s.r
	r.t.Helper()
	defer s.bounded()()
	s.settle()
	owner, survivor := s.owner, 3-s.owner
	mark := r.c.Mark()
	at := time.Now()
	if err := r.c.Crash(owner); err != nil {
		r.t.Fatal(err)
	}
	inst := r.waitEvent(survivor, "membership installed", mark, func(e nscluster.Event) bool {
		return nscluster.SameSet(e.Ints("members"), []int{survivor})
	})
	recent := func() string { return r.c.Recent(mark) }
	oIP := probeOutage(r.ctx, r.t, s.pIP, at, survivor, recent)
	oFull := probeOutage(r.ctx, r.t, r.p, at, survivor, recent)
	out := map[string]int64{
		"ip_only_outage_ms": ms(oIP.Gap), "full_outage_ms": ms(oFull.Gap),
		"detect_ms": ms(since(at, inst)),
	}
	// The IP-only group's address: install → its online began (the
	// lease's cost, as in TestIntegrationBenchFailover).
	if e, ok := r.firstEvent(survivor, mark, resState(ipRes, "online-pending")); ok {
		out["ip_wait_after_install_ms"] = ms(e.Time.Sub(inst.Time))
	}
	// Back as the standby: rebooted, a member again, knowing the locker.
	mark = r.c.Mark()
	if err := r.c.Reboot(owner); err != nil {
		r.t.Fatal(err)
	}
	s.startEcho(owner)
	r.c.WaitMembership(r.ctx, r.t, mark, []int{1, 2}, []int{1, 2})
	r.waitEvent(owner, "locker known", mark, nil)
	s.owner = survivor
	return out
}

func (s *wolfpackSystem) move(k int) map[string]int64 {
	r := s.r
	r.t.Helper()
	defer s.bounded()()
	s.settle()
	from, to := s.owner, 3-s.owner
	out := map[string]int64{}
	for _, g := range []struct {
		group, key string
		p          *nscluster.Prober
	}{{ipGroup, "ip_only_outage_ms", s.pIP}, {group, "full_outage_ms", r.p}} {
		mark := r.c.Mark()
		at := time.Now()
		r.commit(from, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "set", Kind: "group", Name: g.group, Props: map[string]any{"moving_to": nodeName(to)}}}})
		r.waitEvent(to, evGroupOnline, mark, func(e nscluster.Event) bool { return e.String("group") == g.group })
		o := probeOutage(r.ctx, r.t, g.p, at, to, func() string { return r.c.Recent(mark) })
		out[g.key] = ms(o.Gap)
		time.Sleep(300*time.Millisecond + rand.N(300*time.Millisecond))
	}
	s.owner = to
	return out
}
