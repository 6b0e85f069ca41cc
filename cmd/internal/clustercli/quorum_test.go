package clustercli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

// memLUN is one in-memory LU with a nexus per node, /dev/memN for node N.
func memLUN(t *testing.T, compat memtarget.Compat) (*memtarget.Target, opener) {
	t.Helper()
	tg := memtarget.New(memtarget.Config{Blocks: 16 << 20 / 512, Compat: compat})
	return tg, func(addr string) (scsi.Device, error) {
		var n int
		if _, err := fmt.Sscanf(addr, "/dev/mem%d", &n); err != nil {
			return nil, fmt.Errorf("open %s: no such in-memory nexus", addr)
		}
		return memNexus{tg.Nexus(fmt.Sprintf("iqn.2024-01.org.example:node%d", n))}, nil
	}
}

func cli(t *testing.T, open opener, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr, open)
	return stdout.String() + stderr.String(), err
}

// TestQuorumFormatRefuses: `cluster disk format` formats a blank LUN and
// refuses one holding a quorum disk or a filesystem, naming it;
// `cluster quorum format --force` overwrites.
func TestQuorumFormatRefuses(t *testing.T) {
	tg, open := memLUN(t, memtarget.CompatTgt)
	out, err := cli(t, open, "disk", "format", "/dev/mem1")
	if err != nil || !strings.Contains(out, "formatted quorum disk") {
		t.Fatalf("format a blank LUN: %v\n%s", err, out)
	}
	out, err = cli(t, open, "disk", "format", "--json", "/dev/mem1")
	if err == nil || !strings.Contains(out, "Wolfpack quorum disk superblock (cluster id") || !strings.Contains(out, "--force") {
		t.Fatalf("format over a quorum disk: %v\n%s", err, out)
	}
	// An ext4 superblock magic at byte 1080.
	d := tg.Nexus("writer")
	b := make([]byte, 512*4)
	copy(b[1080:], "\x53\xef")
	if err := scsi.Write16(context.Background(), d, 0, 4, b, true); err != nil {
		t.Fatal(err)
	}
	_, err = cli(t, open, "disk", "format", "/dev/mem1")
	if err == nil || !strings.Contains(err.Error(), "found ext2/3/4 filesystem at byte 1080") {
		t.Fatalf("format over ext4: %v", err)
	}
	out, err = cli(t, open, "quorum", "format", "--force", "--cluster-tag", "574c4650", "--json", "/dev/mem1")
	if err != nil || !strings.Contains(out, `"cluster_tag": "0x574c4650"`) || !strings.Contains(out, "ext2/3/4") {
		t.Fatalf("forced format: %v\n%s", err, out)
	}
	out, err = cli(t, open, "quorum", "show", "/dev/mem1")
	if err != nil || !strings.Contains(out, "Wolfpack quorum disk v1") {
		t.Fatalf("show: %v\n%s", err, out)
	}
	out, err = cli(t, open, "disk", "format", "--force", "/dev/mem1")
	if err != nil || !strings.Contains(out, "formatted quorum disk") {
		t.Fatalf("disk format --force over a quorum disk: %v\n%s", err, out)
	}
}

type holdLine struct {
	Event   string   `json:"event"`
	LSN     uint64   `json:"lsn"`
	LSNs    []uint64 `json:"lsns"`
	LastLSN uint64   `json:"last_lsn"`
	Reason  string   `json:"reason"`
}

func holdLines(t *testing.T, out string) []holdLine {
	t.Helper()
	var ls []holdLine
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "{") {
			continue // the driver's log on stderr
		}
		var l holdLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("hold output line %q: %v", sc.Text(), err)
		}
		ls = append(ls, l)
	}
	return ls
}

func acked(ls []holdLine) []uint64 {
	var a []uint64
	for _, l := range ls {
		if l.Event == "append" {
			a = append(a, l.LSN)
		}
	}
	return a
}

// TestQuorumHoldTakeover: node 1 holds the disk and appends; after it stops
// (its key and reservation stay, as after a crash), node 2 challenges, waits
// the defence delay, wins, and replays every record node 1 acknowledged.
func TestQuorumHoldTakeover(t *testing.T) {
	_, open := memLUN(t, memtarget.CompatTgt)
	if out, err := cli(t, open, "disk", "format", "/dev/mem1"); err != nil {
		t.Fatalf("format: %v\n%s", err, out)
	}
	fast := []string{"--check-interval", "100ms", "--form-delay", "300ms"}
	out, err := cli(t, open, append([]string{"quorum", "hold", "--node", "1", "--append-every", "10ms", "--hold", "200ms"}, append(fast, "/dev/mem1")...)...)
	if err != nil {
		t.Fatalf("node1 hold: %v\n%s", err, out)
	}
	l1 := holdLines(t, out)
	a1 := acked(l1)
	if len(a1) < 5 || l1[len(l1)-1].Event != "done" {
		t.Fatalf("node1 acknowledged %d records:\n%s", len(a1), out)
	}
	out, err = cli(t, open, append([]string{"quorum", "hold", "--node", "2", "--hold", "150ms"}, append(fast, "/dev/mem2")...)...)
	if err != nil {
		t.Fatalf("node2 hold: %v\n%s", err, out)
	}
	l2 := holdLines(t, out)
	events := []string{}
	var replay holdLine
	for _, l := range l2 {
		events = append(events, l.Event)
		if l.Event == "replay" {
			replay = l
		}
	}
	if !slices.Contains(events, "challenging") || !slices.Contains(events, "won") {
		t.Fatalf("node2 events %v", events)
	}
	for _, lsn := range a1 {
		if !slices.Contains(replay.LSNs, lsn) {
			t.Fatalf("node2's replay %v misses LSN %d that node1 acknowledged", replay.LSNs, lsn)
		}
	}
	// Node 2's own first record follows node 1's on the disk.
	out, err = cli(t, open, append([]string{"quorum", "replay", "--json"}, "/dev/mem1")...)
	if err != nil || !strings.Contains(out, `"last_lsn": `+fmt.Sprint(replay.LastLSN+1)) {
		t.Fatalf("replay after node2 (its owner record is LSN %d): %v\n%s", replay.LastLSN+1, err, out)
	}
}

// TestQuorumHoldDefended: while node 1 holds and checks, node 2 challenges
// and loses: node 1 removes its key during the defence delay.
func TestQuorumHoldDefended(t *testing.T) {
	_, open := memLUN(t, memtarget.CompatSPC4)
	if out, err := cli(t, open, "disk", "format", "/dev/mem1"); err != nil {
		t.Fatalf("format: %v\n%s", err, out)
	}
	fast := []string{"--check-interval", "50ms", "--form-delay", "300ms"}
	done := make(chan string)
	go func() {
		out, _ := cli(t, open, append([]string{"quorum", "hold", "--node", "1", "--hold", "1s"}, append(fast, "/dev/mem1")...)...)
		done <- out
	}()
	// node2 starts when node1 may or may not have won yet: either way
	// exactly one owner.
	out2, err2 := cli(t, open, append([]string{"quorum", "hold", "--node", "2", "--hold", "1s"}, append(fast, "/dev/mem2")...)...)
	out1 := <-done
	won1 := strings.Contains(out1, `"event":"won"`)
	won2 := strings.Contains(out2, `"event":"won"`)
	if won1 == won2 {
		t.Fatalf("owners: node1 %v node2 %v\n%s\n%s", won1, won2, out1, out2)
	}
	loser := out2
	if won2 {
		loser = out1
	} else if err2 == nil {
		t.Fatalf("node2 lost but exited 0")
	}
	if !strings.Contains(loser, `"event":"lost"`) {
		t.Fatalf("loser's output:\n%s", loser)
	}
}

// TestQuorumBenchMemtarget measures appends on the in-memory target through
// the CLI's code (the figure BENCHMARKS.md reports next to tgt's).
func TestQuorumBenchMemtarget(t *testing.T) {
	_, open := memLUN(t, memtarget.CompatTgt)
	if out, err := cli(t, open, "disk", "format", "/dev/mem1"); err != nil {
		t.Fatalf("format: %v\n%s", err, out)
	}
	out, err := cli(t, open, "quorum", "bench", "--node", "1", "--appends", "5000", "--form-delay", "200ms", "/dev/mem1")
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	var r benchResult
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &r); err != nil || r.Appends != 5000 {
		t.Fatalf("bench output: %v\n%s", err, out)
	}
	t.Logf("memtarget: %d appends of %d bytes: p50 %.1f us, p99 %.1f us, %.0f appends/s", r.Appends, r.PayloadBytes, r.P50us, r.P99us, r.PerSecond)
}
