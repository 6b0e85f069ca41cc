package core

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/internal/transcript"
	"github.com/wolfpack-ha/wolfpack/regroup"
)

const testTag = 0x57504b31

// arbHarness drives one node's arbiter through a transcript: the test
// stands in for regroup (which claims and which membership is installed)
// and for the disk (every result is written in the transcript).
type arbHarness struct {
	n       *Node
	members nodes.Set
}

func parseSet(t *testing.T, s string) nodes.Set {
	var set nodes.Set
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		id, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("node id %q: %v", f, err)
		}
		set = set.Add(nodes.ID(id))
	}
	return set
}

func parseClass(t *testing.T, s string) regroup.Class {
	for c := regroup.ClassMajority; c <= regroup.ClassForm; c++ {
		if c.String() == s {
			return c
		}
	}
	t.Fatalf("class %q", s)
	return 0
}

func keyOf(k uint64) string {
	tag, id := KeyNode(k)
	if tag == testTag {
		return strconv.Itoa(int(id))
	}
	return fmt.Sprintf("%#x", k)
}

// keysOf parses node ids (keys of this cluster) and 0x... (foreign keys).
func keysOf(t *testing.T, s string) []uint64 {
	var ks []uint64
	for _, f := range strings.Split(s, ",") {
		switch {
		case f == "":
		case strings.HasPrefix(f, "0x"):
			k, err := strconv.ParseUint(f[2:], 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			ks = append(ks, k)
		default:
			id, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			ks = append(ks, Key(testTag, nodes.ID(id)))
		}
	}
	return ks
}

func (h *arbHarness) output() string {
	var b strings.Builder
	rd := h.n.Ready()
	for _, c := range rd.Disk {
		switch c.Op {
		case DiskPreempt:
			fmt.Fprintf(&b, "disk #%d preempt %s\n", c.ID, keyOf(c.Victim))
		case DiskRegister, DiskReserve:
			fmt.Fprintf(&b, "disk #%d %v %s\n", c.ID, c.Op, keyOf(c.Key))
		default:
			fmt.Fprintf(&b, "disk #%d %v\n", c.ID, c.Op)
		}
	}
	for _, e := range rd.Events {
		switch e.Kind {
		case EventKeyRemoved:
			fmt.Fprintf(&b, "event key removed %s\n", keyOf(e.Key))
		case EventArbitrationWaits:
			fmt.Fprintf(&b, "event arbitration waits %d ticks (holder %v)\n", e.Ticks, e.Owner)
		case EventArbitrationDone:
			fmt.Fprintf(&b, "%s\n", strings.TrimSpace(fmt.Sprintf("event arbitration done won=%v owner=%v %s", e.Won, e.Owner, e.Reason)))
		default:
			fmt.Fprintf(&b, "event %v\n", e)
		}
	}
	return b.String()
}

func (h *arbHarness) run(t *testing.T, c transcript.Case) string {
	switch c.Cmd {
	case "node":
		self, _ := strconv.Atoi(c.Arg("self"))
		n, err := New(Config{ClusterTag: testTag, Self: nodes.ID(self), Incarnation: 1,
			Nodes: parseSet(t, c.Arg("nodes")), Secret: []byte("s"), DefenceTicks: 15, FormTicks: 150, CheckTicks: 100})
		if err != nil {
			t.Fatal(err)
		}
		h.n, h.members = n, parseSet(t, c.Arg("members"))
		// The test is regroup: every claim is wanted, and the membership
		// is what the transcript says.
		n.arb.wanted = func(uint64) bool { return true }
		n.arb.members = func() nodes.Set { return h.members }
		return ""
	case "members":
		h.members = parseSet(t, c.Arg("set"))
		return ""
	case "claim":
		round, _ := strconv.Atoi(c.Arg("round"))
		h.n.arb.claim(regroup.Arbitration{Round: uint64(round), Members: parseSet(t, c.Arg("members")), Class: parseClass(t, c.Arg("class"))})
	case "register":
		h.n.arb.register(h.members)
	case "unregister":
		h.n.arb.unregister()
	case "check":
		h.n.arb.check()
	case "cancel":
		h.n.arb.cancelClaim()
	case "tick":
		k, _ := strconv.Atoi(c.Arg("n"))
		for range k {
			h.n.now++
			h.n.arb.tick()
		}
	case "result":
		id, _ := strconv.Atoi(c.Arg("id"))
		r := DiskResult{ID: uint64(id)}
		switch {
		case slices.Contains(c.Args, "conflict"):
			r.Outcome = Conflict
		case slices.Contains(c.Args, "failed"):
			r.Outcome, r.Err = Failed, "timeout"
		}
		r.Keys = keysOf(t, c.Arg("keys"))
		// slots=NODE:COUNTER,...: a read of the heartbeat slots.
		for _, f := range strings.Split(c.Arg("slots"), ",") {
			if id, ctr, ok := strings.Cut(f, ":"); ok {
				i, _ := strconv.Atoi(id)
				k, _ := strconv.Atoi(ctr)
				r.Slots = append(r.Slots, Slot{Node: nodes.ID(i), Counter: uint64(k), Incarnation: 1})
			}
		}
		if hd := c.Arg("holder"); hd != "" {
			r.Reserved, r.Holder = true, keysOf(t, hd)[0]
		}
		if !h.n.arb.result(r) {
			return "ignored (stale)"
		}
	default:
		t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
	}
	h.n.process()
	return h.output()
}

// TestArbiterTranscripts runs testdata/arbiter_*.txt.
func TestArbiterTranscripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/arbiter_*.txt")
	if len(files) == 0 {
		t.Fatal("no transcripts")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			h := &arbHarness{}
			transcript.Run(t, f, h.run)
		})
	}
}
