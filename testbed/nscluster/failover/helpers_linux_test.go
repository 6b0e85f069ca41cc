package failover

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/testbed"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// The virtual server every test builds.
const (
	group   = "vs1"
	resIP   = "vs1-ip"
	resName = "vs1-name"
	resApp  = "vs1-app"
	port    = 7777
	// probeEvery is the client's datagram interval.
	probeEvery = 10 * time.Millisecond
)

// vip is the virtual address, in the rig's public subnet (10.97.0.0/24,
// eth0 on every node; the nodes are .11.., the client .100).
var vip = netip.MustParseAddr("10.97.0.50")

// Failover manager events (resources.EventKind's names; clusterd logs
// them with group, resource, peer, ms, reason).
const (
	evClaim          = "claim"
	evOwner          = "owner"
	evLeaseWait      = "lease wait"
	evGroupOnline    = "group online"
	evGroupOffline   = "group offline"
	evResourceFailed = "resource failed"
	evRestart        = "restart"
	evPush           = "push"
	evMoved          = "moved"
	evFailback       = "failback"
	evGroupFailed    = "group failed"
	evResmonStarted  = "resmon started"
	evResmonExited   = "resmon exited"
)

// vsOpts are the group's policies.
type vsOpts struct {
	preferred []string // default node1, node2, ...
	// failback: "" (never), "immediate", "window" with the hours.
	failback               string
	windowStart, windowEnd int
	// restartThreshold of the application (0: the default, 3).
	restartThreshold int
	// restartInPlace: every resource is restarted where it failed, up
	// to 1000 times, and never pushes the group (restart_action
	// "restart"), as a service under keepalived stays where it is.
	restartInPlace bool
}

// inPlace sets props to restart in place (vsOpts.restartInPlace).
func inPlace(props map[string]any) map[string]any {
	props["restart_action"], props["restart_threshold"] = "restart", 1000
	return props
}

// rig is a cluster with the virtual server and the client's instruments.
type rig struct {
	t    *testing.T
	c    *nscluster.Cluster
	ctx  context.Context
	n    int
	echo string
	p    *nscluster.Prober
	arp  *nscluster.ARPCapture
}

// newRig starts n nodes (with timing, if given), waits for the membership
// and every node's node object, and starts the ARP capture; the virtual
// server comes with createVS.
func newRig(t *testing.T, n int, timeout time.Duration, timing ...nscluster.Timing) *rig {
	t.Helper()
	cfg := nscluster.Config{Nodes: n}
	if len(timing) > 0 {
		cfg.Timing = timing[0]
	}
	return newRigWith(t, cfg, timeout)
}

// newRigWith is newRig with the cluster's whole configuration.
func newRigWith(t *testing.T, cfg nscluster.Config, timeout time.Duration) *rig {
	t.Helper()
	return rigOn(t, nscluster.Start(t, cfg), timeout)
}

// rigOn is newRig on a cluster whose every node was started.
func rigOn(t *testing.T, c *nscluster.Cluster, timeout time.Duration) *rig {
	t.Helper()
	n := len(c.Nodes())
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	echo, err := testbed.BuildGo(ctx, "./testbed/probe/echo")
	if err != nil {
		t.Fatal(err)
	}
	all := nscluster.IDs(n)
	c.WaitMembership(ctx, t, 0, all, all)
	r := &rig{t: t, c: c, ctx: ctx, n: n, echo: echo}
	// The failover manager creates each member's node object; the group
	// names them.
	for _, i := range all {
		r.poll(fmt.Sprintf("node object node%d", i), func() (bool, string) {
			_, err := r.get(1, "node", fmt.Sprintf("node%d", i), true)
			return err == nil, fmt.Sprint(err)
		})
	}
	if r.arp, err = c.CaptureARP(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("events:\n%s", c.Recent(0))
			if r.p != nil {
				t.Logf("prober: %d sent, %d answers", r.p.Sent(), len(r.p.Replies()))
			}
		}
	})
	return r
}

func nodeName(i int) string { return fmt.Sprintf("node%d", i) }

// poll calls f every 20 ms until it says done; it fails the test with
// f's last word when the rig's context ends.
func (r *rig) poll(what string, f func() (bool, string)) {
	r.t.Helper()
	for {
		ok, why := f()
		if ok {
			return
		}
		select {
		case <-r.ctx.Done():
			r.t.Fatalf("%s: %s: %v\n%s", what, why, r.ctx.Err(), r.c.Recent(0))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// get reads an object through node i's admin API.
func (r *rig) get(i int, kind, name string, stale bool) (clusterapi.Object, error) {
	cl := clusterapi.NewClient(r.c.Node(i).Socket)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	o, err := cl.Get(ctx, kind, name, stale)
	return o.Object, err
}

// commit commits tx through node i, retrying an unknown outcome; a 409
// fails the test.
func (r *rig) commit(i int, tx clusterapi.Tx) uint64 {
	r.t.Helper()
	cl := clusterapi.NewClient(r.c.Node(i).Socket)
	defer cl.Close()
	var errs []error
	for {
		ctx, cancel := context.WithTimeout(r.ctx, 45*time.Second)
		res, err := cl.Commit(ctx, tx)
		cancel()
		var se *clusterapi.StatusError
		switch {
		case err == nil:
			return res.Seq
		case errors.As(err, &se) && se.Code == 409:
			r.t.Fatalf("commit through node %d: %s", i, res.Error)
		}
		errs = append(errs, err)
		select {
		case <-r.ctx.Done():
			r.t.Fatalf("commit through node %d: %v", i, errors.Join(errs...))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// createVS creates the virtual server through node 1 in one transaction:
// the group, its address (vip/24 on eth0), its name (mDNS on eth0, after
// the address) and the echo server (after the address); then waits until
// node owner has it online and the client gets answers from there.
func (r *rig) createVS(o vsOpts, owner int) {
	r.t.Helper()
	if o.preferred == nil {
		for i := 1; i <= r.n; i++ {
			o.preferred = append(o.preferred, nodeName(i))
		}
	}
	gp := map[string]any{"preferred_owners": o.preferred}
	if o.failback != "" {
		gp["failback"] = o.failback
	}
	if o.failback == "window" {
		gp["failback_window_start"], gp["failback_window_end"] = o.windowStart, o.windowEnd
	}
	app := map[string]any{
		"group": group, "type": "generic_application", "depends_on": []string{resIP},
		"command":     "exec " + r.echo + fmt.Sprintf(" -listen 0.0.0.0:%d", port),
		"environment": []string{"WOLFPACK_PROBE_ID=" + group},
		// The process's exit is seen at once (a watcher); this is the
		// poll behind it.
		"looks_alive_ms": 200, "stop_timeout_ms": 2000,
	}
	if o.restartThreshold != 0 {
		app["restart_threshold"] = o.restartThreshold
	}
	ip := map[string]any{
		"group": group, "type": "ip_address", "address": vip.String(), "prefix_len": 24, "interface": "eth0",
		"looks_alive_ms": 200}
	name := map[string]any{
		"group": group, "type": "network_name", "name": group, "mode": "mdns", "interface": "eth0",
		"depends_on": []string{resIP}}
	if o.restartInPlace {
		inPlace(ip)
		inPlace(name)
		inPlace(app)
	}
	r.commit(1, clusterapi.Tx{Ops: []clusterapi.Op{
		{Op: "create", Kind: "group", Name: group, Props: gp},
		{Op: "create", Kind: "resource", Name: resIP, Props: ip},
		{Op: "create", Kind: "resource", Name: resName, Props: name},
		{Op: "create", Kind: "resource", Name: resApp, Props: app},
	}})
	r.waitOnline(owner, 1)
	var err error
	if r.p, err = r.c.StartProber(netip.AddrPortFrom(vip, port), probeEvery); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.p.WaitReply(r.ctx, time.Time{}, func(rp nscluster.Reply) bool { return rp.Node() == owner }); err != nil {
		r.t.Fatalf("no answer from node %d: %v\n%s", owner, err, r.c.Recent(0))
	}
}

// commitMove sets the group's moving_to through node via, as an
// administrator's move.
func (r *rig) commitMove(via int, to string) {
	r.t.Helper()
	r.commit(via, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "set", Kind: "group", Name: group, Props: map[string]any{"moving_to": to}}}})
}

// setGroup sets group properties through node via.
func (r *rig) setGroup(via int, props map[string]any) {
	r.t.Helper()
	r.commit(via, clusterapi.Tx{Ops: []clusterapi.Op{{Op: "set", Kind: "group", Name: group, Props: props}}})
}

// groupState reads the group's owner and state through node via.
func (r *rig) groupState(via int, stale bool) (owner, state string, props map[string]any, err error) {
	o, err := r.get(via, "group", group, stale)
	if err != nil {
		return "", "", nil, err
	}
	owner, _ = o.Props["owner"].(string)
	state, _ = o.Props["state"].(string)
	return owner, state, o.Props, nil
}

// waitOnline waits until the database, read through node via, says
// node owner has the group online, and returns when that was first seen.
func (r *rig) waitOnline(owner, via int) time.Time {
	r.t.Helper()
	r.poll(fmt.Sprintf("group %s online on node %d (read through node %d)", group, owner, via), func() (bool, string) {
		o, s, props, err := r.groupState(via, true)
		if err != nil {
			return false, err.Error()
		}
		return o == nodeName(owner) && s == "online", fmt.Sprintf("props %v", props)
	})
	return time.Now()
}

// checkOwner reads the group linearizably through via and fails the test
// unless node owner has it online.
func (r *rig) checkOwner(owner, via int) {
	r.t.Helper()
	o, s, props, err := r.groupState(via, false)
	if err != nil {
		r.t.Fatalf("read group %s through node %d: %v", group, via, err)
	}
	if o != nodeName(owner) || s != "online" {
		r.t.Fatalf("group %s: owner %q state %q (props %v), want online on node%d", group, o, s, props, owner)
	}
}

// waitEvent waits for node's first event msg after mark for which pred
// (nil: any) holds; group events must name the group.
func (r *rig) waitEvent(node int, msg string, mark int, pred func(nscluster.Event) bool) nscluster.Event {
	r.t.Helper()
	e, err := r.c.WaitEvent(r.ctx, node, msg, nscluster.And(nscluster.After(mark), pred))
	if err != nil {
		r.t.Fatalf("%v\n%s", err, r.c.Recent(mark))
	}
	return e
}

// resState is a predicate: resmon's report (msg "state") that resource
// res is in state st.
func resState(res, st string) func(nscluster.Event) bool {
	return func(e nscluster.Event) bool {
		return e.Msg == "state" && e.String("resource") == res && e.String("state") == st
	}
}

// firstEvent returns node's first event after mark for which pred holds.
func (r *rig) firstEvent(node, mark int, pred func(nscluster.Event) bool) (nscluster.Event, bool) {
	l := r.c.Events(node, "", nscluster.And(nscluster.After(mark), pred))
	if len(l) == 0 {
		return nscluster.Event{}, false
	}
	return l[0], true
}

// ofGroup is a predicate: the event names the group.
func ofGroup(e nscluster.Event) bool { return e.String("group") == group }

// echoPids lists the echo servers running in node i's namespace.
func (r *rig) echoPids(i int) []int {
	ps, err := r.c.Node(i).Procs()
	if err != nil {
		r.t.Fatal(err)
	}
	var out []int
	for _, p := range ps {
		if p.Comm == "echo" {
			out = append(out, p.Pid)
		}
	}
	return out
}

// waitEcho waits until exactly one echo server runs on node i and returns
// its pid.
func (r *rig) waitEcho(i int) int {
	r.t.Helper()
	var pids []int
	r.poll(fmt.Sprintf("one echo server on node %d", i), func() (bool, string) {
		pids = r.echoPids(i)
		return len(pids) == 1, fmt.Sprintf("echo servers %v", pids)
	})
	return pids[0]
}

// outage is the client's longest silence since the event, once answers
// came back from node to (waited for), plus 300 ms of answers.
func (r *rig) outage(since time.Time, to int) nscluster.Outage {
	r.t.Helper()
	if _, err := r.p.WaitReply(r.ctx, since, func(rp nscluster.Reply) bool { return rp.Node() == to }); err != nil {
		r.t.Fatalf("%v\n%s", err, r.c.Recent(0))
	}
	time.Sleep(300 * time.Millisecond)
	o, err := r.p.Outage(since, time.Time{})
	if err != nil {
		r.t.Fatal(err)
	}
	if o.After.Node() != to {
		r.t.Errorf("the answers after the outage came from %q, want node %d", o.After.From, to)
	}
	return o
}

// answeredBy lists, in order, the nodes that answered since t (each
// change of node once).
func (r *rig) answeredBy(since time.Time) []int {
	var out []int
	for _, rp := range r.p.Replies() {
		if rp.Recv.Before(since) {
			continue
		}
		if n := rp.Node(); len(out) == 0 || out[len(out)-1] != n {
			out = append(out, n)
		}
	}
	return out
}

// macSequence is the sequence of MACs that claimed the address in ARP
// since t (each change once), named by node where the MAC is a node's.
func (r *rig) macSequence(since time.Time) []string {
	names := map[string]string{}
	for i := 1; i <= r.n; i++ {
		if m, err := r.c.Node(i).MAC("eth0"); err == nil {
			names[m.String()] = nodeName(i)
		}
	}
	var out []string
	for _, f := range r.arp.Claims(vip, since) {
		n := names[f.SenderMAC.String()]
		if n == "" {
			n = f.SenderMAC.String()
		}
		if len(out) == 0 || out[len(out)-1] != n {
			out = append(out, n)
		}
	}
	return out
}

// ms renders a duration in whole milliseconds, for key=value logs.
func ms(d time.Duration) int64 { return d.Milliseconds() }

// since renders the time from t0 to e's own timestamp.
func since(t0 time.Time, e nscluster.Event) time.Duration { return e.Time.Sub(t0) }

// timeline renders the failover manager's events of node after mark,
// relative to t0.
func (r *rig) timeline(node, mark int, t0 time.Time) string {
	var b strings.Builder
	for _, e := range r.c.Events(node, "", nscluster.After(mark)) {
		switch e.Msg {
		case evClaim, evOwner, evLeaseWait, evGroupOnline, evGroupOffline, evResourceFailed, evRestart, evPush, evMoved,
			evFailback, "membership installed", evResmonStarted, evResmonExited, "state", "halt", "lost quorum", "proposal failed", evGroupFailed:
		default:
			continue
		}
		fmt.Fprintf(&b, "  +%4dms node%d %q", ms(since(t0, e)), e.Node, e.Msg)
		for _, k := range []string{"group", "resource", "state", "peer", "ms", "count", "reason", "members"} {
			if v, ok := e.Attrs[k]; ok {
				fmt.Fprintf(&b, " %s=%v", k, v)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// watchVIP samples the virtual address's presence on nodes 1 and 2 every
// 2 ms (until Close, or the rig's), and returns after 200 ms of samples
// taken before the event the test then causes.
func (r *rig) watchVIP() *nscluster.AddrWatch {
	r.t.Helper()
	w, err := r.c.WatchAddr(vip, 2*time.Millisecond, 1, 2)
	if err != nil {
		r.t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	return w
}
