// Command wolfpack-mutants shows that the project's checkers can fail: it
// plants each fault of a fixed list into the tree (through `go test
// -overlay`, so the working tree is never touched), runs the checker meant
// to catch it, and prints fault → seed → invariant. It exits 1 if a
// checker misses a fault or a fault no longer applies to the code.
//
//	go run ./cmd/wolfpack-mutants [-run REGEXP] [-v]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// edit replaces old, which must occur exactly once in file, by new.
type edit struct{ file, old, new string }

// checker is a go test run that must fail once the fault is planted.
type checker struct {
	name string
	pkg  string
	run  string
	env  []string
}

var (
	simSeeds = checker{name: "simulator, 300 seeds", pkg: "./sim/", run: "^TestSimulatorSeeds$",
		env: []string{"WOLFPACK_SIM_STOP_FIRST=1"}}
	simScenarios = checker{name: "simulator scenarios", pkg: "./sim/",
		run: "^(TestPartition|TestTwoNode|TestOneNetwork|TestFrozen|TestPruning)"}
	crash   = checker{name: "quorum log crash test", pkg: "./quorumdisk/", run: "^TestCrashReplay$"}
	regroup = checker{name: "regroup join tests", pkg: "./regroup/", run: "^TestJoin"}
	// The membership faults the QEMU fault matrix found: a slow member,
	// a late WelcomeAck, a restarted node beside a live owner.
	matrixScenarios = checker{name: "simulator: the matrix's membership faults", pkg: "./sim/",
		run: "^(TestRegroupWaitsForLateMember|TestLateWelcomeAckKeepsMembers|TestNoFormBesideLiveOwnerHeard|TestNoFormBesideLiveOwnerOnDisk)$"}
	// The simulator's availability phase loses too few batches to make
	// this fault likely in 300 seeds; the GUP tests lose one on purpose.
	gupCatchUp = checker{name: "GUP catch-up tests", pkg: "./gup/", run: "^TestCatchUp"}
)

type mutant struct {
	name  string
	edits []edit
	check checker
}

var mutants = []mutant{
	{
		name: "no self-fence on a removed key (quorum check and slot write both ignore it)",
		edits: []edit{{file: "internal/core/arbiter.go",
			old: "		if !slices.Contains(r.Keys, a.key) {\n			a.idle()\n			a.owner = false\n			a.node.quorumLost(\"this node's key is no longer registered on the quorum disk\")",
			new: "		if false {\n			a.idle()\n			a.owner = false\n			a.node.quorumLost(\"this node's key is no longer registered on the quorum disk\")",
		}, beatIgnored},
		check: simSeeds,
	},
	{
		name: "self-fence one quorum check late (and not on a refused slot write)",
		edits: []edit{
			{file: "internal/core/arbiter.go", old: "	owner  bool   // this node holds the reservation, as last seen\n",
				new: "	owner  bool   // this node holds the reservation, as last seen\n	late   bool\n"},
			{file: "internal/core/arbiter.go", old: "		if !slices.Contains(r.Keys, a.key) {\n			a.idle()\n			a.owner = false\n			a.node.quorumLost(\"this node's key is no longer registered",
				new: "		if !slices.Contains(r.Keys, a.key) && a.late {\n			a.idle()\n			a.owner = false\n			a.node.quorumLost(\"this node's key is no longer registered"},
			{file: "internal/core/arbiter.go", old: "		a.victims = a.victims[:0]\n		for _, k := range r.Keys {",
				new: "		a.late = !slices.Contains(r.Keys, a.key)\n		a.victims = a.victims[:0]\n		for _, k := range r.Keys {"},
			beatIgnored,
		},
		check: simSeeds,
	},
	{
		name: "the regroup leader installs before its arbitration is won",
		edits: []edit{{file: "regroup/regroup.go",
			old: "	n.rg.arbitrate = true\n	n.ready.Arbitrate = &Arbitration{Round: n.rg.round, Members: n.rg.survivors, Class: n.rg.class}",
			new: "	n.installAsLeader()",
		}},
		check: simSeeds,
	},
	{
		name: "pruning that keeps a non-clique (every candidate survives)",
		edits: []edit{{file: "regroup/clique.go",
			old: "	s.bk(NodeSet(0).Add(must), a[must]&candidates, 0)\n	return s.best",
			new: "	s.bk(NodeSet(0).Add(must), a[must]&candidates, 0)\n	return candidates",
		}},
		check: simScenarios,
	},
	{
		name: "a detector that counts one network only",
		edits: []edit{{file: "heartbeat/detector.go",
			old: "	n.last = d.now\n	p.lastAny = d.now\n",
			new: "	n.last = d.now\n	if net == 0 {\n		p.lastAny = d.now\n	}\n",
		}},
		check: simScenarios,
	},
	{
		name: "a poison pill obeyed by a later incarnation",
		edits: []edit{{file: "internal/core/node.go",
			old: "pl.Target == n.cfg.Self && pl.Incarnation == n.cfg.Incarnation {",
			new: "pl.Target == n.cfg.Self {",
		}},
		check: simSeeds,
	},
	{
		name: "replay that skips the LSN check",
		edits: []edit{{file: "quorumdisk/log.go",
			old: "	if r.LSN != lsn {",
			new: "	if false {",
		}},
		check: crash,
	},
	{
		name: "a checkpoint that overwrites the live area",
		edits: []edit{{file: "quorumdisk/log.go",
			old: "	area := 1 - l.area\n",
			new: "	area := l.area\n",
		}},
		check: crash,
	},
	{
		name: "a join accepted without the secret",
		edits: []edit{{file: "regroup/join.go",
			old: "		want := n.proof(\"wolfpack join joiner\", n.cfg.Self, m.From, sp.inc, sp.jnonce, sp.nonce)\n		if !hmac.Equal(want, m.Proof) {",
			new: "		want := n.proof(\"wolfpack join joiner\", n.cfg.Self, m.From, sp.inc, sp.jnonce, sp.nonce)\n		if false && !hmac.Equal(want, m.Proof) {",
		}, {file: "regroup/join.go",
			old: "		want := n.proof(\"wolfpack join sponsor\", m.From, n.cfg.Self, n.cfg.Incarnation, m.Nonce, m.Nonce2)\n		if !hmac.Equal(want, m.Proof) {",
			new: "		want := n.proof(\"wolfpack join sponsor\", m.From, n.cfg.Self, n.cfg.Incarnation, m.Nonce, m.Nonce2)\n		if false && !hmac.Equal(want, m.Proof) {",
		}},
		check: regroup,
	},
	{
		name: "GUP: the locker applies and delivers a batch before its log write",
		edits: []edit{{file: "gup/node.go",
			old: "	for _, u := range batch {\n		n.apply(u)\n	}\n	lk.history = append(lk.history, batch...)\n	n.trimHistory(lk)\n	n.deliver(batch)\n",
			new: "",
		}, {file: "gup/node.go",
			old: "	lk.inflight = batch\n	lk.logOp = LogAppend\n",
			new: "	lk.inflight = batch\n	for _, u := range batch {\n		n.apply(u)\n	}\n	lk.history = append(lk.history, batch...)\n	n.trimHistory(lk)\n	n.deliver(batch)\n	lk.logOp = LogAppend\n",
		}},
		check: simSeeds,
	},
	{
		name: "GUP: a new locker skips what the log holds after its checkpoint",
		edits: []edit{{file: "gup/node.go",
			old: "	for _, rec := range r.Records {\n		if !rec.Update {",
			new: "	for _, rec := range r.Records[:0] {\n		if !rec.Update {",
		}},
		check: simSeeds,
	},
	{
		name: "GUP: a request sent again is sequenced and applied again",
		edits: []edit{{file: "gup/node.go",
			old: "	case m.covers(u.Inc, u.Req):\n		return // a duplicate\n	case u.Inc == m.inc && u.Req != m.req+1,",
			new: "	case u.Inc == m.inc && u.Req > m.req+1,",
		}, {file: "gup/node.go",
			old: "	case marks[u.Origin].covers(u.Inc, u.Req):\n		return \"duplicate\", true\n",
			new: "	case false:\n		return \"duplicate\", true\n",
		}},
		check: simSeeds,
	},
	{
		name: "GUP: a member's retransmit timer restarts with every new batch (a hole is not sent again while the locker is busy)",
		edits: []edit{{file: "gup/node.go",
			old: "p.acked < n.applied && n.now-p.progressAt >= r) && n.now-p.resentAt >= r:",
			new: "p.acked < n.applied && n.now-p.sentAt >= r) && n.now-p.resentAt >= r:",
		}, {file: "gup/node.go",
			old: "			holes := m.Req > m.Seq+1 && n.now-p.resentAt >= gapTicks\n",
			new: "			holes := false\n",
		}},
		check: gupCatchUp,
	},
	{
		name: "failover manager: a new owner does not wait out the lost owner's lease",
		edits: []edit{{file: "resources/manager.go",
			old: "		lg.notBefore, lg.from, lg.since = notBefore, from, since\n",
			new: "		lg.notBefore, lg.from, lg.since = 0, from, since\n",
		}},
		check: simSeeds,
	},
	{
		name: "failover manager: a survivor that may host an orphaned group claims it (ties broken by local state, not by the database)",
		edits: []edit{{file: "resources/manager.go",
			old: "		if m.draining || m.model.Choose(g, m.members, 0) != m.cfg.Self {",
			new: "		if m.draining || m.model.Choose(g, m.members, 0) != m.cfg.Self && !m.model.Possible(g, m.cfg.Self) {",
		}},
		check: simSeeds,
	},
	{
		name: "failover manager: one restart in place past the restart threshold",
		edits: []edit{{file: "resources/manager.go",
			old: "len(l.restarts) <= r.RestartThreshold:",
			new: "len(l.restarts) <= r.RestartThreshold+1:",
		}},
		check: simSeeds,
	},
	{
		name: "failover manager: a hard or fatal failure restarted in place like a soft one",
		edits: []edit{{file: "resources/manager.go",
			old: "case class == FailSoft && r.Restart != NoRestart && len(l.restarts) <= r.RestartThreshold:",
			new: "case r.Restart != NoRestart && len(l.restarts) <= r.RestartThreshold:",
		}},
		check: simSeeds,
	},
	{
		name: "failover manager: what a dead resmon left counts as offline (the group may leave before a new resmon terminated it)",
		edits: []edit{{file: "resources/manager.go",
			old: "func (l *local) off() bool { return (l.state == Offline || l.state == Failed) && !l.orphan }",
			new: "func (l *local) off() bool { return l.state == Offline || l.state == Failed }",
		}},
		check: simSeeds,
	},
	{
		name: "failover manager: failback outside the group's window",
		edits: []edit{{file: "resources/manager.go",
			old: "	if g.Failback == FailbackWindow && !inWindow(m.hour, g.WindowStart, g.WindowEnd) {",
			new: "	if false && g.Failback == FailbackWindow && !inWindow(m.hour, g.WindowStart, g.WindowEnd) {",
		}},
		check: simSeeds,
	},
	{
		name: "failover manager: one push past the failover threshold",
		edits: []edit{{file: "resources/manager.go",
			old: "len(recent) >= g.FailoverThreshold",
			new: "len(recent) > g.FailoverThreshold",
		}},
		check: simSeeds,
	},
	{
		name: "tickless: the node core asks for its next tick one tick after its disk beat is due",
		edits: []edit{{file: "internal/core/node.go",
			old: "next = min(next, n.lastBeat+int64(n.cfg.DiskBeatTicks))",
			new: "next = min(next, n.lastBeat+int64(n.cfg.DiskBeatTicks)+1)",
		}},
		check: simSeeds,
	},
	{
		name: "regroup: a stage gives up after 100-150 ms on a member the detector still hears",
		edits: []edit{{file: "regroup/node.go",
			old: "	if missing&n.alive == 0 || n.cfg.PatienceTicks <= 0 {",
			new: "	if true {",
		}},
		check: matrixScenarios,
	},
	{
		name: "a sponsor regroups out a joiner it welcomed whose WelcomeAck is late",
		edits: []edit{{file: "regroup/join.go",
			old: "	if sp.phase == spCommit {\n		n.restarted = n.restarted.Add(sp.joiner)",
			new: "	if sp.phase == spCommit || sp.phase == spWelcome {\n		n.restarted = n.restarted.Add(sp.joiner)",
		}},
		check: matrixScenarios,
	},
	{
		name: "a joining node forms while it hears a member of a live cluster",
		edits: []edit{{file: "regroup/join.go",
			old: "			if live := n.inCluster & n.alive; live != 0 {",
			new: "			if live := n.inCluster & 0; live != 0 {",
		}},
		check: matrixScenarios,
	},
	{
		name: "nodes booting together all form (a lower node starting too is not waited for)",
		edits: []edit{{file: "regroup/join.go",
			old: "			} else if wait := n.lowerWaitedFor(); wait != 0 {",
			new: "			} else if wait := n.lowerWaitedFor() & 0; wait != 0 {",
		}},
		check: regroup,
	},
	{
		name: "a lower node starting too holds the others off for ever",
		edits: []edit{{file: "regroup/join.go",
			old: "	return p < n.cfg.Self && t != 0 && n.now-t < n.lowerBound(p)",
			new: "	return p < n.cfg.Self && t != 0",
		}},
		check: regroup,
	},
	{
		name: "a forming node ignores a slot that moved during the form delay",
		edits: []edit{{file: "internal/core/arbiter.go",
			old: "		if id, ok := a.slotMoved(r.Slots); ok {",
			new: "		if id, ok := a.slotMoved(r.Slots); ok && id == 0 {",
		}},
		check: matrixScenarios,
	},
}

// beatIgnored is an edit several faults share: the slot write refused with
// RESERVATION CONFLICT no longer self-fences.
var beatIgnored = edit{file: "internal/core/node.go",
	old: "		case Conflict:\n			n.quorumLost(\"disk heartbeat write: RESERVATION CONFLICT: this node's key was removed\")\n",
	new: "		case Conflict:\n",
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "wolfpack-mutants:", err)
		os.Exit(1)
	}
}

var (
	seedLine = regexp.MustCompile(`seed (\d+), (\d+) nodes: (t=[0-9.]+s: .*)`)
	failLine = regexp.MustCompile(`^\s+\S+_test\.go:\d+: (.*)`)
)

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wolfpack-mutants", flag.ContinueOnError)
	only := fs.String("run", "", "run only the mutants whose name matches")
	verbose := fs.Bool("v", false, "print each checker's output")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil // the usage is printed
	} else if err != nil {
		return err
	}
	var re *regexp.Regexp
	if *only != "" {
		var err error
		if re, err = regexp.Compile(*only); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "wolfpack-mutants-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	missed := 0
	total := 0
	for i, m := range mutants {
		if re != nil && !re.MatchString(m.name) {
			continue
		}
		total++
		start := time.Now()
		overlay, err := plant(dir, i, m)
		if err != nil {
			return fmt.Errorf("fault %q: %w", m.name, err)
		}
		cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-short", "-overlay", overlay, "-run", m.check.run, m.check.pkg)
		cmd.Env = append(os.Environ(), m.check.env...)
		b, err := cmd.CombinedOutput()
		if *verbose {
			out.Write(b)
		}
		if err == nil {
			missed++
			fmt.Fprintf(out, "MISSED  %s: %s passed with the fault planted\n", m.name, m.check.name)
			continue
		}
		if bytes.Contains(b, []byte("[build failed]")) || bytes.Contains(b, []byte("\npanic: ")) {
			// A fault that does not build or panics shows nothing about
			// the checker: it is a broken fault.
			missed++
			fmt.Fprintf(out, "BROKEN  %s: %s failed by a build error or a panic, not by an invariant\n", m.name, m.check.name)
			continue
		}
		seed, inv := evidence(b)
		fmt.Fprintf(out, "caught  %s → %s → %s → %s (%s)\n", m.name, m.check.name, seed, inv, time.Since(start).Round(time.Second))
	}
	fmt.Fprintf(out, "%d of %d planted faults caught\n", total-missed, total)
	if missed > 0 {
		return fmt.Errorf("%d planted faults not caught", missed)
	}
	return nil
}

// plant writes the mutated files and an overlay that maps each original
// to its mutated copy.
func plant(dir string, i int, m mutant) (string, error) {
	files := map[string]string{}
	var order []string
	for _, e := range m.edits {
		s, ok := files[e.file]
		if !ok {
			b, err := os.ReadFile(e.file)
			if err != nil {
				return "", err
			}
			s = string(b)
			order = append(order, e.file)
		}
		if n := strings.Count(s, e.old); n != 1 {
			return "", fmt.Errorf("%s: the text to replace occurs %d times, want once (the code changed: update the fault):\n%s", e.file, n, e.old)
		}
		files[e.file] = strings.Replace(s, e.old, e.new, 1)
	}
	replace := map[string]string{}
	for k, f := range order {
		mutated := filepath.Join(dir, fmt.Sprintf("m%d_%d_%s", i, k, filepath.Base(f)))
		if err := os.WriteFile(mutated, []byte(files[f]), 0o644); err != nil {
			return "", err
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			return "", err
		}
		replace[abs] = mutated
	}
	ov, _ := json.Marshal(map[string]map[string]string{"Replace": replace})
	path := filepath.Join(dir, fmt.Sprintf("m%d.json", i))
	return path, os.WriteFile(path, ov, 0o644)
}

// evidence finds the failing seed and the invariant in a checker's output.
func evidence(b []byte) (seed, invariant string) {
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var first string
	for sc.Scan() {
		l := sc.Text()
		if m := seedLine.FindStringSubmatch(l); m != nil {
			return fmt.Sprintf("seed %s (%s nodes)", m[1], m[2]), m[3]
		}
		if m := failLine.FindStringSubmatch(l); m != nil && first == "" {
			first = m[1]
		}
	}
	if first == "" {
		first = "test failed"
	}
	if m := regexp.MustCompile(`seed (\d+)`).FindStringSubmatch(first); m != nil {
		return "seed " + m[1], first
	}
	return "-", first
}
