package clustercli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

// A step of the shared reservation scenario: one `cluster disk` action on one
// of three I_T nexuses (0, 1, 2) of the same LUN.
type step struct {
	nexus int
	args  []string // action and flags; the device is appended
}

const (
	keyA = "0x574f4c4600000001"
	keyB = "0x574f4c4600000002"
	keyC = "0x574f4c4600000003"
)

// prScenario walks register, reserve, preempt, release and clear across three
// nexuses, including the refusals a target must make. The same steps run on
// scsi/memtarget and on tgt (TestIntegrationTargetsAgree), and their results
// must be identical.
//
// Reference: SPC-4 5.12 (persistent reservations), 6.15 (PERSISTENT RESERVE IN),
// 6.16 (PERSISTENT RESERVE OUT).
var prScenario = []step{
	{0, []string{"keys"}},
	{0, []string{"reservation"}},
	{0, []string{"register", "--key", keyA}},
	{1, []string{"register", "--key", keyB}},
	{2, []string{"register", "--key", keyC}},
	{1, []string{"register", "--key", keyB}},                                                // already registered with another old key (0): conflict
	{0, []string{"keys"}},                                                                   // three keys, generation 3
	{0, []string{"reserve", "--key", keyA, "--type", "we-ro"}},                              // A holds
	{1, []string{"reservation"}},                                                            // seen from B
	{1, []string{"reserve", "--key", keyB, "--type", "we-ro"}},                              // held by another: conflict
	{0, []string{"reserve", "--key", keyA, "--type", "ea"}},                                 // holder, other type: conflict
	{2, []string{"check"}},                                                                  // registrant under WE-RO may write
	{1, []string{"preempt", "--abort", "--key", keyB, "--victim", keyA, "--type", "we-ro"}}, // B takes over, A removed
	{0, []string{"keys"}},                                                                   // A sees the UA, then keys B, C
	{0, []string{"check"}},                                                                  // A fenced: read ok, write conflict
	{0, []string{"reserve", "--key", keyA, "--type", "we-ro"}},                              // A unregistered: conflict
	{0, []string{"register", "--ignore-existing", "--key", keyA}},                           // A back in
	{2, []string{"release", "--key", keyC, "--type", "we-ro"}},                              // not the holder: no effect, GOOD
	{1, []string{"reservation"}},
	{1, []string{"release", "--key", keyB, "--type", "ea"}},                      // holder, wrong type: illegal request
	{1, []string{"release", "--key", keyB, "--type", "we-ro"}},                   // released
	{0, []string{"reservation"}},                                                 // none
	{2, []string{"reserve", "--key", keyC, "--type", "ea-ro"}},                   // C holds EA-RO
	{0, []string{"preempt", "--key", keyA, "--victim", keyC, "--type", "ea-ro"}}, // plain preempt: A holds
	{1, []string{"reservation"}},
	{2, []string{"clear", "--key", keyC}}, // C was preempted: conflict
	{1, []string{"unregister", "--key", keyB}},
	{0, []string{"keys"}},
	{0, []string{"clear", "--key", keyA}}, // everything gone
	{1, []string{"keys"}},
	{2, []string{"reservation"}},
}

// stepResult is a step's JSON output with the fields that name the path
// removed, so two transports can be compared.
func stepResult(t *testing.T, i int, s step, stdout []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(stdout, &m); err != nil {
		t.Fatalf("step %d (%s): output is not JSON: %v\n%s", i, strings.Join(s.args, " "), err, stdout)
	}
	delete(m, "device")
	delete(m, "error") // the message names the device; status and sense stay
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runScenario runs prScenario through exec (which runs one CLI invocation on
// a nexus and returns its stdout) and returns one normalised result a step.
func runScenario(t *testing.T, exec func(nexus int, args []string) []byte) []string {
	t.Helper()
	var out []string
	for i, s := range prScenario {
		args := append([]string{"disk"}, s.args...)
		args = append(args, "--json")
		out = append(out, stepResult(t, i, s, exec(s.nexus, args)))
	}
	return out
}

// runInProcess runs the CLI's own code in this process on open.
func runInProcess(ctx context.Context, open opener, args []string, dev string) []byte {
	var stdout, stderr bytes.Buffer
	if err := run(ctx, append(args, dev), &stdout, &stderr, open); err != nil && stdout.Len() == 0 {
		return []byte(fmt.Sprintf(`{"cli_error":%q}`, err.Error()))
	}
	return stdout.Bytes()
}

// memNexus keeps an in-memory nexus open across CLI invocations (the CLI
// closes the device it opened).
type memNexus struct{ scsi.Device }

func (memNexus) Close() error { return nil }

// runScenarioMemtarget runs prScenario through the CLI's own code on three
// nexuses of an in-memory target.
func runScenarioMemtarget(t *testing.T) []string {
	t.Helper()
	tg := memtarget.New(memtarget.Config{Blocks: 64 << 20 / 512, Compat: memtarget.CompatTgt})
	devs := map[string]scsi.Device{}
	names := []string{"/dev/mem0", "/dev/mem1", "/dev/mem2"}
	for i, n := range names {
		devs[n] = memNexus{tg.Nexus(fmt.Sprintf("iqn.2024-01.org.example:node1-i%d", i+1))}
	}
	open := func(addr string) (scsi.Device, error) {
		d, ok := devs[addr]
		if !ok {
			return nil, fmt.Errorf("open %s: no such in-memory nexus", addr)
		}
		return d, nil
	}
	ctx := context.Background()
	return runScenario(t, func(nexus int, args []string) []byte {
		return runInProcess(ctx, open, args, names[nexus])
	})
}

// TestScenarioMemtarget holds the in-memory target to what tgt answered for
// the same scenario (testdata/pr_scenario.golden, written by
// TestIntegrationTargetsAgree -update).
func TestScenarioMemtarget(t *testing.T) {
	compareScenario(t, goldenScenario, readGolden(t), "memtarget", runScenarioMemtarget(t))
}
