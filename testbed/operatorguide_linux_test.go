package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/testbed/agent"
	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// guideBlock is one runnable block of docs/install.md: a fenced block
// whose info string is "sh NODE".
type guideBlock struct {
	node  string
	lines []string // logical lines: continuations joined
}

var guideFence = regexp.MustCompile("(?ms)^```sh (node[0-9]+)\n(.*?)^```\n")

// guideBlocks reads the runnable blocks of docs/install.md, in order.
func guideBlocks(t *testing.T) []guideBlock {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []guideBlock
	for _, m := range guideFence.FindAllStringSubmatch(string(doc), -1) {
		b := guideBlock{node: m[1]}
		for _, l := range strings.Split(strings.ReplaceAll(m[2], "\\\n", " "), "\n") {
			if l = strings.Join(strings.Fields(l), " "); l != "" {
				b.lines = append(b.lines, l)
			}
		}
		blocks = append(blocks, b)
	}
	return blocks
}

// The substitutions of docs/install.md's "How this guide is tested": the
// only places where the testbed runs something other than the guide says.
// These four in the blocks' lines (run), and one more before each start
// of clusterd (startClusterd): heartbeat_threshold = 20 in the node
// file's [timing], as TCG guests on a shared host are slow.
const (
	guideQuorumDevice = "/dev/sdb"                        // → the guest's device of the quorum LUN
	guideStart        = "systemctl enable --now clusterd" // → (re)start clusterd in the background
	guideRestart      = "systemctl restart clusterd"      // → the same
	guideCopy         = "scp "                            // scp FILE NODE:DIR/ → copied through the agents
)

// TestIntegrationOperatorGuide runs docs/install.md as a new operator
// would, on two guests sharing a quorum LUN: create the cluster on node1,
// copy the bundle, join node2, start both, make the virtual server web
// (address, mDNS name, web server), move it, pause a node, drain one,
// evict and add back node2. After each step the client reaches web by
// address (the page names the node serving it) and by name, and the
// group's owner is the one the guide says.
func TestIntegrationOperatorGuide(t *testing.T) {
	start := time.Now()
	Require(t)
	blocks := guideBlocks(t)
	if len(blocks) < 10 {
		t.Fatalf("docs/install.md has %d runnable blocks (```sh nodeN), want the whole guide", len(blocks))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var bins []string
	for _, pkg := range []string{"./cmd/clusterd", "./cmd/resmon", "./cmd/cluster"} {
		b, err := BuildGo(ctx, pkg)
		if err != nil {
			t.Fatal(err)
		}
		bins = append(bins, b)
	}
	tb := New(t, Config{Nodes: 2, PrivateNets: 2, Memory: 256, Binaries: bins, Logger: testLogger(t)})
	t.Logf("testbed up in %v", time.Since(start).Round(time.Millisecond))
	g := &guideRun{t: t, ctx: ctx, tb: tb, pids: map[string]int{}}
	t.Cleanup(g.logsOnFailure)
	// The client sends its mDNS query to 224.0.0.251 by the routing table.
	if _, err := tb.Client().Run(ctx, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}

	for i, b := range blocks {
		text := strings.Join(b.lines, "\n")
		t0 := time.Now()
		g.run(b)
		g.check(text, b.node)
		t.Logf("step %d on %s (%v): %s", i+1, b.node, time.Since(t0).Round(time.Millisecond), strings.Join(b.lines, "; "))
	}
	t.Logf("the whole guide in %v", time.Since(start).Round(time.Millisecond))
}

type guideRun struct {
	t    *testing.T
	ctx  context.Context
	tb   *Testbed
	pids map[string]int // the clusterd the test started on each node
}

func (g *guideRun) node(name string) *Node {
	for _, n := range g.tb.Nodes() {
		if n.Name() == name {
			return n
		}
	}
	g.t.Fatalf("docs/install.md names node %q, the testbed has node1 and node2", name)
	return nil
}

// run runs a block's lines on its node, with the substitutions.
func (g *guideRun) run(b guideBlock) {
	n := g.node(b.node)
	var script []string
	flush := func() {
		if len(script) == 0 {
			return
		}
		s := "set -e\n" + strings.Join(script, "\n")
		script = nil
		res, err := n.Run(g.ctx, "sh", "-c", s)
		if err != nil {
			var ee *ExitError
			if errors.As(err, &ee) {
				g.t.Fatalf("%s: %s\n%v\nstdout:\n%s\nstderr:\n%s", n.Name(), s, err, ee.Stdout, ee.Stderr)
			}
			g.t.Fatalf("%s: %s\n%v", n.Name(), s, err)
		}
		g.t.Logf("%s$ %s\n%s%s", n.Name(), strings.ReplaceAll(s, "\n", "\n$ "), res.Stdout, res.Stderr)
	}
	for _, l := range b.lines {
		l = strings.ReplaceAll(l, guideQuorumDevice, n.Disk(1))
		switch {
		case l == guideStart || l == guideRestart:
			flush()
			g.startClusterd(n)
		case strings.HasPrefix(l, guideCopy):
			flush()
			g.copy(n, l)
		default:
			script = append(script, l)
		}
	}
	flush()
}

// copy does "scp FILE NODE:DIR/" from n through the agents.
func (g *guideRun) copy(from *Node, line string) {
	f := strings.Fields(line)
	host, dir, ok := strings.Cut(f[len(f)-1], ":")
	if len(f) != 3 || !ok {
		g.t.Fatalf("%s: %q: want scp FILE NODE:DIR/", from.Name(), line)
	}
	res, err := from.Run(g.ctx, "cat", f[1])
	if err != nil {
		g.t.Fatalf("%s: read %s: %v", from.Name(), f[1], err)
	}
	dst := path.Join(dir, path.Base(f[1]))
	to := g.node(host)
	r, err := to.Do(g.ctx, agent.Request{Argv: []string{"sh", "-c", fmt.Sprintf("mkdir -p %s && umask 077 && cat > %s", dir, dst)}, Stdin: res.Stdout})
	if err != nil || r.Exit != 0 || r.Error != "" {
		g.t.Fatalf("%s: write %s: %v %s %s", to.Name(), dst, err, r.Error, r.Stderr)
	}
	g.t.Logf("%s: copied %s to %s:%s (%d bytes)", from.Name(), f[1], to.Name(), dst, len(res.Stdout))
}

// startClusterd stops the clusterd the test started on n, if it still
// runs, starts one and waits until it is a member.
func (g *guideRun) startClusterd(n *Node) {
	if pid, ok := g.pids[n.Name()]; ok {
		alive := fmt.Sprintf("kill -0 %d 2>/dev/null", pid)
		if _, err := n.Run(g.ctx, "sh", "-c", alive); err == nil {
			if _, err := n.Run(g.ctx, "kill", fmt.Sprint(pid)); err != nil {
				g.t.Fatalf("%s: stop clusterd: %v", n.Name(), err)
			}
			g.wait(n.Name()+"'s clusterd to exit", 90*time.Second, func() error {
				if _, err := n.Run(g.ctx, "sh", "-c", alive); err == nil {
					return errors.New("still running")
				}
				return nil
			})
		}
	}
	// TCG guests on a shared host are far slower than servers: a member
	// is suspected after 2 s of silence instead of the profile's 500 ms.
	const slower = `f=/etc/wolfpack/node.toml; grep -q '^heartbeat_threshold' $f ||
{ awk '{print} /^\[timing\]/{print "heartbeat_threshold = 20"}' $f > $f.tcg && mv $f.tcg $f; }`
	if _, err := n.Run(g.ctx, "sh", "-c", slower); err != nil {
		g.t.Fatalf("%s: set heartbeat_threshold: %v", n.Name(), err)
	}
	pid, err := n.Do(g.ctx, agent.Request{Argv: []string{"clusterd", "-config", "/etc/wolfpack/node.toml"}, Background: true, LogPath: "/var/log/clusterd.log"})
	if err != nil || pid.Error != "" {
		g.t.Fatalf("%s: start clusterd: %v %s", n.Name(), err, pid.Error)
	}
	g.pids[n.Name()] = pid.Pid
	g.wait(n.Name()+" up", 90*time.Second, func() error {
		st, err := g.status(n)
		if err != nil {
			return err
		}
		if st.State != "up" {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
}

func (g *guideRun) status(n *Node) (clusterapi.Status, error) {
	var st clusterapi.Status
	res, err := n.Run(g.ctx, "cluster", "status", "--socket", "/run/wolfpack/clusterd.sock", "--json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(res.Stdout, &st)
}

// guideCheckpoints are the commands after which check looks at the
// virtual server; TestOperatorGuideBlocks holds the guide to having each.
var guideCheckpoints = []string{
	"cluster create prod", "cluster join /etc/wolfpack/join-prod.bundle --node node2", guideStart,
	"cluster resource create web-app", "cluster group move web --to node2", "cluster node pause node1",
	"cluster node drain node2", "cluster node evict node2", "cluster node add node2", guideRestart,
}

// TestOperatorGuideBlocks (no root, no VM): docs/install.md's runnable
// blocks name only the testbed's nodes and hold every step that
// TestIntegrationOperatorGuide checks, so an edit of the guide cannot
// silently drop a check.
func TestOperatorGuideBlocks(t *testing.T) {
	blocks := guideBlocks(t)
	var all []string
	for _, b := range blocks {
		if b.node != "node1" && b.node != "node2" {
			t.Errorf("a block runs on %s: the testbed has node1 and node2", b.node)
		}
		all = append(all, b.lines...)
	}
	for _, c := range guideCheckpoints {
		if !slices.ContainsFunc(all, func(l string) bool { return strings.Contains(l, c) }) {
			t.Errorf("docs/install.md has no runnable line with %q", c)
		}
	}
}

// check waits for what the guide says after a block: the nodes up, the
// group on its owner, the client reaching it by address and name.
func (g *guideRun) check(text, on string) {
	want := ""
	switch {
	case strings.Contains(text, "cluster resource create web-app"):
		want = "node1"
	case strings.Contains(text, "cluster group move web --to node2"):
		want = "node2"
	case strings.Contains(text, "cluster node pause node1"):
		want = "node2" // a paused node keeps its groups; web stays where it is
	case strings.Contains(text, "cluster node drain node2"), strings.Contains(text, "cluster node evict node2"):
		want = "node1"
	case strings.Contains(text, guideStart) && on == "node2", strings.Contains(text, guideRestart):
		g.wait("both nodes members", 90*time.Second, func() error {
			st, err := g.status(g.node("node1"))
			if err != nil {
				return err
			}
			if !slices.Equal(st.Members, []int{1, 2}) {
				return fmt.Errorf("node1's members %v", st.Members)
			}
			// The failover manager creates a member's node object once
			// it is a member: a group naming node2 needs it.
			res, err := g.node("node1").Run(g.ctx, "cluster", "node", "list", "--json")
			if err != nil {
				return err
			}
			var objs []clusterapi.Object
			if err := json.Unmarshal(res.Stdout, &objs); err != nil {
				return err
			}
			if len(objs) != 2 {
				return fmt.Errorf("%d node objects", len(objs))
			}
			return nil
		})
		if strings.Contains(text, guideRestart) {
			want = "node1" // the node added back takes nothing from node1
		}
	}
	if want == "" {
		return
	}
	g.wait("web online on "+want, 90*time.Second, func() error {
		res, err := g.node("node1").Run(g.ctx, "cluster", "group", "show", "web", "--json")
		if err != nil {
			return err
		}
		var o clusterapi.Object
		if err := json.Unmarshal(res.Stdout, &o); err != nil {
			return err
		}
		if o.Props["owner"] != want || o.Props["state"] != "online" {
			return fmt.Errorf("owner %v, state %v", o.Props["owner"], o.Props["state"])
		}
		return nil
	})
	cl := g.tb.Client()
	g.wait("the client served by "+want+" at 10.99.0.50", 30*time.Second, func() error {
		res, err := cl.Run(g.ctx, "curl", "-s", "--max-time", "3", "http://10.99.0.50/")
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(res.Stdout)); got != "served by "+want {
			return fmt.Errorf("page %q", got)
		}
		return nil
	})
	g.wait("web.local resolving to 10.99.0.50", 30*time.Second, func() error {
		got, err := resolveMDNS(cl.Netns(), "web.local")
		if err != nil {
			return err
		}
		if got != netip.MustParseAddr("10.99.0.50") {
			return fmt.Errorf("web.local is %v", got)
		}
		return nil
	})
}

// resolveMDNS asks for name's A record as a one-shot mDNS querier (RFC
// 6762 §5.1) in the namespace: one query to 224.0.0.251:5353 from an
// ephemeral port, taking the responder's unicast answer from whatever
// address it comes (dig refuses an answer from another address than it
// asked, so it cannot ask the multicast group).
func resolveMDNS(ns, name string) (netip.Addr, error) {
	var addr netip.Addr
	err := netns.Visit(ns, func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		if err != nil {
			return err
		}
		defer c.Close()
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		b, err := q.Pack()
		if err != nil {
			return err
		}
		if _, err := c.WriteTo(b, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}); err != nil {
			return fmt.Errorf("mDNS query: %w", err)
		}
		if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
			return err
		}
		buf := make([]byte, 9000)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return fmt.Errorf("no mDNS answer for %s: %w", name, err)
			}
			var m dns.Msg
			if m.Unpack(buf[:n]) != nil || m.Id != q.Id {
				continue
			}
			for _, rr := range m.Answer {
				if a, ok := rr.(*dns.A); ok && strings.EqualFold(a.Hdr.Name, dns.Fqdn(name)) {
					addr, _ = netip.AddrFromSlice(a.A.To4())
					return nil
				}
			}
		}
	})
	return addr, err
}

// wait polls cond every second until it holds, failing the test after d
// with the last error. Not faster: each poll of a guest starts a Go
// program there under TCG, CPU that clusterd's heartbeats and lease
// renewals need.
func (g *guideRun) wait(what string, d time.Duration, cond func() error) {
	g.t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || g.ctx.Err() != nil {
			g.t.Fatalf("waiting %v for %s: %v", d, what, err)
		}
		select {
		case <-g.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// logsOnFailure logs each guest's clusterd log (with resmon's, and any
// panic), without the resources' state records.
func (g *guideRun) logsOnFailure() {
	if !g.t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range g.tb.Nodes() {
		res, err := n.Run(ctx, "sh", "-c", `grep -v '"msg":"state"' /var/log/clusterd.log | tail -n 300`)
		g.t.Logf("%s: /var/log/clusterd.log (%v):\n%s", n.Name(), err, res.Stdout)
	}
}
