package stream

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

const testTag = 0x57504b31

// testCA is one CA per test binary: key generation is cheap, but
// sharing it keeps the tests' certificates related as a cluster's are.
var (
	caOnce sync.Once
	testCA *CA
)

func clusterCA(t testing.TB) *CA {
	caOnce.Do(func() {
		ca, err := NewCA("test", 0)
		if err != nil {
			panic(err)
		}
		testCA = ca
	})
	return testCA
}

func creds(t testing.TB, ca *CA, id nodes.ID, bundle ...*CA) *Credentials {
	t.Helper()
	ident, err := ca.Issue(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(bundle) == 0 {
		bundle = []*CA{ca}
	}
	var cas []*x509.Certificate
	for _, b := range bundle {
		cas = append(cas, b.Cert)
	}
	c, err := NewCredentials(ca.Cluster, id, cas, ident)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// logBuf collects a mesh's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// line returns the first line holding every one of subs, or "".
func (l *logBuf) line(subs ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, ln := range strings.Split(l.b.String(), "\n") {
		for _, s := range subs {
			if !strings.Contains(ln, s) {
				continue next
			}
		}
		return ln
	}
	return ""
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// frame is one delivered frame.
type frame struct {
	from    nodes.ID
	typ     uint8
	payload []byte
}

// inbox records a mesh's delivered frames.
type inbox struct {
	mu     sync.Mutex
	frames []frame
	notify chan struct{}
}

func newInbox() *inbox { return &inbox{notify: make(chan struct{}, 1)} }

func (in *inbox) handle(from nodes.ID, typ uint8, p []byte) {
	in.mu.Lock()
	in.frames = append(in.frames, frame{from, typ, p})
	in.mu.Unlock()
	select {
	case in.notify <- struct{}{}:
	default:
	}
}

func (in *inbox) snapshot() []frame {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]frame(nil), in.frames...)
}

// wait polls cond until it holds or d passes.
func wait(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// node is a mesh under test with its inbox and log.
type node struct {
	*Mesh
	id  nodes.ID
	in  *inbox
	log *logBuf
	ln  net.Listener
}

// listen opens a listener on 127.0.0.1 (never another interface).
func listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startMesh starts node id on ln with peers' addresses.
func startMesh(t testing.TB, c *Credentials, ln net.Listener, peers map[nodes.ID]string, mod func(*Config)) *node {
	t.Helper()
	n := &node{id: c.Node, in: newInbox(), log: &logBuf{}, ln: ln}
	cfg := Config{
		Credentials: c,
		ClusterTag:  testTag,
		Listener:    ln,
		Peers:       peers,
		Handler:     n.in.handle,
		Logger:      slog.New(slog.NewTextHandler(n.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxBackoff:  200 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Mesh = m
	t.Cleanup(func() { m.Close() })
	return n
}

// startCluster starts meshes for nodes 1..k, each with every other as a
// peer.
func startCluster(t testing.TB, k int, mod func(*Config)) []*node {
	t.Helper()
	ca := clusterCA(t)
	lns := make([]net.Listener, k)
	addrs := map[nodes.ID]string{}
	for i := range lns {
		lns[i] = listen(t, "")
		addrs[nodes.ID(i+1)] = lns[i].Addr().String()
	}
	var out []*node
	for i := range lns {
		id := nodes.ID(i + 1)
		peers := map[nodes.ID]string{}
		for p, a := range addrs {
			if p != id {
				peers[p] = a
			}
		}
		out = append(out, startMesh(t, creds(t, ca, id), lns[i], peers, mod))
	}
	return out
}

// connect sends a frame of type 16 from every node to every other until
// each pair has one connection in use at both ends and it is the same
// connection.
func connect(t testing.TB, ns []*node) {
	t.Helper()
	ok := wait(10*time.Second, func() bool {
		all := true
		for _, a := range ns {
			for _, b := range ns {
				if a == b {
					continue
				}
				if !settled(a, b) {
					all = false
					a.Send(b.id, 16, nil)
				}
			}
		}
		if !all {
			time.Sleep(20 * time.Millisecond)
		}
		return all
	})
	if !ok {
		t.Fatalf("nodes never settled on one connection a pair")
	}
}

// settled reports whether a and b use one connection with each other and
// neither has another in set-up that could still supersede it.
func settled(a, b *node) bool {
	return a.pending.Load() == 0 && b.pending.Load() == 0 && samePair(a, b)
}

// samePair reports whether a and b use one connection with each other.
func samePair(a, b *node) bool {
	ca, cb := a.active(b.id), b.active(a.id)
	return ca != nil && cb != nil && ca.raw.LocalAddr().String() == cb.raw.RemoteAddr().String() &&
		ca.raw.RemoteAddr().String() == cb.raw.LocalAddr().String()
}

func (m *Mesh) active(id nodes.ID) *conn {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peers[id].active
}

func seqPayload(from nodes.ID, seq, size int) []byte {
	p := make([]byte, max(size, 8))
	copy(p, fmt.Sprintf("%02d%06d", from, seq))
	for i := 8; i < len(p); i++ {
		p[i] = byte(seq + i)
	}
	return p
}
