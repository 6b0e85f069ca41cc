package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/testbed"
	"github.com/wolfpack-ha/wolfpack/testbed/agent"
)

// The virtual server every scenario watches.
const (
	group      = "vs"
	vsName     = "vs.local"
	echoPort   = 7777
	mountPoint = "/mnt/data"
	// writerLBA is the data LUN's last 512-byte block: the host makes the
	// filesystem on the first dataFSSize bytes only, so the writers'
	// block lies outside it.
	dataLUNSize = 64 << 20
	dataFSSize  = 60 << 20
	writerLBA   = dataLUNSize/512 - 1
	socket      = "/run/wolfpack/clusterd.sock"
)

// The TCG timings: slower than the appliance testbed's (heartbeat
// threshold 20, a 1 s lease; docs/appliance.md): with the host's two
// cores shared by other guests, 1 s leases expired on slow disk beats
// and took the resources down with no fault at all (docs/testbed.md).
const (
	heartbeatThreshold = 30
	lease              = 3 * time.Second
)

// vip is the virtual server's address on the public network.
var vip = netip.MustParseAddr("10.99.0.50")

// cluster is a running Wolfpack cluster on the testbed: the appliance on
// every guest, its init running clusterd, the virtual server online, a
// writer on the data LUN on every guest. bringUp makes one.
type cluster struct {
	tb   *testbed.Testbed
	log  *slog.Logger
	n    int
	data string // the data LUN's /dev/disk/by-id link, the same on every guest

	mu     sync.Mutex
	broken bool // a scenario failed: rebuild before the next
}

// bins are the host binaries the guests get beside the appliance's,
// built once.
var (
	binsOnce sync.Once
	bins     []string
	binsErr  error
)

func buildBins(ctx context.Context) ([]string, error) {
	binsOnce.Do(func() {
		for _, pkg := range []string{"./testbed/matrix/internal/lunwriter", "./testbed/probe/echo"} {
			b, err := testbed.BuildGo(ctx, pkg)
			if err != nil {
				binsErr = err
				return
			}
			bins = append(bins, b)
		}
		// The echo server as probe-echo (/bin/echo would shadow the
		// appliance's echo), beside it in the build cache, renamed into place.
		echo := bins[len(bins)-1]
		dst := filepath.Join(filepath.Dir(echo), "probe-echo")
		b, err := os.ReadFile(echo)
		if err == nil {
			tmp := fmt.Sprintf("%s.%d", dst, os.Getpid())
			if err = os.WriteFile(tmp, b, 0o755); err == nil {
				err = os.Rename(tmp, dst)
			}
		}
		if err != nil {
			binsErr = fmt.Errorf("copy the echo server: %w", err)
			return
		}
		bins[len(bins)-1] = dst
	})
	return bins, binsErr
}

// bringUp boots nodes guests from the appliance and waits for them to
// form cluster mx from their config disks (the testbed's appliance mode:
// cluster create and join run on the host, no step inside the guests);
// then it creates the virtual server's group on node1 and starts the
// writers. The testbed: a public and two private networks, the quorum
// LUN, the data LUN with ext4 on its first 60 MiB.
func bringUp(ctx context.Context, log *slog.Logger, nodes int) (*cluster, error) {
	b, err := buildBins(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wpmx")
	if err != nil {
		return nil, err
	}
	tb, err := testbed.Start(ctx, testbed.Config{Nodes: nodes, PrivateNets: 2, Binaries: b,
		DataLUNSize: dataLUNSize, WorkDir: dir, Logger: log,
		Appliance: &testbed.Appliance{Cluster: "mx", HeartbeatThreshold: heartbeatThreshold, Lease: lease}})
	if err != nil {
		if tb != nil {
			return nil, fmt.Errorf("%w\n%s", err, consoles(tb))
		}
		return nil, err
	}
	c := &cluster{tb: tb, log: log, n: nodes}
	fail := func(err error) (*cluster, error) {
		err = fmt.Errorf("bring up %d nodes: %w\n%s", nodes, err, c.logs(context.Background()))
		c.close()
		return nil, err
	}
	if c.data, err = tb.GuestDataDisk(ctx); err != nil {
		return fail(err)
	}
	// The filesystem covers the first 60 MiB: the writers' block is past
	// it. No node mounts it before the group exists.
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-F", "-q", "-b", "1024", tb.DataLUNPath(), fmt.Sprint(dataFSSize/1024)).CombinedOutput(); err != nil {
		return fail(fmt.Errorf("mkfs.ext4 on the data LUN: %w: %s", err, out))
	}
	if _, err := tb.Client().Run(ctx, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0"); err != nil {
		return fail(err)
	}
	for i := 1; i <= nodes; i++ {
		if err := c.setUpNode(ctx, i); err != nil {
			return fail(err)
		}
	}
	if err := c.waitMembers(ctx, 180*time.Second); err != nil {
		return fail(err)
	}
	var pref []string
	for i := 1; i <= nodes; i++ {
		pref = append(pref, fmt.Sprintf("node%d", i))
	}
	for _, cmd := range [][]string{
		{"group", "create", group, "--preferred", strings.Join(pref, ","), "failover_threshold=1000"},
		{"resource", "create", "vs-ip", "--group", group, "--type", "ip_address", "address=" + vip.String(), "prefix_len=24",
			"interface=eth0", "looks_alive_ms=500"},
		{"resource", "create", "vs-name", "--group", group, "--type", "network_name", "name=vs", "mode=mdns", "--depends-on", "vs-ip"},
		{"resource", "create", "vs-disk", "--group", group, "--type", "physical_disk", "device=" + c.data,
			"mount_point=" + mountPoint, "mount_options=noatime", "looks_alive_ms=1000", "is_alive_ms=5000"},
		{"resource", "create", "vs-app", "--group", group, "--type", "generic_application",
			fmt.Sprintf("command=probe-echo -listen 0.0.0.0:%d -hostname", echoPort),
			"--depends-on", "vs-ip,vs-disk", "looks_alive_ms=500", "stop_timeout_ms=2000", "restart_threshold=2"},
	} {
		if _, err := c.cli(ctx, 1, cmd...); err != nil {
			return fail(err)
		}
	}
	if err := c.waitGroup(ctx, 1, 120*time.Second); err != nil {
		return fail(err)
	}
	return c, nil
}

// setUpNode starts node i's writer on the data LUN, through the agent:
// the mount point and the writer are the test's, not the appliance's.
func (c *cluster) setUpNode(ctx context.Context, i int) error {
	if _, err := c.sh(ctx, i, "mkdir -p "+mountPoint); err != nil {
		return err
	}
	_, err := c.tb.Node(i).Do(ctx, agent.Request{Argv: []string{"lunwriter", "-device", c.data, "-lba", fmt.Sprint(writerLBA),
		"-node", fmt.Sprint(i), "-mount", mountPoint, "-every", "50ms"}, Background: true, LogPath: "/var/log/lunwriter.log"})
	if err != nil {
		return fmt.Errorf("node%d: start the writer: %w", i, err)
	}
	return nil
}

// waitUp waits until node i's clusterd is up: the appliance's init
// starts it again after it died or halted (docs/appliance.md), as the
// systemd unit's Restart=on-failure does.
func (c *cluster) waitUp(ctx context.Context, i int, d time.Duration) error {
	return poll(ctx, fmt.Sprintf("node%d up", i), d, func() error {
		st, err := c.status(ctx, i)
		if err != nil {
			return err
		}
		if st.State != "up" {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
}

// killComm sends SIGKILL to every process of node i named comm (whose
// parent is ppid, if not 0).
func (c *cluster) killComm(ctx context.Context, i int, comm string, ppid int) (string, error) {
	procs, err := c.tb.Node(i).Procs(ctx)
	if err != nil {
		return "", err
	}
	var pids []string
	for _, p := range procs {
		if p.Comm == comm && (ppid == 0 || p.PPid == ppid) && p.State != "Z" {
			pids = append(pids, fmt.Sprint(p.Pid))
		}
	}
	if len(pids) == 0 {
		return "", fmt.Errorf("node%d: no process %s to kill", i, comm)
	}
	_, err = c.run(ctx, i, append([]string{"kill", "-9"}, pids...)...)
	return strings.Join(pids, " "), err
}

// clusterdPid is the pid of the clusterd that node i's init runs (a
// child of PID 1, not a zombie); 0 if none runs or the guest does not
// answer within 10 s (frozen).
func (c *cluster) clusterdPid(ctx context.Context, i int) int {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	procs, err := c.tb.Node(i).Procs(ctx)
	if err != nil {
		if !errors.Is(err, testbed.ErrNodeDown) {
			c.log.Warn("clusterd's pid", "node", i, "err", err)
		}
		return 0
	}
	for _, p := range procs {
		if p.Comm == "clusterd" && p.PPid == 1 && p.State != "Z" {
			return p.Pid
		}
	}
	return 0
}

// clusterdAlive reports whether node i runs clusterd.
func (c *cluster) clusterdAlive(ctx context.Context, i int) bool {
	return c.clusterdPid(ctx, i) != 0
}

// waitClusterdExit waits until node i's clusterd pid has exited (init
// may have started another since) and returns the end of its log.
func (c *cluster) waitClusterdExit(ctx context.Context, i, pid int, d time.Duration) (string, error) {
	err := poll(ctx, fmt.Sprintf("node%d's clusterd %d to exit", i, pid), d, func() error {
		if p := c.clusterdPid(ctx, i); p == pid {
			return errors.New("still running")
		}
		return nil
	})
	res, _ := c.sh(ctx, i, `grep -v '"msg":"state"' /var/log/clusterd.log | grep -v '^clusterd: ' | tail -n 5`)
	return string(res.Stdout), err
}

// signalClusterd sends sig to node i's clusterd and returns its pid.
func (c *cluster) signalClusterd(ctx context.Context, i int, sig syscall.Signal) (int, error) {
	pid := c.clusterdPid(ctx, i)
	if pid == 0 {
		return 0, fmt.Errorf("node%d runs no clusterd", i)
	}
	_, err := c.run(ctx, i, "kill", fmt.Sprintf("-%d", int(sig)), fmt.Sprint(pid)) // the appliance's kill takes numbers
	return pid, err
}

// powerButton presses node i's power button and waits up to d for the
// VM to power itself off; it returns the shutdown's records from the
// console: init's and clusterd's last words.
func (c *cluster) powerButton(ctx context.Context, i int, d time.Duration) (string, error) {
	n := c.tb.Node(i)
	if err := n.PressPowerButton(); err != nil {
		return "", err
	}
	pressed := time.Now()
	var out strings.Builder
	select {
	case <-n.Exited():
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(d):
		return n.ConsoleTail(40), fmt.Errorf("node%d still runs %v after its power button was pressed", i, d)
	}
	off := time.Since(pressed).Round(time.Millisecond)
	found := false
	for l := range strings.Lines(n.ConsoleTail(200)) {
		if strings.Contains(l, "shutdown requested") {
			out.Reset()
			found = true
		}
		if found && !strings.Contains(l, `"msg":"state"`) {
			out.WriteString("\t" + l)
		}
	}
	fmt.Fprintf(&out, "\tpowered off %v after the press\n", off)
	if !found {
		return out.String(), fmt.Errorf("node%d powered off, but its console shows no shutdown by init:\n%s", i, n.ConsoleTail(40))
	}
	return out.String(), nil
}

// reboot powers node i on again after Kill or a power-off: the appliance boots, its
// init joins the cluster from the config disk; the writer is started
// again, and reboot waits until clusterd is up.
func (c *cluster) reboot(ctx context.Context, i int) error {
	if err := c.tb.Node(i).Reboot(ctx); err != nil {
		return err
	}
	if err := c.setUpNode(ctx, i); err != nil {
		return err
	}
	return c.waitUp(ctx, i, 180*time.Second)
}

// run runs argv on node i; an error carries its output.
func (c *cluster) run(ctx context.Context, i int, argv ...string) (testbed.Result, error) {
	res, err := c.tb.Node(i).Run(ctx, argv...)
	if err != nil {
		var ee *testbed.ExitError
		if errors.As(err, &ee) {
			return res, fmt.Errorf("node%d: %w (stdout: %s)", i, err, strings.TrimSpace(string(res.Stdout)))
		}
		return res, fmt.Errorf("node%d: %w", i, err)
	}
	return res, nil
}

func (c *cluster) sh(ctx context.Context, i int, script string) (testbed.Result, error) {
	return c.run(ctx, i, "/bin/sh", "-c", script) // the appliance's gosh: called as "sh", its multi-call binary would not know it
}

// cli runs the cluster command on node i against its clusterd.
func (c *cluster) cli(ctx context.Context, i int, args ...string) (testbed.Result, error) {
	return c.run(ctx, i, append(append([]string{"cluster"}, args...), "--socket", socket)...)
}

func (c *cluster) status(ctx context.Context, i int) (clusterapi.Status, error) {
	var st clusterapi.Status
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	res, err := c.run(ctx, i, "cluster", "status", "--socket", socket, "--json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(res.Stdout, &st)
}

// object reads an object through node i.
func (c *cluster) object(ctx context.Context, i int, kind, name string) (clusterapi.Object, error) {
	var o clusterapi.Object
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := c.cli(ctx, i, kind, "show", name, "--json")
	if err != nil {
		return o, err
	}
	return o, json.Unmarshal(res.Stdout, &o)
}

// owner reads the group's owner (its node index, 0: none) and state
// through node i.
func (c *cluster) owner(ctx context.Context, i int) (int, string, error) {
	o, err := c.object(ctx, i, "group", group)
	if err != nil {
		return 0, "", err
	}
	owner, _ := o.Props["owner"].(string)
	state, _ := o.Props["state"].(string)
	var k int
	fmt.Sscanf(owner, "node%d", &k)
	return k, state, nil
}

// waitGroup waits until the group is online on node want (0: any) and
// returns its owner.
func (c *cluster) waitGroup(ctx context.Context, want int, d time.Duration) error {
	_, err := c.waitOnline(ctx, want, d)
	return err
}

func (c *cluster) waitOnline(ctx context.Context, want int, d time.Duration) (int, error) {
	var got int
	err := poll(ctx, fmt.Sprintf("group %s online on node%d", group, want), d, func() error {
		var errs []error
		for i := 1; i <= c.n; i++ { // through any node that answers
			if !c.clusterdAlive(ctx, i) {
				continue
			}
			owner, state, err := c.owner(ctx, i)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if state != "online" || want != 0 && owner != want {
				return fmt.Errorf("owner node%d, state %s", owner, state)
			}
			got = owner
			return nil
		}
		return errors.Join(append(errs, errors.New("no node answers"))...)
	})
	return got, err
}

// waitMembers waits until every node's clusterd is up with every node a
// member and a node object for each.
func (c *cluster) waitMembers(ctx context.Context, d time.Duration) error {
	return poll(ctx, "every node a member", d, func() error {
		for i := 1; i <= c.n; i++ {
			st, err := c.status(ctx, i)
			if err != nil {
				return err
			}
			if st.State != "up" || len(st.Members) != c.n {
				return fmt.Errorf("node%d: state %s, members %v", i, st.State, st.Members)
			}
		}
		res, err := c.cli(ctx, 1, "node", "list", "--json")
		if err != nil {
			return err
		}
		var objs []clusterapi.Object
		if err := json.Unmarshal(res.Stdout, &objs); err != nil {
			return err
		}
		if len(objs) != c.n {
			return fmt.Errorf("%d node objects", len(objs))
		}
		return nil
	})
}

// healthy reports whether every node runs clusterd as a member and the
// group is online with the client answered: what a scenario starts from.
func (c *cluster) healthy(ctx context.Context) error {
	c.mu.Lock()
	broken := c.broken
	c.mu.Unlock()
	if broken {
		return errors.New("a scenario left it broken")
	}
	for i := 1; i <= c.n; i++ {
		if !c.clusterdAlive(ctx, i) {
			return fmt.Errorf("node%d runs no clusterd", i)
		}
	}
	if err := c.waitMembers(ctx, 30*time.Second); err != nil {
		return err
	}
	return c.waitGroup(ctx, 0, 60*time.Second)
}

// logs is every guest's clusterd log (without the resources' state
// records) and the writer's, and the consoles, for a failure.
func (c *cluster) logs(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var b strings.Builder
	for i := 1; i <= c.n; i++ {
		res, err := c.sh(ctx, i, `grep -v '"msg":"state"' /var/log/clusterd.log | tail -n 150; echo; tail -n 20 /var/log/lunwriter.log`)
		fmt.Fprintf(&b, "node%d: clusterd and writer logs (%v):\n%s\n", i, err, res.Stdout)
	}
	b.WriteString(consoles(c.tb))
	return b.String()
}

func consoles(tb *testbed.Testbed) string {
	var b strings.Builder
	for _, n := range tb.Nodes() {
		fmt.Fprintf(&b, "console of %s:\n%s\n", n.Name(), n.ConsoleTail(20))
	}
	return b.String()
}

func (c *cluster) close() error {
	err := c.tb.Close()
	os.RemoveAll(c.tb.WorkDir())
	return err
}

// poll calls f every second until it returns nil, for at most d; then
// the last error. Not faster: each call runs programs in the guests,
// CPU that their clusterd's heartbeats need.
func poll(ctx context.Context, what string, d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("waiting %v for %s: %w", d, what, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// The shared cluster: booted by the first scenario that needs it, kept
// for the next, rebuilt when a scenario left it unhealthy or needs
// another number of nodes, closed by TestMain.
var (
	sharedMu sync.Mutex
	shared   *cluster
)

// get returns a healthy cluster of nodes guests, skipping t where the
// testbed cannot run.
func get(t *testing.T, nodes int) *cluster {
	t.Helper()
	testbed.Require(t)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	if shared != nil && shared.n == nodes {
		err := shared.healthy(ctx)
		if err == nil {
			return shared
		}
		t.Logf("the shared cluster is unhealthy, rebuilding it: %v", err)
	}
	if shared != nil {
		if err := shared.close(); err != nil {
			t.Logf("close the cluster: %v", err)
		}
		shared = nil
	}
	t0 := time.Now()
	c, err := bringUp(ctx, rigLogger(), nodes)
	if err != nil {
		t.Fatal(err)
	}
	shared = c
	t.Logf("cluster of %d nodes up in %v", nodes, time.Since(t0).Round(time.Millisecond))
	return c
}

func closeShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.close()
		shared = nil
	}
}

// rigLogger is the shared cluster's logger: stderr, not a test's output,
// as the cluster outlives the test that booted it.
func rigLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// clusterdPids is every node's clusterd pid (0: none), node1's first.
func (c *cluster) clusterdPids(ctx context.Context) []int {
	pids := make([]int, c.n)
	for i := range pids {
		pids[i] = c.clusterdPid(ctx, i+1)
	}
	return pids
}
