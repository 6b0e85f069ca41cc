package matrix

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/core"
	"github.com/wolfpack-ha/wolfpack/resources/physicaldisk"
	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi"
	"github.com/wolfpack-ha/wolfpack/testbed/probe"
)

// probeEvery is the client's interval, by address and by name.
const probeEvery = 10 * time.Millisecond

// watch is the set of checkers that run through one scenario:
//
//   - the client's probes of the virtual server every 10 ms, by address
//     (the echo server, whose answer names the node) and by name (mDNS),
//     and the Ethernet source of every answer: one MAC at a time;
//   - the data LUN's block that every node's writer writes while it has
//     the disk mounted, read off the LUN's file on the host every 10 ms:
//     whose writes land;
//   - an independent reader of both LUNs' reservations, on the host with
//     the project's iSCSI initiator under its own initiator name;
//   - a config writer that makes acknowledged changes through the nodes'
//     cluster commands, all of which must be there afterwards.
type watch struct {
	t     *testing.T
	c     *cluster
	start time.Time

	addr   *probe.Prober
	frames *probe.Frames
	name   *probe.NameProber

	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	writes  []landed // the data LUN's block, at each change
	resv    []resvAt // the reservation reader's samples
	resvErr []string // its errors (first few)
	acked   []int    // the config writer's acknowledged changes
	cfgErrs int      // its unacknowledged attempts
	cwGroup string   // the group it writes
	lastErr string
	// recovered is the first answer after the scenario saw the group
	// online where it expected it (recoveredNow); the fault's outage is
	// the longest silence before it.
	recovered time.Time
}

// landed is a write seen on the data LUN.
type landed struct {
	At        time.Time
	Node, Seq int
}

// resvAt is one sample of the reservation reader.
type resvAt struct {
	At time.Time
	// Data: the data LUN's reservation holder's node (0: none) and the
	// nodes of its registered keys; Quorum: the quorum LUN's holder.
	Data     int
	DataKeys []int
	Quorum   int
}

// startWatch starts every checker; stop ends them and checks.
func (c *cluster) startWatch(t *testing.T) *watch {
	t.Helper()
	w := &watch{t: t, c: c, stop: make(chan struct{}), start: time.Now()}
	ns := c.tb.Client().Netns()
	var err error
	if w.frames, err = probe.CaptureFrames(ns, "eth0", netip.AddrPortFrom(vip, echoPort)); err != nil {
		t.Fatal(err)
	}
	if w.addr, err = probe.Start(ns, netip.AddrPortFrom(vip, echoPort), probeEvery); err != nil {
		t.Fatal(err)
	}
	if w.name, err = probe.StartName(ns, vsName, probeEvery); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.halt() })
	w.wg.Add(3)
	go w.sampleLUN()
	go w.readReservations()
	go w.writeConfig()
	// The client answered before the fault, by address and by name.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := w.addr.WaitReply(ctx, time.Time{}, nil); err != nil {
		t.Fatalf("before the fault: %v", err)
	}
	if err := poll(ctx, "an answer by name", 30*time.Second, func() error {
		if as, q := w.name.Answers(); len(as) == 0 {
			return fmt.Errorf("no answer to %d queries", q)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *watch) halt() {
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	w.wg.Wait()
	w.addr.Close()
	w.name.Close()
	w.frames.Close()
}

// sampleLUN reads the writers' block off the data LUN's backing file (tgtd
// writes it through the host's page cache) every 10 ms.
func (w *watch) sampleLUN() {
	defer w.wg.Done()
	f, err := os.Open(w.c.tb.DataLUNPath())
	if err != nil {
		w.fail("open the data LUN's file: %v", err)
		return
	}
	defer f.Close()
	buf := make([]byte, 512)
	var last landed
	for {
		if _, err := f.ReadAt(buf, writerLBA*512); err == nil {
			var l landed
			rec, _, _ := strings.Cut(string(buf), "\n")
			if _, err := fmt.Sscanf(rec, "wpw node=%d seq=%d", &l.Node, &l.Seq); err == nil && (l.Node != last.Node || l.Seq != last.Seq) {
				l.At = time.Now()
				last = l
				w.mu.Lock()
				w.writes = append(w.writes, l)
				w.mu.Unlock()
			}
		}
		select {
		case <-w.stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// readReservations samples both LUNs' reservations every 200 ms from
// the host, as an initiator of its own that never registers.
func (w *watch) readReservations() {
	defer w.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-w.stop
		cancel()
	}()
	tb := w.c.tb
	cfg := iscsi.Config{InitiatorName: tb.TargetIQN() + ":matrix-reader", Timeout: 3 * time.Second}
	open := func(lun uint16) *iscsi.Session {
		s, err := iscsi.Dial(ctx, iscsi.Address{Portal: tb.Portal(), Target: tb.TargetIQN(), LUN: lun}, cfg)
		if err != nil {
			w.fail("reservation reader: log in to LUN %d: %v", lun, err)
			return nil
		}
		return s
	}
	quorum, data := open(1), open(2)
	if quorum == nil || data == nil {
		return
	}
	defer quorum.Close()
	defer data.Close()
	for {
		var s resvAt
		err := func() error {
			r, err := scsi.ReadReservation(ctx, data)
			if err != nil {
				return fmt.Errorf("data LUN: %w", err)
			}
			if r.Held {
				n, ok := physicaldisk.KeyNode(r.Key)
				if !ok {
					w.fail("the data LUN's reservation is held by %#x, not a data-disk key", r.Key)
				}
				s.Data = int(n)
			}
			k, err := scsi.ReadKeys(ctx, data)
			if err != nil {
				return fmt.Errorf("data LUN: %w", err)
			}
			for _, key := range k.Keys {
				n, _ := physicaldisk.KeyNode(key)
				s.DataKeys = append(s.DataKeys, int(n))
			}
			q, err := scsi.ReadReservation(ctx, quorum)
			if err != nil {
				return fmt.Errorf("quorum LUN: %w", err)
			}
			if q.Held {
				_, n := core.KeyNode(q.Key)
				s.Quorum = int(n)
			}
			return nil
		}()
		s.At = time.Now()
		w.mu.Lock()
		if err != nil && ctx.Err() == nil {
			if len(w.resvErr) < 5 {
				w.resvErr = append(w.resvErr, err.Error())
			}
		} else if err == nil {
			w.resv = append(w.resv, s)
		}
		w.mu.Unlock()
		select {
		case <-w.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// writeConfig makes a change every 200 ms: property kN=vN on a group of
// its own (cw-<scenario>), through each node in turn, moving to the next
// node when one does not acknowledge (exit 0 of the cluster command).
func (w *watch) writeConfig() {
	defer w.wg.Done()
	name := strings.ToLower(strings.TrimPrefix(w.t.Name(), "TestIntegration"))
	name = "cw-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, name)
	if len(name) > 60 {
		name = name[:60]
	}
	w.mu.Lock()
	w.cwGroup = name
	w.mu.Unlock()
	node := 1
	try := func(args ...string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		_, err := w.c.cli(ctx, node, append(args, "--timeout", "6s")...)
		if err != nil {
			w.mu.Lock()
			w.cfgErrs++
			w.lastErr = err.Error()
			w.mu.Unlock()
			node = node%w.c.n + 1
			return false
		}
		return true
	}
	for created := false; !created; {
		created = try("group", "create", name)
		if !created && strings.Contains(w.lastErr, "exit status 3") { // exists: a retry of an unknown outcome
			created = true
		}
		select {
		case <-w.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	for k := 1; k <= 200; {
		if try("group", "set", name, fmt.Sprintf("k%d=v%d", k, k)) {
			w.mu.Lock()
			w.acked = append(w.acked, k)
			w.mu.Unlock()
			k++
		}
		select {
		case <-w.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// recoveredNow records that the group is online where the scenario
// expects it (before any recovery step: a reboot, a rejoin): the first
// answer from now on ends the fault's outage.
func (w *watch) recoveredNow(ctx context.Context) {
	w.t.Helper()
	r, err := w.addr.WaitReply(ctx, time.Now(), nil)
	if err != nil {
		w.t.Fatalf("no answer after the group came online: %v", err)
	}
	w.mu.Lock()
	w.recovered = r.Recv
	w.mu.Unlock()
}

func (w *watch) fail(format string, args ...any) {
	w.t.Errorf(format, args...)
}

// outcome is what a scenario expects at its end.
type outcome struct {
	owner int // the group's owner at the end
	// moves is how many times the answering MAC may change (0: the owner
	// never changes, 1: a failover or a move, 2: there and back).
	moves int
	// maxOutage bounds the client's longest silence by address (0: no bound).
	maxOutage time.Duration
}

// finish waits for the group online on o.owner, lets the checkers see a
// few seconds of the settled cluster, stops them and checks what they saw.
func (w *watch) finish(fault time.Time, o outcome) {
	t := w.t
	t.Helper()
	c := w.c
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := c.waitGroup(ctx, o.owner, 120*time.Second); err != nil {
		t.Fatal(err)
	}
	// The client answered by the owner, by address and by name.
	if _, err := w.addr.WaitReply(ctx, time.Now(), func(r probe.Reply) bool { return r.ID() == fmt.Sprintf("node%d", o.owner) }); err != nil {
		t.Fatalf("no answer from node%d after the fault: %v", o.owner, err)
	}
	w.mu.Lock()
	if w.recovered.IsZero() {
		w.recovered = time.Now()
	}
	recovered := w.recovered
	w.mu.Unlock()
	time.Sleep(2 * time.Second)
	settled := time.Now()
	if err := poll(ctx, "an answer by name", 30*time.Second, func() error {
		if as, _ := w.name.Answers(); len(as) == 0 || as[len(as)-1].Recv.Before(settled) {
			return fmt.Errorf("no answer by name since %s", settled.Format("15:04:05.000"))
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// The config writer has made changes since the fault.
	if err := poll(ctx, "config writes after the fault", 30*time.Second, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.acked) < 3 {
			return fmt.Errorf("%d acknowledged (last error: %s)", len(w.acked), w.lastErr)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	w.halt()

	// By address: one MAC at a time, each the MAC of the node whose name
	// the answer carries; the outage.
	frames := w.frames.All()
	for k, s := range probe.SplitBrain(frames, uint64(time.Second/probeEvery)) {
		if k < 10 {
			t.Errorf("split brain by address: %s", s)
		}
	}
	if late := probe.Late(frames); len(late) > 0 {
		first, last := late[0], late[len(late)-1]
		t.Logf("FINDING: %d late answers from %s to probes #%d..#%d (received %s..%s) after another MAC answered later probes: requests the old owner received before the fault (queued while it could not run) answered as it resumed",
			len(late), first.MAC, first.Seq, last.Seq, first.At.Format("15:04:05.000"), last.At.Format("15:04:05.000"))
	}
	replies := w.addr.Replies()
	byID := map[uint64]string{}
	for _, r := range replies {
		byID[r.Seq] = r.ID()
	}
	macNode := map[string]string{}
	for i := 1; i <= c.n; i++ {
		macNode[c.tb.Node(i).MAC(0).String()] = fmt.Sprintf("node%d", i)
	}
	bad := 0
	for _, f := range frames {
		if id, ok := byID[f.Seq]; ok && macNode[f.MAC.String()] != id && bad < 5 {
			t.Errorf("probe #%d: answered from %s (%s) naming %s", f.Seq, f.MAC, macNode[f.MAC.String()], id)
			bad++
		}
	}
	macs := probe.MACs(frames)
	var seen []string
	for _, m := range macs {
		seen = append(seen, macNode[m])
	}
	inOrder := slices.Clone(frames)
	slices.SortStableFunc(inOrder, func(a, b probe.Frame) int { return cmp.Compare(a.Seq, b.Seq) })
	changes := 0
	for k := 1; k < len(inOrder); k++ {
		if inOrder[k].MAC.String() != inOrder[k-1].MAC.String() {
			changes++
		}
	}
	if changes > o.moves {
		t.Errorf("the answering MAC changed %d times (nodes %v), want at most %d", changes, seen, o.moves)
	}
	// The fault's outage (the longest silence from the fault to the first
	// answer after the group was online where expected), and the longest
	// silence of the whole scenario, its recovery included.
	out, err := w.addr.Outage(fault, recovered)
	if err != nil {
		t.Error(err)
	}
	whole, err := w.addr.Outage(fault, time.Time{})
	if err != nil {
		t.Error(err)
	}
	// By name: one responder per query, always the virtual address.
	answers, queries := w.name.Answers()
	for k, s := range probe.NameSplitBrain(answers, vip) {
		if k < 5 {
			t.Errorf("split brain by name: %s", s)
		}
	}
	nameGap, _, _, nerr := w.name.Outage(fault, recovered)
	if nerr != nil {
		t.Error(nerr)
	}
	t.Logf("client: by address outage %v (%d probes, %d answers, answering nodes %v); by name outage %v (%d queries, %d answers); longest silence through the recovery %v",
		out, w.addr.Sent(), len(replies), seen, nameGap.Round(time.Millisecond), queries, len(answers), whole.Gap.Round(time.Millisecond))
	// A silence in which no probe went unanswered is the client's own
	// stall (the host is busy), not the server's outage.
	if o.maxOutage > 0 && out.Gap > o.maxOutage && out.Lost > 0 {
		t.Errorf("outage by address %v > %v", out.Gap.Round(time.Millisecond), o.maxOutage)
	}

	w.checkDisk(o.owner)
	w.checkConfig(ctx, o.owner)
}

// checkDisk: a write lands only from the node holding the data LUN's
// reservation (the reader's samples around it agree on another holder:
// split brain), the writers never alternate, and the holder at the end
// is the owner.
func (w *watch) checkDisk(owner int) {
	t := w.t
	w.mu.Lock()
	writes, resv, rerr := slices.Clone(w.writes), slices.Clone(w.resv), slices.Clone(w.resvErr)
	w.mu.Unlock()
	if len(rerr) > 0 {
		t.Logf("reservation reader errors (first %d): %s", len(rerr), strings.Join(rerr, "; "))
	}
	if len(resv) < 5 {
		t.Errorf("the reservation reader took %d samples", len(resv))
		return
	}
	holderAt := func(at time.Time) (before, after resvAt, ok bool) {
		k, _ := slices.BinarySearchFunc(resv, at, func(s resvAt, at time.Time) int { return s.At.Compare(at) })
		if k == 0 || k == len(resv) {
			return before, after, false
		}
		return resv[k-1], resv[k], true
	}
	violations := 0
	for _, l := range writes {
		b, a, ok := holderAt(l.At)
		if ok && b.Data == a.Data && b.Data != 0 && b.Data != l.Node && violations < 5 {
			t.Errorf("node%d's write #%d landed at %s while node%d held the data LUN (reader at %s and %s)",
				l.Node, l.Seq, l.At.Format("15:04:05.000"), b.Data, b.At.Format("15:04:05.000"), a.At.Format("15:04:05.000"))
			violations++
		}
	}
	// Writers never alternate within a second.
	type run struct {
		node        int
		first, last landed
	}
	var runs []run
	for _, l := range writes {
		if len(runs) > 0 && runs[len(runs)-1].node == l.Node {
			runs[len(runs)-1].last = l
			continue
		}
		runs = append(runs, run{node: l.Node, first: l, last: l})
	}
	var who []string
	for k, r := range runs {
		who = append(who, fmt.Sprintf("node%d #%d..#%d", r.node, r.first.Seq, r.last.Seq))
		if k >= 2 && runs[k-2].node == r.node && r.first.At.Sub(runs[k-2].last.At) < time.Second {
			t.Errorf("data LUN: node%d wrote until %s, node%d from %s, node%d again from %s",
				r.node, runs[k-2].last.At.Format("15:04:05.000"), runs[k-1].node, runs[k-1].first.At.Format("15:04:05.000"),
				r.node, r.first.At.Format("15:04:05.000"))
		}
	}
	last := resv[len(resv)-1]
	var holders []int
	for _, s := range resv {
		if len(holders) == 0 || holders[len(holders)-1] != s.Data {
			holders = append(holders, s.Data)
		}
	}
	t.Logf("data LUN: writes landed %s; reservation holders %v (0: none), at the end node%d with keys %v; quorum LUN held by node%d",
		strings.Join(who, ", "), holders, last.Data, last.DataKeys, last.Quorum)
	if len(runs) == 0 || runs[len(runs)-1].node != owner {
		t.Errorf("the last writes on the data LUN are not the owner's (node%d): %v", owner, who)
	}
	if last.Data != owner || !slices.Equal(last.DataKeys, []int{owner}) {
		t.Errorf("data LUN at the end: held by node%d, keys %v; want node%d's alone", last.Data, last.DataKeys, owner)
	}
	if last.Quorum == 0 {
		t.Errorf("the quorum LUN is not reserved at the end")
	}
}

// checkConfig: every acknowledged change is in the database, read
// through the owner; then the config writer's group is deleted.
func (w *watch) checkConfig(ctx context.Context, via int) {
	t := w.t
	w.mu.Lock()
	acked, name, errs, lastErr := slices.Clone(w.acked), w.cwGroup, w.cfgErrs, w.lastErr
	w.mu.Unlock()
	o, err := w.c.object(ctx, via, "group", name)
	if err != nil {
		t.Errorf("config writer's group %s: %v", name, err)
		return
	}
	lost := 0
	for _, k := range acked {
		if v, _ := o.Props[fmt.Sprintf("k%d", k)].(string); v != fmt.Sprintf("v%d", k) {
			if lost < 5 {
				t.Errorf("acknowledged change k%d=v%d lost: %q", k, k, v)
			}
			lost++
		}
	}
	t.Logf("config: %d changes acknowledged, %d lost, %d attempts not acknowledged (last: %s)", len(acked), lost, errs, lastErr)
	if _, err := w.c.cli(ctx, via, "group", "delete", name); err != nil {
		t.Logf("delete %s: %v", name, err)
	}
}
