package regroup

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/internal/transcript"
)

// rgHarness runs regroup nodes over an in-memory network for a transcript.
// The test is the failure detector (up, down) and the quorum arbiter
// (arbitrate): every Arbitration waits for the transcript's answer.
type rgHarness struct {
	nodes   map[NodeID]*Node
	queue   []Message
	cut     map[[2]NodeID]bool
	pending map[NodeID]Arbitration
}

func (h *rgHarness) id(t *testing.T, s string) NodeID {
	i, err := strconv.Atoi(s)
	if err != nil || h.nodes[NodeID(i)] == nil {
		t.Fatalf("node %q", s)
	}
	return NodeID(i)
}

func (h *rgHarness) ids(t *testing.T, s string) []NodeID {
	var out []NodeID
	for _, f := range strings.Split(s, ",") {
		if f != "" {
			out = append(out, h.id(t, f))
		}
	}
	return out
}

// settle delivers messages until the network is quiet and prints every
// event and arbitration request, in order.
func (h *rgHarness) settle(b *strings.Builder) {
	collect := func() {
		for _, id := range slices.Sorted(maps.Keys(h.nodes)) {
			n := h.nodes[id]
			if !n.HasReady() {
				continue
			}
			rd := n.Ready()
			h.queue = append(h.queue, rd.Messages...)
			if rd.Arbitrate != nil {
				h.pending[id] = *rd.Arbitrate
				fmt.Fprintf(b, "n%d: arbitrate round %d %v %v\n", id, rd.Arbitrate.Round, rd.Arbitrate.Members, rd.Arbitrate.Class)
			}
			if rd.Register {
				fmt.Fprintf(b, "n%d: register (joining %v)\n", id, rd.RegisterFor)
				n.DiskRegistered(nil)
				h.queue = append(h.queue, n.Ready().Messages...)
			}
			if rd.Unregister {
				fmt.Fprintf(b, "n%d: unregister\n", id)
			}
			for _, e := range rd.Events {
				if e.Kind == EventCleanup2 {
					continue
				}
				fmt.Fprintf(b, "n%d: %v\n", id, e)
			}
		}
	}
	collect()
	for steps := 0; len(h.queue) > 0 && steps < 10000; steps++ {
		m := h.queue[0]
		h.queue = h.queue[1:]
		if h.cut[[2]NodeID{m.From, m.To}] || h.nodes[m.To] == nil {
			continue
		}
		h.nodes[m.To].Step(m)
		collect()
	}
}

func (h *rgHarness) run(t *testing.T, c transcript.Case) string {
	var b strings.Builder
	switch c.Cmd {
	case "cluster":
		k, _ := strconv.Atoi(c.Arg("n"))
		h.nodes, h.cut, h.pending, h.queue = map[NodeID]*Node{}, map[[2]NodeID]bool{}, map[NodeID]Arbitration{}, nil
		var all NodeSet
		for i := 1; i <= k; i++ {
			all = all.Add(NodeID(i))
		}
		for i := 1; i <= k; i++ {
			n, err := New(Config{Cluster: 1, Self: NodeID(i), Incarnation: uint64(i), Nodes: all, Secret: []byte("s")})
			if err != nil {
				t.Fatal(err)
			}
			h.nodes[NodeID(i)] = n
		}
		return ""
	case "form":
		h.nodes[h.id(t, c.Arg("node"))].Form()
	case "join":
		// heardby= lists the members whose detectors hear the joiner
		// (default: every member).
		n := h.nodes[h.id(t, c.Arg("node"))]
		heardBy := h.ids(t, c.Arg("heardby"))
		n.Start()
		for _, p := range h.nodes {
			if p != n && p.Member() {
				n.PeerUp(p.ID())
				if c.Arg("heardby") == "" || slices.Contains(heardBy, p.ID()) {
					p.PeerUp(n.ID())
				}
			}
		}
	case "arbitrate":
		id := h.id(t, c.Arg("node"))
		a, ok := h.pending[id]
		if !ok {
			t.Fatalf("%s: node %d was asked for no arbitration", c.Pos, id)
		}
		delete(h.pending, id)
		h.nodes[id].ArbitrationDone(a.Round, c.Arg("won") == "true", c.Arg("reason"))
	case "up", "down":
		// The detector of node hears (up) or suspects (down) peers.
		n := h.nodes[h.id(t, c.Arg("node"))]
		for _, p := range h.ids(t, c.Arg("peers")) {
			if c.Cmd == "up" {
				n.PeerUp(p)
			} else {
				n.PeerDown(p)
			}
		}
	case "cut", "heal":
		for _, a := range h.ids(t, c.Arg("a")) {
			for _, bb := range h.ids(t, c.Arg("b")) {
				h.cut[[2]NodeID{a, bb}] = c.Cmd == "cut"
				h.cut[[2]NodeID{bb, a}] = c.Cmd == "cut"
			}
		}
	case "crash":
		id := h.id(t, c.Arg("node"))
		for p := range h.nodes {
			h.cut[[2]NodeID{id, p}], h.cut[[2]NodeID{p, id}] = true, true
		}
	case "tick":
		k, _ := strconv.Atoi(c.Arg("n"))
		for range k {
			for _, id := range slices.Sorted(maps.Keys(h.nodes)) {
				h.nodes[id].Tick()
			}
			h.settle(&b)
		}
		return b.String()
	case "leave":
		if err := h.nodes[h.id(t, c.Arg("node"))].Leave(); err != nil {
			fmt.Fprintf(&b, "error: %v\n", err)
		}
	case "status":
		for _, id := range slices.Sorted(maps.Keys(h.nodes)) {
			n := h.nodes[id]
			e, m := n.Membership()
			fmt.Fprintf(&b, "n%d: %v %v epoch %v members %v\n", id, n.State(), n.Stage(), e, m)
		}
		return b.String()
	default:
		t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
	}
	h.settle(&b)
	return b.String()
}

// TestRegroupTranscripts runs testdata/regroup_*.txt.
func TestRegroupTranscripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/regroup_*.txt")
	if len(files) == 0 {
		t.Fatal("no transcripts")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			transcript.Run(t, f, (&rgHarness{}).run)
		})
	}
}
