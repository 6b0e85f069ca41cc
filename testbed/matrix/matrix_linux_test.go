package matrix

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	closeShared()
	os.Exit(code)
}

// scenario is one test of the matrix on the shared cluster.
type scenario struct {
	t     *testing.T
	c     *cluster
	ctx   context.Context
	owner int // the group's owner before the fault
	other int // another node (the next one)
	w     *watch
}

// half is the representative half of the matrix that `make integration`
// (and so `make test`) runs; `make testbed` sets WOLFPACK_MATRIX=all and
// runs every scenario. One of each kind of fault: a node lost (killed,
// frozen), the networks (all private ones, the public one), a resource
// failing, an administrator's move.
var half = map[string]bool{
	"TestIntegrationNodeKilled":            true,
	"TestIntegrationNodeFrozenThawed":      true,
	"TestIntegrationAllPrivateNetworksCut": true,
	"TestIntegrationPublicNetworkCut":      true,
	"TestIntegrationAppCrashLoop":          true,
	"TestIntegrationPlannedMove":           true,
}

// inScope skips t unless WOLFPACK_MATRIX=all or t is in the half.
func inScope(t *testing.T) {
	t.Helper()
	if os.Getenv("WOLFPACK_MATRIX") != "all" && !half[t.Name()] {
		t.Skip("the other half of the matrix: make testbed (WOLFPACK_MATRIX=all) runs it")
	}
}

// begin gets a healthy cluster of nodes guests, puts the group on node
// want (0: wherever it is), starts the checkers.
func begin(t *testing.T, nodes, want int) *scenario {
	t.Helper()
	inScope(t)
	t0 := time.Now()
	c := get(t, nodes)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	t.Cleanup(cancel)
	s := &scenario{t: t, c: c, ctx: ctx}
	t.Cleanup(func() {
		if t.Failed() {
			c.mu.Lock()
			c.broken = true
			c.mu.Unlock()
			t.Logf("logs:\n%s", c.logs(context.Background()))
		}
		t.Logf("scenario wall time %v", time.Since(t0).Round(time.Millisecond))
	})
	owner, err := c.waitOnline(ctx, 0, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want != 0 && owner != want {
		if _, err := c.cli(ctx, want, "group", "move", group, fmt.Sprintf("node%d", want), "--timeout", "60s"); err != nil {
			t.Fatal(err)
		}
		if owner, err = c.waitOnline(ctx, want, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	s.owner, s.other = owner, owner%nodes+1
	s.w = c.startWatch(t)
	return s
}

func (s *scenario) must(err error) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
}

// TestIntegrationNodeKilled: the owner's VM loses its power; the group
// comes online on the other node. The node is powered on again and joins.
func TestIntegrationNodeKilled(t *testing.T) {
	s := begin(t, 2, 0)
	fault := time.Now()
	s.must(s.c.tb.Node(s.owner).Kill())
	_, err := s.c.waitOnline(s.ctx, s.other, 120*time.Second)
	s.must(err)
	s.w.recoveredNow(s.ctx)
	s.must(s.c.reboot(s.ctx, s.owner))
	s.must(s.c.waitMembers(s.ctx, 120*time.Second))
	s.w.finish(fault, outcome{owner: s.other, moves: 1})
}

// TestIntegrationNodeFrozenThawed: the owner's VM is frozen (its CPUs
// stopped) for long enough that the other node takes the group and the
// disks; thawed, it finds itself fenced and its clusterd halts; started
// again by the appliance's init, it rejoins.
func TestIntegrationNodeFrozenThawed(t *testing.T) {
	s := begin(t, 2, 0)
	n := s.c.tb.Node(s.owner)
	pid := s.c.clusterdPid(s.ctx, s.owner)
	fault := time.Now()
	s.must(n.Freeze())
	thawed := false
	defer func() {
		if !thawed {
			n.Thaw()
		}
	}()
	if _, err := s.c.waitOnline(s.ctx, s.other, 120*time.Second); err != nil {
		t.Fatal(err)
	}
	s.w.recoveredNow(s.ctx)
	s.must(n.Thaw())
	thawed = true
	tail, err := s.c.waitClusterdExit(s.ctx, s.owner, pid, 60*time.Second)
	if err != nil {
		t.Fatalf("the thawed node%d did not halt: %v\n%s", s.owner, err, tail)
	}
	t.Logf("node%d thawed, its clusterd halted:\n%s", s.owner, tail)
	res, _ := s.c.sh(s.ctx, s.owner, "grep -c refused /var/log/lunwriter.log; tail -n 3 /var/log/lunwriter.log")
	t.Logf("node%d's writer after the thaw (writes refused, last lines): %s", s.owner, strings.TrimSpace(string(res.Stdout)))
	s.must(s.c.waitMembers(s.ctx, 180*time.Second))
	s.w.finish(fault, outcome{owner: s.other, moves: 1})
}

// TestIntegrationOnePrivateNetworkCut: the owner's cable on private
// network 1 is pulled for 10 s: heartbeats go on over private network 2,
// nothing fails over, the client sees no outage.
func TestIntegrationOnePrivateNetworkCut(t *testing.T) {
	s := begin(t, 2, 0)
	n := s.c.tb.Node(s.owner)
	pids := s.c.clusterdPids(s.ctx)
	fault := time.Now()
	s.must(n.Cut(1))
	time.Sleep(10 * time.Second)
	s.must(n.Restore(1))
	s.w.finish(fault, outcome{owner: s.owner, moves: 0, maxOutage: time.Second})
	for i, pid := range s.c.clusterdPids(s.ctx) {
		if pid != pids[i] {
			t.Errorf("node%d's clusterd %d is gone after a single private network's cut (now %d)", i+1, pids[i], pid)
		}
	}
}

// TestIntegrationAllPrivateNetworksCut: the non-owner's cables on both
// private networks are pulled: the nodes see each other only through the
// quorum disk, which decides: one node keeps the cluster and the group,
// the other's clusterd halts. Its init starts it again, and again while it
// cannot join (the survivor defends the quorum disk); cables back, it
// rejoins.
func TestIntegrationAllPrivateNetworksCut(t *testing.T) {
	s := begin(t, 2, 0)
	n := s.c.tb.Node(s.other)
	pids := s.c.clusterdPids(s.ctx)
	fault := time.Now()
	s.must(n.Cut(1))
	s.must(n.Cut(2))
	restored := false
	defer func() {
		if !restored {
			n.Restore(1)
			n.Restore(2)
		}
	}()
	// One of the two halts.
	var halted, survivor int
	err := poll(s.ctx, "one node to halt", 120*time.Second, func() error {
		for i := 1; i <= 2; i++ {
			if s.c.clusterdPid(s.ctx, i) != pids[i-1] {
				halted, survivor = i, 3-i
				return nil
			}
		}
		return fmt.Errorf("both clusterd still run")
	})
	s.must(err)
	tail, _ := s.c.waitClusterdExit(s.ctx, halted, pids[halted-1], 10*time.Second)
	t.Logf("the disk path decided: node%d survives, node%d halted:\n%s", survivor, halted, tail)
	st, err := s.c.status(s.ctx, survivor)
	s.must(err)
	if len(st.Members) != 1 || st.Members[0] != survivor || !st.QuorumOwner {
		t.Errorf("node%d: members %v, quorum owner %v; want itself alone, holding the quorum disk", survivor, st.Members, st.QuorumOwner)
	}
	moves := 0
	if survivor != s.owner {
		moves = 1
	}
	_, err = s.c.waitOnline(s.ctx, survivor, 120*time.Second)
	s.must(err)
	s.w.recoveredNow(s.ctx)
	s.must(n.Restore(1))
	s.must(n.Restore(2))
	restored = true
	if pid := s.c.clusterdPid(s.ctx, survivor); pid != pids[survivor-1] {
		tail, _ := s.c.waitClusterdExit(s.ctx, survivor, pids[survivor-1], 10*time.Second)
		t.Fatalf("the survivor node%d halted too (no node kept the cluster):\n%s", survivor, tail)
	}
	s.must(s.c.waitMembers(s.ctx, 180*time.Second))
	s.w.finish(fault, outcome{owner: survivor, moves: moves})
}

// TestIntegrationPublicNetworkCut: the owner's public cable is pulled:
// the address's link watch fails the group over to the other node. The
// cable is plugged back afterwards.
func TestIntegrationPublicNetworkCut(t *testing.T) {
	s := begin(t, 2, 0)
	n := s.c.tb.Node(s.owner)
	fault := time.Now()
	s.must(n.Cut(0))
	restored := false
	defer func() {
		if !restored {
			n.Restore(0)
		}
	}()
	_, err := s.c.waitOnline(s.ctx, s.other, 120*time.Second)
	s.must(err)
	s.w.recoveredNow(s.ctx)
	s.must(n.Restore(0))
	restored = true
	s.w.finish(fault, outcome{owner: s.other, moves: 1})
}

// TestIntegrationClusterdKilled: the owner's clusterd is SIGKILLed: its
// resmon takes the resources down, the other node takes the group over;
// the clusterd the appliance's init starts again rejoins.
func TestIntegrationClusterdKilled(t *testing.T) {
	s := begin(t, 2, 0)
	fault := time.Now()
	_, err := s.c.signalClusterd(s.ctx, s.owner, syscall.SIGKILL)
	s.must(err)
	_, err = s.c.waitOnline(s.ctx, s.other, 120*time.Second)
	s.must(err)
	s.w.recoveredNow(s.ctx)
	s.must(s.c.waitMembers(s.ctx, 180*time.Second))
	s.w.finish(fault, outcome{owner: s.other, moves: 1})
}

// TestIntegrationResmonKilled: the owner's resmon is SIGKILLed: clusterd
// starts another and the resources come back on the same node.
func TestIntegrationResmonKilled(t *testing.T) {
	s := begin(t, 2, 0)
	fault := time.Now()
	pid, err := s.c.killComm(s.ctx, s.owner, "resmon", s.c.clusterdPid(s.ctx, s.owner))
	t.Logf("killed node%d's resmon (%s)", s.owner, pid)
	s.must(err)
	s.w.finish(fault, outcome{owner: s.owner, moves: 0})
}

// TestIntegrationAppCrashLoop: the owner's application is killed again
// and again: restarted in place twice (restart_threshold 2), then past
// its threshold the group moves to the other node.
func TestIntegrationAppCrashLoop(t *testing.T) {
	s := begin(t, 2, 0)
	fault := time.Now()
	err := poll(s.ctx, "the group to leave node"+fmt.Sprint(s.owner), 120*time.Second, func() error {
		if pid, err := s.c.killComm(s.ctx, s.owner, "probe-echo", 0); err == nil {
			t.Logf("killed node%d's application (%s)", s.owner, pid)
		}
		owner, _, err := s.c.owner(s.ctx, s.other)
		if err != nil {
			return err
		}
		if owner == s.owner {
			return fmt.Errorf("still on node%d", owner)
		}
		return nil
	})
	s.must(err)
	s.w.finish(fault, outcome{owner: s.other, moves: 1})
}

// maxMoveOutage bounds a planned move's outage in the guests: the data
// disk's offline and online (fsck takes about 2.5 s under TCG) on a busy
// host (BENCHMARKS.md: a p95 of 5.2 s over 10 moves at a load average of
// 11); a failover's detection alone is 3 s more.
const maxMoveOutage = 10 * time.Second

// TestIntegrationPlannedMove: cluster group move to the other node.
func TestIntegrationPlannedMove(t *testing.T) {
	s := begin(t, 2, 0)
	fault := time.Now()
	res, err := s.c.cli(s.ctx, s.other, "group", "move", group, fmt.Sprintf("node%d", s.other), "--timeout", "60s")
	s.must(err)
	t.Logf("cluster group move (%v):\n%s", time.Since(fault).Round(time.Millisecond), res.Stdout)
	s.w.finish(fault, outcome{owner: s.other, moves: 1, maxOutage: maxMoveOutage})
}

// failback: the group on node1 (preferred) with the failback window
// [start, end); node1's VM loses its power, the group fails over to
// node2; node1 is powered on again and the appliance joins. (Not
// clusterd killed: the appliance's init starts it again within seconds,
// and it joined before the group had come online on node2.)
func failback(t *testing.T, start, end int) (*scenario, time.Time) {
	s := begin(t, 2, 1)
	_, err := s.c.cli(s.ctx, 1, "group", "set", group, "failback=window",
		fmt.Sprintf("failback_window_start=%d", start), fmt.Sprintf("failback_window_end=%d", end))
	s.must(err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := s.c.cli(ctx, 2, "group", "set", group, "failback=never"); err != nil {
			t.Logf("reset failback: %v", err)
		}
	})
	fault := time.Now()
	s.must(s.c.tb.Node(1).Kill())
	_, err = s.c.waitOnline(s.ctx, 2, 120*time.Second)
	s.must(err)
	s.must(s.c.reboot(s.ctx, 1))
	s.must(s.c.waitMembers(s.ctx, 180*time.Second))
	return s, fault
}

// TestIntegrationFailbackInWindow: the window holds the current hour:
// once node1 is back, the group moves back to it.
func TestIntegrationFailbackInWindow(t *testing.T) {
	h := time.Now().Hour()
	s, fault := failback(t, h, (h+2)%24)
	s.w.finish(fault, outcome{owner: 1, moves: 2})
}

// TestIntegrationFailbackOutsideWindow: the window is later in the day:
// node1 back, the group stays on node2 (for 10 s, checked).
func TestIntegrationFailbackOutsideWindow(t *testing.T) {
	h := time.Now().Hour()
	s, fault := failback(t, (h+2)%24, (h+3)%24)
	time.Sleep(10 * time.Second)
	s.w.finish(fault, outcome{owner: 2, moves: 1})
}

// TestIntegrationRollingRestart: on three nodes, each node in turn is
// restarted as an operator would from the hypervisor: its power button
// pressed (the appliance's init stops clusterd, which drains: its groups
// move, it leaves the cluster, then init powers the VM off), the VM
// powered on, and the appliance rejoins; the virtual server stays online,
// each move a planned one.
func TestIntegrationRollingRestart(t *testing.T) {
	s := begin(t, 3, 0)
	fault := time.Now()
	moves := 0
	for i := 1; i <= 3; i++ {
		owner, _, err := s.c.owner(s.ctx, i%3+1)
		s.must(err)
		if owner == i {
			moves++
		}
		t0 := time.Now()
		tail, err := s.c.powerButton(s.ctx, i, 120*time.Second)
		s.must(err)
		s.must(s.c.reboot(s.ctx, i))
		s.must(s.c.waitMembers(s.ctx, 180*time.Second))
		t.Logf("node%d restarted in %v (it owned the group: %v); its clusterd's last words:\n%s", i, time.Since(t0).Round(time.Millisecond), owner == i, tail)
	}
	owner, err := s.c.waitOnline(s.ctx, 0, 60*time.Second)
	s.must(err)
	s.w.finish(fault, outcome{owner: owner, moves: moves, maxOutage: maxMoveOutage})
}
