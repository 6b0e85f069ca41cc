package clustercli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed"
)

var update = flag.Bool("update", false, "rewrite testdata/pr_scenario.golden from tgt (TestIntegrationTargetsAgree)")

const goldenScenario = "testdata/pr_scenario.golden"

// buildCLI builds a static cluster binary for the guests.
func buildCLI(t *testing.T) string {
	t.Helper()
	p, err := testbed.BuildGo(context.Background(), "./cmd/cluster")
	if err != nil {
		t.Fatalf("build cluster for the guest: %v", err)
	}
	return p
}

// run runs argv in a guest; a non-zero exit is a result, not an error.
func run1(ctx context.Context, n *testbed.Node, argv ...string) (testbed.Result, error) {
	res, err := n.Run(ctx, argv...)
	var ee *testbed.ExitError
	if errors.As(err, &ee) && ee.Signal == "" {
		return ee.Result, nil
	}
	return res, err
}

// guestCLI runs `cluster ...` in a guest and returns its stdout; a JSON error
// report exits 1 and is still the output we compare.
func guestCLI(ctx context.Context, t *testing.T, n *testbed.Node, args []string, dev string) []byte {
	t.Helper()
	res, err := run1(ctx, n, append(append([]string{"/bin/cluster"}, args...), dev)...)
	if err != nil {
		t.Fatalf("%s: cluster %s %s: %v", n.Name(), strings.Join(args, " "), dev, err)
	}
	if res.ExitCode == 2 {
		t.Fatalf("%s: cluster %s %s: usage error: %s", n.Name(), strings.Join(args, " "), dev, res.Stderr)
	}
	return res.Stdout
}

// TestIntegrationTargetsAgree runs the reservation scenario on tgt, through
// three I_T nexuses of one QEMU guest (SG_IO on /dev/sgN, QEMU's iSCSI
// initiator, tgtd on loopback), and on scsi/memtarget, and requires
// identical statuses, sense, keys, holder and type at every step. The tgt
// results are also the golden file that the unit test TestScenarioMemtarget
// holds the in-memory target to.
func TestIntegrationTargetsAgree(t *testing.T) {
	testbed.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tb := testbed.New(t, testbed.Config{Nodes: 1, Initiators: 3, Binaries: []string{buildCLI(t)}})
	n := tb.Node(1)
	onTgt := runScenario(t, func(nexus int, args []string) []byte {
		return guestCLI(ctx, t, n, args, n.Disk(nexus+1))
	})
	onMem := runScenarioMemtarget(t)
	compareScenario(t, "tgt", onTgt, "memtarget", onMem)
	if *update {
		if err := os.WriteFile(goldenScenario, []byte(strings.Join(onTgt, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden := readGolden(t)
	compareScenario(t, "tgt", onTgt, goldenScenario, golden)
}

// TestIntegrationPreemptRace: two VMs, each registered, race PREEMPT AND
// ABORT against each other's key for 20 rounds. Each round exactly one wins;
// the loser's WRITE(16) gets RESERVATION CONFLICT while its READ(16) works;
// and sg_persist, reading through a third nexus, confirms that only the
// winner's key is registered and that it holds a Write Exclusive -
// Registrants Only reservation.
//
// Reference: SPC-4 5.12.11.4 (preempting), MSCS challenge/defence.
func TestIntegrationPreemptRace(t *testing.T) {
	testbed.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tb := testbed.New(t, testbed.Config{Nodes: 2, Initiators: 2, Binaries: []string{buildCLI(t)}})
	nodes := []*testbed.Node{tb.Node(1), tb.Node(2)}
	keys := []string{keyA, keyB}
	reader, readerDev := tb.Node(1), tb.Node(1).Disk(2)

	mustCLI := func(i int, args ...string) {
		t.Helper()
		res, err := run1(ctx, nodes[i], append(append([]string{"/bin/cluster", "disk"}, args...), nodes[i].Disk(1))...)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("node%d: cluster disk %s: %v exit %d\n%s%s", i+1, strings.Join(args, " "), err, res.ExitCode, res.Stdout, res.Stderr)
		}
	}
	mustCLI(0, "register", "--ignore-existing", "--key", keyA)
	mustCLI(1, "register", "--ignore-existing", "--key", keyB)
	mustCLI(0, "reserve", "--key", keyA, "--type", "we-ro")

	wins := [2]int{}
	for round := 1; round <= 20; round++ {
		var wg sync.WaitGroup
		results := make([]testbed.Result, 2)
		errs := make([]error, 2)
		for i := range nodes {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i], errs[i] = run1(ctx, nodes[i], "/bin/cluster", "disk", "preempt", "--abort", "--json",
					"--key", keys[i], "--victim", keys[1-i], "--type", "we-ro", nodes[i].Disk(1))
			}(i)
		}
		wg.Wait()
		winner := -1
		for i := range nodes {
			if errs[i] != nil {
				t.Fatalf("round %d: node%d: %v", round, i+1, errs[i])
			}
			switch {
			case results[i].ExitCode == 0:
				if winner >= 0 {
					t.Fatalf("round %d: both nodes won the preempt race", round)
				}
				winner = i
			case strings.Contains(string(results[i].Stdout), `"status": "RESERVATION CONFLICT"`):
			default:
				t.Fatalf("round %d: node%d: preempt failed other than by RESERVATION CONFLICT (exit %d):\n%s%s",
					round, i+1, results[i].ExitCode, results[i].Stdout, results[i].Stderr)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody won the preempt race:\n%s\n%s", round, results[0].Stdout, results[1].Stdout)
		}
		loser := 1 - winner
		wins[winner]++

		// The loser is fenced: reads work, writes conflict. The winner writes.
		check := func(i int) string {
			res, err := run1(ctx, nodes[i], "/bin/cluster", "disk", "check", "--json", nodes[i].Disk(1))
			if err != nil {
				t.Fatalf("round %d: node%d check: %v", round, i+1, err)
			}
			return string(res.Stdout)
		}
		if out := check(loser); !strings.Contains(out, `"read": "ok"`) || !strings.Contains(out, `"write": "RESERVATION CONFLICT"`) {
			t.Fatalf("round %d: loser node%d is not fenced as expected:\n%s", round, loser+1, out)
		}
		if out := check(winner); !strings.Contains(out, `"read": "ok"`) || !strings.Contains(out, `"write": "ok"`) {
			t.Fatalf("round %d: winner node%d cannot write:\n%s", round, winner+1, out)
		}

		// An independent reader (sg3_utils, another nexus) sees the same.
		ks := sgPersist(ctx, t, reader, "--read-keys", readerDev)
		rs := sgPersist(ctx, t, reader, "--read-reservation", readerDev)
		if !strings.Contains(ks, "1 registered reservation key") || !strings.Contains(ks, keys[winner]) {
			t.Fatalf("round %d: sg_persist keys, want only %s:\n%s", round, keys[winner], ks)
		}
		if !strings.Contains(rs, "Key="+keys[winner]) || !strings.Contains(rs, "Write Exclusive, registrants only") {
			t.Fatalf("round %d: sg_persist reservation, want %s WE-RO:\n%s", round, keys[winner], rs)
		}
		var won struct {
			ServiceAction string `json:"service_action"`
		}
		if err := json.Unmarshal(results[winner].Stdout, &won); err != nil {
			t.Fatalf("round %d: winner's output: %v", round, err)
		}
		t.Logf("round %2d: node%d won (%s), node%d fenced (reads ok, writes RESERVATION CONFLICT); sg_persist agrees",
			round, winner+1, won.ServiceAction, loser+1)

		// The loser registers again for the next round.
		mustCLI(loser, "register", "--ignore-existing", "--key", keys[loser])
	}
	t.Logf("wins: node1 %d, node2 %d", wins[0], wins[1])
}

// sgPersist runs sg_persist in a guest, again after a UNIT ATTENTION (which
// sg_persist reports rather than retries), and returns its output.
func sgPersist(ctx context.Context, t *testing.T, n *testbed.Node, args ...string) string {
	t.Helper()
	var out string
	for try := 0; try < 4; try++ {
		res, err := run1(ctx, n, append([]string{"sg_persist", "--no-inquiry"}, args...)...)
		if err != nil {
			t.Fatalf("%s: sg_persist %s: %v", n.Name(), strings.Join(args, " "), err)
		}
		out = string(res.Stdout) + string(res.Stderr)
		if res.ExitCode == 0 {
			return out
		}
		if !strings.Contains(strings.ToLower(out), "unit attention") {
			break
		}
	}
	t.Fatalf("%s: sg_persist %s failed:\n%s", n.Name(), strings.Join(args, " "), out)
	return ""
}

func compareScenario(t *testing.T, aName string, a []string, bName string, b []string) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s has %d steps, %s %d", aName, len(a), bName, len(b))
	}
	bad := 0
	for i := range a {
		if a[i] != b[i] {
			bad++
			t.Errorf("step %d (nexus %d: %s):\n  %-10s %s\n  %-10s %s", i, prScenario[i].nexus,
				strings.Join(prScenario[i].args, " "), aName, a[i], bName, b[i])
		}
	}
	if bad == 0 {
		t.Logf("%s and %s agree on all %d steps", aName, bName, len(a))
	}
}

func readGolden(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(goldenScenario)
	if err != nil {
		t.Fatalf("read golden scenario (make it with -update on a machine with the testbed): %v", err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}
