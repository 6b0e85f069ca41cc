package clusterdmain

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/internal/config"
	"github.com/wolfpack-ha/wolfpack/internal/core"
	"github.com/wolfpack-ha/wolfpack/quorumdisk"
	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi/iscsitest"
)

// record is one JSON log line of a clusterd process.
type record struct {
	Time    time.Time `json:"time"`
	Msg     string    `json:"msg"`
	Epoch   string    `json:"epoch"`
	Members []int     `json:"members"`
	Peer    int       `json:"peer"`
	Network string    `json:"network"`
	Reason  string    `json:"reason"`
	raw     string
}

type proc struct {
	id   int
	cmd  *exec.Cmd
	sock string

	mu      sync.Mutex
	recs    []record
	changed chan struct{}
	exited  chan struct{}
	err     error
}

func (p *proc) find(since time.Time, match func(record) bool) (record, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.recs {
		if !r.Time.Before(since) && match(r) {
			return r, true
		}
	}
	return record{}, false
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, r := range p.recs {
		b.WriteString(r.raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// wait waits for a record after since that matches.
func (p *proc) wait(t *testing.T, timeout time.Duration, since time.Time, what string, match func(record) bool) record {
	t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		if r, ok := p.find(since, match); ok {
			return r
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("node %d: no %s within %v", p.id, what, timeout)
		}
	}
}

func msgIs(msg string) func(record) bool { return func(r record) bool { return r.Msg == msg } }

func installed(members ...int) func(record) bool {
	return func(r record) bool { return r.Msg == "membership installed" && slices.Equal(r.Members, members) }
}

// TestIntegrationLoopbackCluster runs three real clusterd processes on
// 127.0.0.0/8 (two "networks", 127.0.101.x and 127.0.102.x, both bound to
// lo with SO_BINDTODEVICE) sharing a quorum LUN on a real tgtd: node 1
// forms, 2 and 3 join, node 1 (the quorum owner and leader) is killed with
// SIGKILL and the survivors install {2,3} and take the disk; node 1 comes
// back and joins; a SIGTERM stops each with ClusterExit and status 0.
func TestIntegrationLoopbackCluster(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (tgtd, SO_BINDTODEVICE)")
	}
	tg := iscsitest.Start(t, iscsitest.Options{Size: 64 << 20})
	dir := t.TempDir()
	bin := filepath.Join(dir, "clusterd")
	if out, err := exec.Command("go", "build", "-o", bin, "../../clusterd").CombinedOutput(); err != nil {
		t.Fatalf("build clusterd: %v\n%s", err, out)
	}
	ctx := context.Background()
	lun := tg.Addr(1)
	fs, err := iscsi.Open(ctx, lun, iscsi.Config{InitiatorName: "iqn.2024-01.dev.wolfpack:format"})
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := quorumdisk.NewSCSIBlocks(ctx, fs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := quorumdisk.Format(ctx, blocks, quorumdisk.FormatOptions{ClusterTag: 0x574c4650, Force: true}); err != nil {
		t.Fatal(err)
	}
	fs.Close()

	keyFile := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := 7400 + os.Getpid()%500
	var nodes []config.Node
	for id := 1; id <= 3; id++ {
		nodes = append(nodes, config.Node{ID: id, Name: fmt.Sprintf("node%d", id), Addrs: []string{fmt.Sprintf("127.0.101.%d", 10+id), fmt.Sprintf("127.0.102.%d", 10+id)}})
	}
	cfgFile := func(id int) string {
		c := config.File{
			NodeID:      id,
			Cluster:     config.Cluster{Name: "test", Tag: "574c4650", KeyFile: keyFile, Port: port},
			Nodes:       nodes,
			Networks:    []config.Network{{Name: "priv1", Interface: "lo"}, {Name: "priv2", Interface: "lo"}},
			Quorum:      config.Quorum{Device: lun, InitiatorName: fmt.Sprintf("iqn.2024-01.dev.wolfpack:node%d", id)},
			AdminSocket: filepath.Join(dir, fmt.Sprintf("node%d.sock", id)),
			StateDir:    filepath.Join(dir, fmt.Sprintf("state%d", id)),
		}
		p := filepath.Join(dir, fmt.Sprintf("node%d.toml", id))
		if err := c.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	procs := map[int]*proc{}
	var all []*proc
	start := func(id int) *proc {
		cmd := exec.Command(bin, "-config", cfgFile(id), "-log-level", "debug")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		p := &proc{id: id, cmd: cmd, sock: filepath.Join(dir, fmt.Sprintf("node%d.sock", id)),
			changed: make(chan struct{}), exited: make(chan struct{})}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			sc := bufio.NewScanner(stderr)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				r := record{raw: sc.Text()}
				_ = json.Unmarshal(sc.Bytes(), &r)
				p.mu.Lock()
				p.recs = append(p.recs, r)
				close(p.changed)
				p.changed = make(chan struct{})
				p.mu.Unlock()
			}
			p.err = cmd.Wait()
			close(p.exited)
		}()
		procs[id] = p
		all = append(all, p)
		return p
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			for _, p := range all {
				t.Logf("node %d (pid %d) log:\n%s", p.id, p.cmd.Process.Pid, p.logText())
			}
		}
	})

	t0 := time.Now()
	n1 := start(1)
	formed := n1.wait(t, 10*time.Second, t0, "formed", msgIs("formed"))
	n1.wait(t, 5*time.Second, t0, "membership {1}", installed(1))
	t.Logf("form: node 1 formed %v after its start", formed.Time.Sub(t0).Round(time.Millisecond))

	t1 := time.Now()
	n2, n3 := start(2), start(3)
	j2 := n2.wait(t, 10*time.Second, t1, "joined", msgIs("joined"))
	j3 := n3.wait(t, 10*time.Second, t1, "joined", msgIs("joined"))
	for _, p := range []*proc{n1, n2, n3} {
		p.wait(t, 5*time.Second, t1, "membership {1,2,3}", installed(1, 2, 3))
	}
	t.Logf("join: node 2 joined %v, node 3 %v after their start",
		j2.Time.Sub(t1).Round(time.Millisecond), j3.Time.Sub(t1).Round(time.Millisecond))

	st := status(t, n1.sock)
	if st.State != "up" || !slices.Equal(st.Members, []int{1, 2, 3}) || !st.QuorumOwner {
		t.Fatalf("node 1 status: %+v", st)
	}
	// Both networks carry heartbeats (status polled until every node hears
	// both peers on both, a few intervals after the joins).
	for _, p := range []*proc{n1, n2, n3} {
		var peers []int
		for id := 1; id <= 3; id++ {
			if id != p.id {
				peers = append(peers, id)
			}
		}
		waitStatus(t, p.sock, 3*time.Second, func(s clusterapi.Status) bool {
			return slices.Equal(s.Networks["priv1"].Up, peers) && slices.Equal(s.Networks["priv2"].Up, peers)
		})
	}

	// Kill the owner and leader.
	tk := time.Now()
	n1.cmd.Process.Signal(syscall.SIGKILL)
	<-n1.exited
	delete(procs, 1)
	var worst time.Duration
	for _, p := range []*proc{n2, n3} {
		s := p.wait(t, 5*time.Second, tk, "suspicion of node 1", func(r record) bool { return r.Msg == "peer suspected" && r.Peer == 1 })
		r := p.wait(t, 10*time.Second, tk, "membership {2,3}", installed(2, 3))
		t.Logf("failover: node %d suspected node 1 %v after the kill, installed {2,3} after %v",
			p.id, s.Time.Sub(tk).Round(time.Millisecond), r.Time.Sub(tk).Round(time.Millisecond))
		worst = max(worst, r.Time.Sub(tk))
	}
	t.Logf("failover: kill -9 of the owner to {2,3} on both survivors: %v", worst.Round(time.Millisecond))
	waitStatus(t, n2.sock, 3*time.Second, func(s clusterapi.Status) bool { return s.QuorumOwner })
	obs, err := iscsi.Open(ctx, lun, iscsi.Config{InitiatorName: "iqn.2024-01.dev.wolfpack:observer"})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := scsi.ReadKeys(ctx, obs)
	if err != nil {
		t.Fatal(err)
	}
	res, err := scsi.ReadReservation(ctx, obs)
	obs.Close()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(keys.Keys, core.Key(0x574c4650, 1)) || !res.Held || res.Key != core.Key(0x574c4650, 2) {
		t.Fatalf("after the failover: keys %x, reservation %+v; want node 1 fenced and node 2 holding", keys.Keys, res)
	}

	// Node 1 comes back and joins through the new leader.
	t2 := time.Now()
	n1 = start(1)
	r := n1.wait(t, 10*time.Second, t2, "joined", msgIs("joined"))
	t.Logf("rejoin: node 1 joined %v after its restart", r.Time.Sub(t2).Round(time.Millisecond))
	for _, p := range []*proc{n1, n2, n3} {
		p.wait(t, 5*time.Second, t2, "membership {1,2,3}", installed(1, 2, 3))
	}

	// Planned stop: ClusterExit, exit status 0, no regroup at the others.
	ts := time.Now()
	n3.cmd.Process.Signal(syscall.SIGTERM)
	<-n3.exited
	delete(procs, 3)
	if n3.err != nil {
		t.Fatalf("node 3 after SIGTERM: %v", n3.err)
	}
	for _, p := range []*proc{n1, n2} {
		p.wait(t, 3*time.Second, ts, "membership {1,2}", installed(1, 2))
		if r, ok := p.find(ts, msgIs("regroup started")); ok {
			t.Fatalf("node %d regrouped after a planned leave: %s", p.id, r.raw)
		}
	}
	for _, id := range []int{1, 2} {
		p := procs[id]
		p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.exited
		delete(procs, id)
		if p.err != nil {
			t.Fatalf("node %d after SIGTERM: %v\n%s", id, p.err, p.logText())
		}
	}
}

func status(t *testing.T, sock string) clusterapi.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	s, _, err := clusterapi.GetStatus(ctx, sock)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return s
}

func waitStatus(t *testing.T, sock string, timeout time.Duration, ok func(clusterapi.Status) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := status(t, sock)
		if ok(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status of %s never matched: %+v", sock, s)
		}
		time.Sleep(50 * time.Millisecond) // polling interval of a condition wait
	}
}
