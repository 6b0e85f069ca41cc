package daemon

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/testlog"

	"github.com/wolfpack-ha/wolfpack/internal/core"
	"github.com/wolfpack-ha/wolfpack/internal/quorumio"
	"github.com/wolfpack-ha/wolfpack/internal/stream"
	"github.com/wolfpack-ha/wolfpack/quorumdisk"
	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

const testTag = 0x574c4650

var testKey = []byte("0123456789abcdef0123456789abcdef")

// syncBuffer is a log sink shared by a daemon and the test.
type syncBuffer struct{ testlog.Buffer }

// records returns the log records whose msg is msg.
func (s *syncBuffer) records(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range bytes.Split([]byte(s.String()), []byte("\n")) {
		var r map[string]any
		if json.Unmarshal(line, &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

type testNode struct {
	d      *Daemon
	cancel context.CancelCauseFunc
	done   chan error
	log    *syncBuffer
}

// testCluster runs daemons in this process over UDP on 127.0.k.(10+id),
// one address per network, and a memtarget LUN as the quorum disk.
type testCluster struct {
	t      *testing.T
	target *memtarget.Target
	nodes  []Node
	port   int
	nets   int
	run    map[regroup.NodeID]*testNode
	logs   []*syncBuffer
	// Streams: a cluster CA, each node's identity, the TCP port, and a
	// directory for the local copies of the database.
	ca         *stream.CA
	streamPort int
	dir        string
	// adminDir, when set, holds each node's admin socket, nodeN.sock.
	adminDir string
	// remoteAPI, when set, is every node's admin API on TCP.
	remoteAPI *RemoteAPI
}

func freePort(t *testing.T) int {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func newTestCluster(t *testing.T, n, nets int) *testCluster {
	t.Helper()
	c := &testCluster{
		t:      t,
		target: memtarget.New(memtarget.Config{Blocks: 16384, NoPowerOnAttention: true}),
		port:   freePort(t),
		nets:   nets,
		run:    map[regroup.NodeID]*testNode{},
		dir:    t.TempDir(),
	}
	var err error
	if c.ca, err = stream.NewCA("test", time.Hour); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.streamPort = l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx := context.Background()
	admin := c.target.Nexus("iqn.2024-01.dev.wolfpack:format")
	blocks, err := quorumdisk.NewSCSIBlocks(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := quorumdisk.Format(ctx, blocks, quorumdisk.FormatOptions{ClusterTag: testTag, Force: true}); err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= n; id++ {
		nd := Node{ID: regroup.NodeID(id), Name: fmt.Sprintf("node%d", id)}
		for k := range nets {
			nd.Addrs = append(nd.Addrs, netip.AddrFrom4([4]byte{127, 0, byte(100 + k), byte(10 + id)}))
		}
		c.nodes = append(c.nodes, nd)
	}
	t.Cleanup(func() {
		for id := range c.run {
			c.crash(id)
		}
		for i, l := range c.logs {
			checkLogKeys(t, fmt.Sprintf("daemon log %d", i+1), l.String())
		}
		if t.Failed() {
			for _, l := range c.logs {
				t.Logf("log:\n%s", l)
			}
		}
	})
	return c
}

func (c *testCluster) start(id regroup.NodeID) *testNode { return c.startWithKey(id, testKey) }

func (c *testCluster) startWithKey(id regroup.NodeID, key []byte) *testNode {
	c.t.Helper()
	lb := &syncBuffer{}
	c.logs = append(c.logs, lb)
	var nets []Network
	for k := range c.nets {
		nets = append(nets, Network{Name: fmt.Sprintf("priv%d", k+1)})
	}
	ident, err := c.ca.Issue(id, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	creds, err := stream.NewCredentials("test", id, []*x509.Certificate{c.ca.Cert}, ident)
	if err != nil {
		c.t.Fatal(err)
	}
	peers := map[regroup.NodeID]string{}
	for _, nd := range c.nodes {
		if nd.ID != id {
			peers[nd.ID] = netip.AddrPortFrom(nd.Addrs[0], uint16(c.streamPort)).String()
		}
	}
	var sock string
	if c.adminDir != "" {
		sock = filepath.Join(c.adminDir, fmt.Sprintf("node%d.sock", id))
	}
	d, err := New(Config{
		AdminSocket: sock, RemoteAPI: c.remoteAPI,
		ClusterTag: testTag, Key: key, Self: id, Nodes: c.nodes, Networks: nets, Port: c.port,
		Credentials: creds, StreamPeers: peers, DBPath: filepath.Join(c.dir, fmt.Sprintf("node%d.db", id)),
		StreamListen: netip.AddrPortFrom(c.nodes[id-1].Addrs[0], uint16(c.streamPort)).String(),
		Device:       c.target.Nexus(fmt.Sprintf("iqn.2024-01.dev.wolfpack:node%d", id)),
		Logger:       slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", int(id)),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	tn := &testNode{d: d, cancel: cancel, done: make(chan error, 1), log: lb}
	go func() { tn.done <- d.Run(ctx) }()
	c.run[id] = tn
	return tn
}

// crash stops id without ClusterExit.
func (c *testCluster) crash(id regroup.NodeID) error {
	tn := c.run[id]
	delete(c.run, id)
	tn.cancel(ErrAbandon)
	return <-tn.done
}

// stop is the planned stop (SIGTERM).
func (c *testCluster) stop(id regroup.NodeID) error {
	tn := c.run[id]
	delete(c.run, id)
	tn.cancel(nil)
	return <-tn.done
}

func (c *testCluster) status(id regroup.NodeID) (Status, bool) {
	tn, ok := c.run[id]
	if !ok {
		return Status{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := tn.d.Status(ctx)
	return s, err == nil
}

// waitMembers waits until every listed node is up, stabilised, registered,
// and has exactly members; it returns how long that took.
func (c *testCluster) waitMembers(timeout time.Duration, members []int, nodes ...regroup.NodeID) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		ok := true
		for _, id := range nodes {
			s, up := c.status(id)
			if !up || s.State != "up" || s.Stage != "stabilized" || !s.Registered || !slices.Equal(s.Members, members) {
				ok = false
				break
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			for _, id := range nodes {
				s, _ := c.status(id)
				c.t.Logf("node %d: %+v", id, s)
			}
			c.t.Fatalf("nodes %v did not all install members %v within %v", nodes, members, timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition wait
	}
}

func TestFormJoinCrashLeave(t *testing.T) {
	c := newTestCluster(t, 3, 2)
	n1 := c.start(1)
	formed := c.waitMembers(5*time.Second, []int{1}, 1)
	t.Logf("node 1 formed in %v", formed)
	if len(n1.log.records("formed")) != 1 {
		t.Fatalf("no \"formed\" record")
	}
	s, _ := c.status(1)
	if !s.QuorumOwner {
		t.Fatalf("the former is not the quorum owner: %+v", s)
	}
	c.start(2)
	c.start(3)
	joined := c.waitMembers(5*time.Second, []int{1, 2, 3}, 1, 2, 3)
	t.Logf("nodes 2 and 3 joined in %v", joined)
	for _, id := range []regroup.NodeID{2, 3} {
		if len(c.run[id].log.records("joined")) != 1 {
			t.Fatalf("node %d: no \"joined\" record", id)
		}
	}
	// Both networks carry heartbeats from both peers.
	s, _ = c.status(1)
	for name, ns := range s.Networks {
		if !slices.Equal(ns.Up, []int{2, 3}) {
			t.Fatalf("network %s hears %v, want [2 3]", name, ns.Up)
		}
	}

	// Crash node 3: the others suspect it, regroup and fence it.
	if err := c.crash(3); !errors.Is(err, ErrAbandon) {
		t.Fatalf("crash: %v", err)
	}
	failover := c.waitMembers(5*time.Second, []int{1, 2}, 1, 2)
	t.Logf("crash to new membership: %v", failover)
	if len(c.run[2].log.records("peer suspected")) == 0 || len(c.run[2].log.records("regroup started")) == 0 {
		t.Fatalf("node 2 logged no suspicion or regroup")
	}
	keys, err := scsi.ReadKeys(context.Background(), c.target.Nexus("observer"))
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(keys.Keys, core.Key(testTag, 3)) {
		t.Fatalf("node 3's key survived the regroup: %x", keys.Keys)
	}

	// Node 3 comes back and joins; then node 2 leaves (ClusterExit): no
	// regroup follows.
	c.start(3)
	c.waitMembers(5*time.Second, []int{1, 2, 3}, 1, 2, 3)
	before, _ := c.status(1)
	if err := c.stop(2); err != nil {
		t.Fatalf("planned stop: %v", err)
	}
	c.waitMembers(3*time.Second, []int{1, 3}, 1, 3)
	after, _ := c.status(1)
	if after.Counters.Regroups != before.Counters.Regroups {
		t.Fatalf("a leave caused a regroup (%d -> %d)", before.Counters.Regroups, after.Counters.Regroups)
	}
	keys, _ = scsi.ReadKeys(context.Background(), c.target.Nexus("observer"))
	if slices.Contains(keys.Keys, core.Key(testTag, 2)) {
		t.Fatalf("node 2's key is still registered after it left: %x", keys.Keys)
	}
}

// A member whose key is removed finds it at its next quorum check and
// halts (self-fence: docs/design.md, "Quorum arbitration").
func TestFencedMemberHalts(t *testing.T) {
	c := newTestCluster(t, 2, 1)
	c.start(1)
	c.waitMembers(5*time.Second, []int{1}, 1)
	n2 := c.start(2)
	c.waitMembers(5*time.Second, []int{1, 2}, 1, 2)
	ctx := context.Background()
	// The intruder stands for another partition's winner. The owner's
	// quorum check removes a stranger's key (that is its defence), so the
	// intruder registers and preempts again if its key was removed between
	// the two commands.
	intruder := c.target.Nexus("intruder")
	for attempt := 1; ; attempt++ {
		if err := scsi.RegisterAndIgnore(ctx, intruder, 0x99); err != nil {
			t.Fatal(err)
		}
		err := scsi.Preempt(ctx, intruder, 0x99, core.Key(testTag, 2), quorumio.ReservationType)
		if err == nil {
			break
		}
		if !errors.Is(err, scsi.ErrReservationConflict) || attempt == 10 {
			t.Fatal(err)
		}
	}
	select {
	case err := <-n2.done:
		delete(c.run, 2)
		var he *HaltError
		if !errors.As(err, &he) || he.ExitCode() != ExitHalt {
			t.Fatalf("node 2 ended with %v, want a halt", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fenced node 2 did not halt")
	}
	if len(n2.log.records("lost quorum")) != 1 || len(n2.log.records("halt")) != 1 {
		t.Fatalf("no \"lost quorum\" and \"halt\" records")
	}
	c.waitMembers(5*time.Second, []int{1}, 1)
}

// A node holding another cluster secret hears only datagrams that fail
// authentication; it stops with a fatal reason naming the secret before it
// tries to form, and the cluster does not change.
func TestWrongSecretRefused(t *testing.T) {
	c := newTestCluster(t, 2, 2)
	c.start(1)
	c.waitMembers(5*time.Second, []int{1}, 1)
	n2 := c.startWithKey(2, []byte("another secret, another cluster!"))
	select {
	case err := <-n2.done:
		delete(c.run, 2)
		if !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), "secret") {
			t.Fatalf("node 2 ended with %v, want a join refusal naming the secret", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("node 2 with a wrong secret did not stop")
	}
	if len(n2.log.records("arbitration started")) != 0 {
		t.Fatalf("node 2 went for the disk")
	}
	c.waitMembers(time.Second, []int{1}, 1)
	if s, _ := c.status(1); s.Counters.HeartbeatDropped["bad MAC"] == 0 {
		t.Fatalf("node 1 counted no bad MAC: %+v", s.Counters)
	}
}

func TestReplayWindow(t *testing.T) {
	var w replayWindow
	const n, d, o = replayNew, replayDuplicate, replayOld
	steps := []struct {
		inc, seq uint64
		want     int
	}{
		{5, 1, n}, {5, 1, d}, {5, 3, n}, {5, 2, n}, {5, 2, d},
		{5, 100, n}, {5, 37, n}, {5, 37, d}, {5, 36, o}, // 36 is 64 behind: outside the window
		{4, 200, o}, // older incarnation
		{6, 1, n}, {6, 1, d},
	}
	for i, s := range steps {
		if got := w.accept(s.inc, s.seq); got != s.want {
			t.Fatalf("step %d: accept(%d, %d) = %v, want %v", i, s.inc, s.seq, got, s.want)
		}
	}
}
