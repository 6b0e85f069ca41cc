package testbed

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi/iscsi/iscsitest"
	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

const helperEnv = "WOLFPACK_TESTBED_HELPER"

// helperInfo is what the helper test reports about its testbed, so that the
// parent can check afterwards that all of it is gone.
type helperInfo struct {
	Prefix    string
	CtlPort   int
	Portal    string
	LUN       string
	Sockets   []string
	Pids      []int    // QEMU and tgtd
	Starts    []string // their start times, as pids get reused fast
	StateFile string
}

// TestHelperFailingTestbed is not a test of its own: TestIntegrationHarnessLeavesNothing
// runs it in a child process, where it starts a testbed and then fails in the
// way the environment asks for.
func TestHelperFailingTestbed(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for TestIntegrationHarnessLeavesNothing")
	}
	tb := New(t, Config{Nodes: 1, PrivateNets: 1, WorkDir: os.Getenv(helperEnv + "_DIR")})
	info := helperInfo{
		Prefix: tb.Prefix(), CtlPort: tb.TgtCtlPort(), Portal: tb.Portal(), LUN: tb.LUNPath(),
		Pids:      []int{tb.tgt.Pid()},
		StateFile: tb.state.path,
	}
	for _, n := range tb.Nodes() {
		info.Sockets = append(info.Sockets, n.AgentSocket(), n.QMPSocket())
		info.Pids = append(info.Pids, n.Pid())
	}
	for _, pid := range info.Pids {
		info.Starts = append(info.Starts, netns.ProcStart(pid))
	}
	b, _ := json.Marshal(info)
	fmt.Printf("TESTBED-INFO %s\n", b)
	switch mode {
	case "fatal":
		t.Fatal("failing on purpose with a live testbed")
	case "panic":
		panic("panicking on purpose with a live testbed")
	case "hang", "interrupt":
		select {} // the parent kills or interrupts the process
	}
}

func TestIntegrationHarnessLeavesNothing(t *testing.T) {
	Require(t)
	for _, mode := range []string{"fatal", "panic", "interrupt", "hang"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperFailingTestbed$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperEnv+"_DIR="+t.TempDir())
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = cmd.Stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var info *helperInfo
			var out strings.Builder
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				fmt.Fprintln(&out, line)
				if js, ok := strings.CutPrefix(line, "TESTBED-INFO "); ok {
					info = new(helperInfo)
					if err := json.Unmarshal([]byte(js), info); err != nil {
						t.Fatalf("parse helper info: %v", err)
					}
					switch mode {
					case "hang":
						// Like a test binary killed by a timeout or by hand: no cleanup runs.
						_ = cmd.Process.Kill()
					case "interrupt":
						// Like ^C: the testbed's signal handler closes it.
						_ = cmd.Process.Signal(os.Interrupt)
					}
				}
			}
			err = cmd.Wait()
			if info == nil {
				t.Fatalf("helper never reported its testbed (err %v):\n%s", err, out.String())
			}
			if err == nil {
				t.Fatalf("helper test passed, want a failure:\n%s", out.String())
			}
			want := map[string]string{"fatal": "--- FAIL: TestHelperFailingTestbed", "panic": "panic: panicking on purpose", "interrupt": "testbed: interrupt: closing 1 testbed(s)"}[mode]
			if !strings.Contains(out.String(), want) {
				t.Errorf("helper output lacks %q:\n%s", want, out.String())
			}
			t.Logf("helper (%s) ended with %v; testbed %s", mode, err, info.Prefix)

			if mode == "hang" {
				// QEMU and tgtd die with their parent (PDEATHSIG), a little later.
				err := waitFor(ctx, 10*time.Second, nil, func() (bool, error) { return len(alive(info)) == 0, nil })
				if err != nil {
					t.Errorf("processes of the killed helper still alive: %v", alive(info))
				}
				// Links, namespace and files stay until the next testbed sweeps.
				if left := leftovers(info); len(left) == 0 {
					t.Errorf("nothing left after killing the helper: the leak check is blind")
				} else {
					t.Logf("left behind by the killed helper, to sweep: %v", left)
				}
				sweepStale(testLogger(t))
			}
			if left := leftovers(info); len(left) > 0 {
				t.Errorf("left behind by testbed %s:\n  %s\nhelper output:\n%s", info.Prefix, strings.Join(left, "\n  "), out.String())
			}
		})
	}
}

// alive lists the helper's processes that still run (zombies do not count).
func alive(info *helperInfo) []int {
	var live []int
	for i, pid := range info.Pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") || netns.ProcStart(pid) != info.Starts[i] {
			continue
		}
		live = append(live, pid)
	}
	return live
}

// leftovers describes whatever of the testbed still exists.
func leftovers(info *helperInfo) []string {
	var left []string
	for _, pid := range processes(info.Prefix, info.CtlPort) {
		left = append(left, fmt.Sprintf("process %d: %s", pid, strings.Join(procCmdline(pid), " ")))
	}
	for _, pid := range alive(info) {
		left = append(left, fmt.Sprintf("process %d (%s) alive", pid, strings.Join(procCmdline(pid), " ")))
	}
	links, err := netns.LinksWithPrefix(info.Prefix)
	if err != nil {
		left = append(left, err.Error())
	}
	for _, l := range links {
		left = append(left, "link "+l)
	}
	nss, _ := filepath.Glob(filepath.Join(netns.Dir, info.Prefix+"*"))
	for _, ns := range nss {
		left = append(left, "netns "+filepath.Base(ns))
	}
	files := append([]string{info.LUN, info.StateFile}, append(iscsitest.Sockets(info.CtlPort), info.Sockets...)...)
	for _, f := range files {
		if _, err := os.Lstat(f); !errors.Is(err, os.ErrNotExist) {
			left = append(left, "file "+f)
		}
	}
	if c, err := net.DialTimeout("unix", iscsitest.Sockets(info.CtlPort)[0], time.Second); err == nil {
		c.Close()
		left = append(left, "tgtd control socket answers")
	}
	if c, err := net.DialTimeout("tcp", info.Portal, time.Second); err == nil {
		c.Close()
		left = append(left, "iSCSI portal "+info.Portal+" accepts connections")
	}
	return left
}
