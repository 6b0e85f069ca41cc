package clustercli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed"
	"github.com/wolfpack-ha/wolfpack/testbed/agent"
)

const (
	quorumTag = "574c4650"
	staleKey  = "0x574c465000000063" // node 99: a holder that died
)

func quorumKey(node int) string { return fmt.Sprintf("0x%s%08x", quorumTag, node) }

// guestEvent is one JSON line of `cluster quorum hold`.
type guestEvent struct {
	Event         string   `json:"event"`
	TMS           int64    `json:"t_ms"`
	LSN           uint64   `json:"lsn"`
	LSNs          []uint64 `json:"lsns"`
	ArbitrationMS int64    `json:"arbitration_ms"`
	Status        string   `json:"status"`
	Reason        string   `json:"reason"`
	Error         string   `json:"error"`
}

func guestEvents(out []byte) []guestEvent {
	var evs []guestEvent
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e guestEvent
		if strings.HasPrefix(sc.Text(), "{") && json.Unmarshal(sc.Bytes(), &e) == nil && e.Event != "" {
			evs = append(evs, e)
		}
	}
	return evs
}

func findEvent(evs []guestEvent, name string) (guestEvent, bool) {
	for _, e := range evs {
		if e.Event == name {
			return e, true
		}
	}
	return guestEvent{}, false
}

func mustGuest(ctx context.Context, t *testing.T, n *testbed.Node, argv ...string) string {
	t.Helper()
	res, err := run1(ctx, n, argv...)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%s: %s: %v exit %d\n%s%s", n.Name(), strings.Join(argv, " "), err, res.ExitCode, res.Stdout, res.Stderr)
	}
	return string(res.Stdout)
}

// TestIntegrationQuorumRace: two VMs on tgt arbitrate for a quorum disk whose
// holder died (a stale key, through a third nexus, holds the reservation),
// 20 times (WOLFPACK_QUORUM_RACE_ROUNDS; make test runs 8). Each round both wait the defence delay and PREEMPT the stale
// key at about the same time; exactly one becomes owner, the other loses
// when the owner removes its key, and sg_persist through another nexus sees
// only the owner's key, holding Write Exclusive - Registrants Only.
//
// Reference: docs/design.md, "Quorum arbitration"; SPC-4 5.12.11.4.
func TestIntegrationQuorumRace(t *testing.T) {
	testbed.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tb := testbed.New(t, testbed.Config{Nodes: 2, Initiators: 2, Binaries: []string{buildCLI(t)}})
	nodes := []*testbed.Node{tb.Node(1), tb.Node(2)}
	stale, staleDev := tb.Node(1), tb.Node(1).Disk(2)
	reader, readerDev := tb.Node(2), tb.Node(2).Disk(2)
	mustGuest(ctx, t, nodes[0], "/bin/cluster", "quorum", "format", "--cluster-tag", quorumTag, nodes[0].Disk(1))

	wins := [2]int{}
	var arbMS []int64
	prev := ""
	rounds := 20
	if v := os.Getenv("WOLFPACK_QUORUM_RACE_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("WOLFPACK_QUORUM_RACE_ROUNDS=%q: want a positive number of rounds", v)
		}
		rounds = n
	}
	for round := 1; round <= rounds; round++ {
		mustGuest(ctx, t, stale, "/bin/cluster", "disk", "register", "--ignore-existing", "--key", staleKey, staleDev)
		if prev == "" {
			mustGuest(ctx, t, stale, "/bin/cluster", "disk", "reserve", "--key", staleKey, "--type", "we-ro", staleDev)
		} else {
			mustGuest(ctx, t, stale, "/bin/cluster", "disk", "preempt", "--key", staleKey, "--victim", prev, "--type", "we-ro", staleDev)
		}
		var wg sync.WaitGroup
		results := make([]testbed.Result, 2)
		errs := make([]error, 2)
		for i, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = run1(ctx, n, "/bin/cluster", "quorum", "hold", "--node", fmt.Sprint(i+1),
					"--members", fmt.Sprint(i+1), "--hold", "4s", n.Disk(1))
			}()
		}
		wg.Wait()
		winner := -1
		for i := range nodes {
			if errs[i] != nil {
				t.Fatalf("round %d: node%d: %v", round, i+1, errs[i])
			}
			evs := guestEvents(results[i].Stdout)
			won, isWon := findEvent(evs, "won")
			_, isLost := findEvent(evs, "lost")
			switch {
			case isWon && results[i].ExitCode == 0:
				if winner >= 0 {
					t.Fatalf("round %d: both nodes own the quorum disk", round)
				}
				winner = i
				arbMS = append(arbMS, won.ArbitrationMS)
			case isLost && !isWon && results[i].ExitCode != 0:
			default:
				t.Fatalf("round %d: node%d neither won nor lost cleanly (exit %d):\n%s%s", round, i+1, results[i].ExitCode, results[i].Stdout, results[i].Stderr)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody owns the quorum disk:\n%s\n%s", round, results[0].Stdout, results[1].Stdout)
		}
		wins[winner]++
		prev = quorumKey(winner + 1)
		ks := sgPersist(ctx, t, reader, "--read-keys", readerDev)
		rs := sgPersist(ctx, t, reader, "--read-reservation", readerDev)
		if !strings.Contains(ks, "1 registered reservation key") || !strings.Contains(ks, prev) {
			t.Fatalf("round %d: sg_persist keys, want only %s:\n%s", round, prev, ks)
		}
		if !strings.Contains(rs, "Key="+prev) || !strings.Contains(rs, "Write Exclusive, registrants only") {
			t.Fatalf("round %d: sg_persist reservation, want %s WE-RO:\n%s", round, prev, rs)
		}
		t.Logf("round %2d: node%d owns the quorum disk after %d ms (challenge to owner, defence delay included); node%d lost",
			round, winner+1, arbMS[len(arbMS)-1], 2-winner)
	}
	slices.Sort(arbMS)
	t.Logf("%d rounds, one owner each: node1 %d, node2 %d; challenge to owner: median %d ms, max %d ms",
		rounds, wins[0], wins[1], arbMS[len(arbMS)/2], arbMS[len(arbMS)-1])
}

// readGuestLog reads a background program's log in the guest.
func readGuestLog(ctx context.Context, t *testing.T, n *testbed.Node, path string) []guestEvent {
	t.Helper()
	res, err := run1(ctx, n, "cat", path)
	if err != nil {
		t.Fatalf("%s: cat %s: %v", n.Name(), path, err)
	}
	return guestEvents(res.Stdout)
}

// waitGuestEvent polls a guest log until an event named name shows up and
// returns the events and the host time it was first seen.
func waitGuestEvent(ctx context.Context, t *testing.T, n *testbed.Node, path, name string, limit time.Duration, count int) ([]guestEvent, time.Time) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		evs := readGuestLog(ctx, t, n, path)
		seen := 0
		for _, e := range evs {
			if e.Event == name {
				seen++
			}
		}
		if seen >= count {
			return evs, time.Now()
		}
		if time.Now().After(deadline) {
			res, _ := run1(ctx, n, "cat", path)
			t.Fatalf("%s: no %q in %s after %s:\n%s", n.Name(), name, path, limit, res.Stdout)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func startGuest(ctx context.Context, t *testing.T, n *testbed.Node, logPath string, argv ...string) int {
	t.Helper()
	r, err := n.Do(ctx, agent.Request{Argv: argv, Background: true, LogPath: logPath})
	if err != nil || r.Error != "" {
		t.Fatalf("%s: start %v: %v %s", n.Name(), argv, err, r.Error)
	}
	return r.Pid
}

// TestIntegrationFrozenOwnerFenced: node1 owns the quorum disk and appends a
// record every 200 ms. It is frozen (QEMU stop); node2 challenges and owns
// the disk after the defence delay and replays every record node1
// acknowledged. Thawed, node1 finds the reservation lost within
// QuorumCheckInterval, its writes fail with RESERVATION CONFLICT, and it
// stops.
//
// Reference: docs/design.md, "Tests: three rings" (ring 3: the zombie that
// wakes up must find itself fenced and halt) and "Quorum arbitration";
// docs/quorum-disk.md "Recovery log".
func TestIntegrationFrozenOwnerFenced(t *testing.T) {
	testbed.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tb := testbed.New(t, testbed.Config{Nodes: 2, Initiators: 1, Binaries: []string{buildCLI(t)}})
	n1, n2 := tb.Node(1), tb.Node(2)
	mustGuest(ctx, t, n1, "/bin/cluster", "disk", "format", n1.Disk(1))

	const log1, log2 = "/var/log/hold1.log", "/var/log/hold2.log"
	pid1 := startGuest(ctx, t, n1, log1, "/bin/cluster", "quorum", "hold", "--node", "1", "--members", "1",
		"--append-every", "200ms", n1.Disk(1))
	// Freeze after 10 to 15 appends (every 200 ms), so that the freeze falls
	// anywhere between two quorum checks (every 1 s).
	waitGuestEvent(ctx, t, n1, log1, "append", 60*time.Second, 10+rand.IntN(6))

	if err := n1.Freeze(); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	startGuest(ctx, t, n2, log2, "/bin/cluster", "quorum", "hold", "--node", "2", "--members", "2",
		"--append-every", "500ms", n2.Disk(1))
	started := time.Now()
	evs2, won := waitGuestEvent(ctx, t, n2, log2, "won", 30*time.Second, 1)
	w, _ := findEvent(evs2, "won")
	guestLoss := started.Sub(frozen) + time.Duration(w.ArbitrationMS)*time.Millisecond
	t.Logf("node1 frozen; node2 owns the quorum disk %d ms later as the host saw it (%d ms: start + node2's own %d ms challenge to owner)",
		won.Sub(frozen).Milliseconds(), guestLoss.Milliseconds(), w.ArbitrationMS)
	if limit := quorumFormDelay + 2*time.Second; won.Sub(frozen) > limit {
		t.Fatalf("frozen owner lost the disk after %s, documented bound %s", won.Sub(frozen), limit)
	}

	if err := n1.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed := time.Now()
	_, lost := waitGuestEvent(ctx, t, n1, log1, "lost quorum", 30*time.Second, 1)
	fencedAfter := lost.Sub(thawed)
	// It stops: wait for the process to exit, then read all it wrote.
	for deadline := time.Now().Add(10 * time.Second); ; {
		res, err := run1(ctx, n1, "kill", "-0", fmt.Sprint(pid1))
		if err != nil {
			t.Fatalf("node1: kill -0 %d: %v", pid1, err)
		}
		if res.ExitCode != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node1's hold (pid %d) still runs 10 s after it lost quorum", pid1)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	evs1 := readGuestLog(ctx, t, n1, log1)
	res, _ := run1(ctx, n1, "tail", "-n", "6", log1)
	t.Logf("node1's last lines (t_ms is its monotonic clock, which stops while the VM is frozen):\n%s", res.Stdout)
	lq, _ := findEvent(evs1, "lost quorum")
	var lastAck int64
	var acked []uint64
	conflict := ""
	for _, e := range evs1 {
		switch {
		case e.Event == "append":
			acked = append(acked, e.LSN)
			lastAck = e.TMS
		case e.Event == "append failed" || e.Event == "fenced write":
			conflict = e.Status
		}
	}
	t.Logf("node1 thawed; it reported lost quorum %d ms later as the host saw it (guest clock: %d ms after its last acknowledged append); reason: %s; its log write: %s",
		fencedAfter.Milliseconds(), lq.TMS-lastAck, lq.Reason, conflict)
	if fencedAfter > quorumdiskCheckInterval+time.Second {
		t.Fatalf("thawed owner took %s to see it lost the reservation (QuorumCheckInterval %s, plus polling)", fencedAfter, quorumdiskCheckInterval)
	}
	if conflict != "RESERVATION CONFLICT" {
		t.Fatalf("node1's log write after the thaw: %q, want RESERVATION CONFLICT", conflict)
	}
	for _, e := range evs1[slices.IndexFunc(evs1, func(e guestEvent) bool { return e.Event == "lost quorum" }):] {
		if e.Event == "append" {
			t.Fatalf("node1 acknowledged LSN %d after losing quorum", e.LSN)
		}
	}
	// Any write of its is fenced.
	out := mustGuestAny(ctx, t, n1, "/bin/cluster", "disk", "check", "--json", n1.Disk(1))
	if !strings.Contains(out, `"read": "ok"`) || !strings.Contains(out, `"write": "RESERVATION CONFLICT"`) {
		t.Fatalf("node1 is not fenced:\n%s", out)
	}

	// node2 replayed every record node1 acknowledged.
	evs2 = readGuestLog(ctx, t, n2, log2)
	rp, _ := findEvent(evs2, "replay")
	for _, lsn := range acked {
		if !slices.Contains(rp.LSNs, lsn) {
			t.Fatalf("node2's replay %v misses LSN %d, acknowledged by node1", rp.LSNs, lsn)
		}
	}
	t.Logf("node1 acknowledged LSNs %d..%d; node2 replayed %d records, all of them", acked[0], acked[len(acked)-1], len(rp.LSNs))
	if _, ok := findEvent(evs2, "lost quorum"); ok {
		t.Fatalf("node2 lost quorum:\n%v", evs2)
	}
}

// mustGuestAny runs argv and returns its stdout whatever the exit status.
func mustGuestAny(ctx context.Context, t *testing.T, n *testbed.Node, argv ...string) string {
	t.Helper()
	res, err := run1(ctx, n, argv...)
	if err != nil {
		t.Fatalf("%s: %s: %v", n.Name(), strings.Join(argv, " "), err)
	}
	return string(res.Stdout)
}

// TestIntegrationQuorumBench measures, from a guest on tgt, an uncontested
// arbitration and log appends (WRITE(16) FUA through SG_IO, QEMU's iSCSI
// initiator, tgtd on loopback): the figures in BENCHMARKS.md.
func TestIntegrationQuorumBench(t *testing.T) {
	testbed.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tb := testbed.New(t, testbed.Config{Nodes: 1, Initiators: 1, Binaries: []string{buildCLI(t)}})
	n := tb.Node(1)
	mustGuest(ctx, t, n, "/bin/cluster", "disk", "format", n.Disk(1))
	for _, payload := range []string{"128", "4000"} {
		out := mustGuest(ctx, t, n, "/bin/cluster", "quorum", "bench", "--node", "1", "--appends", "1000", "--payload", payload, n.Disk(1))
		var r benchResult
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("bench output: %v\n%s", err, out)
		}
		t.Logf("tgt, guest: %d appends of %d bytes: p50 %.0f us, p99 %.0f us, max %.0f us, %.0f appends/s; uncontested arbitration %d ms",
			r.Appends, r.PayloadBytes, r.P50us, r.P99us, r.MaxUS, r.PerSecond, r.ArbitrationMS)
	}
}

// The default timings the VM tests hold the code to (docs/design.md, "Timings").
const (
	quorumFormDelay         = 1500 * time.Millisecond // cluster quorum hold waits the form delay (docs/design.md, "Quorum arbitration")
	quorumdiskCheckInterval = time.Second
)
