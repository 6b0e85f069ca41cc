package ocf

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/nstest"
	"github.com/wolfpack-ha/wolfpack/internal/resmon/resmontest"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// Debian's agents and the test's own through the real resmon, in a node
// namespace with a client beside it: Dummy and IPaddr2 online, monitored,
// offline; a Dummy whose state file goes fails (soft); IPaddr2 moves the
// client's neighbour entry with its gratuitous ARP; a bad address is a
// fatal failure (validate-all: 6), an agent whose start exits 2 or an
// agent not installed a hard one; a start that hangs is killed at the
// advertised timeout with its child.
func TestIntegrationOCFAgents(t *testing.T) {
	requireAgents(t)
	began := time.Now()
	rig := nstest.New(t)
	node := rig.Node("n", "10.77.0.1/24")
	cl := rig.Node("cl", "10.77.0.100/24")
	root, dir := testRoot(t), t.TempDir()
	p := resmontest.Start(t, "ip", "netns", "exec", node.Name, resmontest.Build(t), "-state-dir", dir+"/resmon",
		"-ocf-root", root, "-log-level", "debug")
	if err := p.LeaseFor(time.Hour); err != nil {
		t.Fatal(err)
	}
	send := func(c resources.Command) {
		t.Helper()
		if err := p.Send(c); err != nil {
			t.Fatal(err)
		}
	}
	online := func(name, agent string, params map[string]db.Value) {
		t.Helper()
		send(resources.Command{Op: resources.CmdOnline, Resource: name, Type: "ocf", Props: typeProps(t, root, agent, params),
			LooksAliveMs: 200, IsAliveMs: 1000, PendingTimeoutMs: 60000})
	}
	expect := func(name string, s resources.State, reason string) resources.Status {
		t.Helper()
		return resmontest.Expect(t, p, name, s, reason)
	}
	failed := func(name string, class resources.FailureClass, reason string) {
		t.Helper()
		st := expect(name, resources.Failed, reason)
		if st.Class != class {
			t.Fatalf("%s failed with class %v (%s), want %v", name, st.Class, st.Reason, class)
		}
		t.Logf("%s: failed, %v: %s", name, st.Class, st.Reason)
	}
	offline := func(name string) {
		t.Helper()
		send(resources.Command{Op: resources.CmdOffline, Resource: name})
		expect(name, resources.OfflinePending, "")
		expect(name, resources.Offline, "")
	}

	// Dummy: online, its environment as Pacemaker gives it; the state
	// file removed behind its back: the monitor's 7 is a soft failure.
	state, envFile := dir+"/d1.state", dir+"/d1.env"
	dummy := map[string]db.Value{"state": db.StringValue(state), "envfile": db.StringValue(envFile)}
	online("d1", "pacemaker:Dummy", dummy)
	expect("d1", resources.OnlinePending, "")
	expect("d1", resources.Online, "")
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("Dummy online but no state file: %v", err)
	}
	env, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"OCF_ROOT=" + root, "OCF_RA_VERSION_MAJOR=1", "OCF_RA_VERSION_MINOR=1", "OCF_RESOURCE_INSTANCE=d1",
		"OCF_RESOURCE_TYPE=Dummy", "OCF_RESOURCE_PROVIDER=pacemaker", "OCF_RESKEY_state=" + state, "OCF_RESKEY_CRM_meta_timeout=20000",
		"OCF_RESKEY_CRM_meta_interval=10000", "OCF_RESKEY_CRM_meta_on_node=n1", "OCF_EXIT_REASON_PREFIX=ocf-exit-reason:"} {
		if !strings.Contains(string(env), v+"\n") {
			t.Errorf("the agent's environment lacks %s:\n%s", v, env)
		}
	}
	removed := time.Now()
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	failed("d1", resources.FailSoft, "looks-alive failed: monitor: exit 7 (OCF_NOT_RUNNING)")
	t.Logf("state file removed -> failed in %v", time.Since(removed))
	online("d1", "pacemaker:Dummy", dummy)
	expect("d1", resources.OnlinePending, "")
	expect("d1", resources.Online, "")
	offline("d1")
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Dummy offline, its state file: %v", err)
	}

	// IPaddr2: the client's neighbour entry for the address (a stale one
	// to another MAC: Linux updates an entry from a gratuitous ARP but
	// creates none) follows it to the node.
	const vip = "10.77.0.50"
	if err := nstest.IPBatch(cl.Name, "neigh replace "+vip+" lladdr 02:00:00:00:00:99 dev eth0 nud stale"); err != nil {
		t.Fatal(err)
	}
	online("vip", "heartbeat:IPaddr2", map[string]db.Value{"ip": db.StringValue(vip), "cidr_netmask": db.StringValue("24"), "nic": db.StringValue("eth0")})
	expect("vip", resources.OnlinePending, "")
	expect("vip", resources.Online, "")
	if !hasAddr(t, node, vip) {
		t.Fatal("IPaddr2 online but the address is not on eth0")
	}
	mac := node.MAC().String()
	if err := nstest.WaitFor(t.Context(), 3*time.Second, func() (bool, error) {
		out, err := cl.Run(t.Context(), "ip", "neigh", "show", vip, "dev", "eth0")
		return strings.Contains(string(out), "lladdr "+mac), err
	}); err != nil {
		out, _ := cl.Run(t.Context(), "ip", "neigh", "show", vip)
		t.Fatalf("the client's neighbour entry did not follow the address to %s: %v: %s", mac, err, out)
	}
	if err := cl.Do(func() error {
		c, err := net.DialTimeout("tcp", vip+":9", time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil // the node's kernel answered
		}
		return err
	}); err != nil {
		t.Fatalf("the client cannot reach the address: %v", err)
	}
	offline("vip")
	if hasAddr(t, node, vip) {
		t.Fatal("IPaddr2 offline but the address is still on eth0")
	}

	// Failure classes: a bad address (validate-all exits 6) is fatal;
	// an agent whose start exits 2, or one not installed here, is hard.
	online("badip", "heartbeat:IPaddr2", map[string]db.Value{"ip": db.StringValue("10.77.0.300")})
	expect("badip", resources.OnlinePending, "")
	failed("badip", resources.FailFatal, "validate-all: exit 6 (OCF_ERR_CONFIGURED)")
	online("args", "wolfpack-test:fail", map[string]db.Value{"rc": db.IntValue(2)})
	expect("args", resources.OnlinePending, "")
	failed("args", resources.FailHard, "start: exit 2 (OCF_ERR_ARGS): start refused on purpose")
	online("generic", "wolfpack-test:fail", map[string]db.Value{"rc": db.IntValue(1)})
	expect("generic", resources.OnlinePending, "")
	failed("generic", resources.FailSoft, "start: exit 1 (OCF_ERR_GENERIC): start refused on purpose")
	props := typeProps(t, root, "wolfpack-test:fail", nil)
	props[resources.PropResourceTypePrefix+"ocf_agent"] = db.StringValue("wolfpack-test:nope")
	send(resources.Command{Op: resources.CmdOnline, Resource: "nope", Type: "ocf", Props: props, LooksAliveMs: 200, IsAliveMs: 1000, PendingTimeoutMs: 5000})
	failed("nope", resources.FailHard, "ocf:wolfpack-test:nope is not installed on this node")

	// A start that hangs (advertised timeout 1 s) is killed with its
	// child.
	pids := dir + "/hang.pids"
	startedAt := time.Now()
	online("hang", "wolfpack-test:hang", map[string]db.Value{"pids": db.StringValue(pids)})
	expect("hang", resources.OnlinePending, "")
	failed("hang", resources.FailSoft, "start: timed out after 1s, its process group killed")
	if took := time.Since(startedAt); took < time.Second || took > 5*time.Second {
		t.Fatalf("a hung start failed after %v; want just after its 1 s timeout", took)
	}
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		if err := nstest.WaitFor(t.Context(), time.Second, func() (bool, error) { return !alive(pid), nil }); err != nil {
			t.Fatalf("process %d of the hung start still runs", pid)
		}
	}
	t.Logf("TestIntegrationOCFAgents: %v", time.Since(began))
}

func hasAddr(t *testing.T, ns *nstest.NS, addr string) bool {
	t.Helper()
	out, err := ns.Run(t.Context(), "ip", "-4", "addr", "show", "dev", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(out), " "+addr+"/")
}

// alive says whether pid is a process that is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// A resmon killed with SIGKILL leaves Dummy running (its state file): an
// OCF resource outlives resmon. The next resmon, before its hello,
// terminates what its predecessor recorded: Dummy's stop runs and the
// state file goes; the record goes with it.
func TestIntegrationOCFOrphanAfterResmonCrash(t *testing.T) {
	requireAgents(t)
	root, dir := testRoot(t), t.TempDir()
	bin := resmontest.Build(t)
	p := resmontest.Start(t, bin, "-state-dir", dir+"/resmon", "-ocf-root", root)
	if err := p.LeaseFor(time.Hour); err != nil {
		t.Fatal(err)
	}
	state := dir + "/d1.state"
	if err := p.Send(resources.Command{Op: resources.CmdOnline, Resource: "d1", Type: "ocf",
		Props:        typeProps(t, root, "pacemaker:Dummy", map[string]db.Value{"state": db.StringValue(state)}),
		LooksAliveMs: 1000, IsAliveMs: 1000, PendingTimeoutMs: 60000}); err != nil {
		t.Fatal(err)
	}
	resmontest.Expect(t, p, "d1", resources.OnlinePending, "")
	resmontest.Expect(t, p, "d1", resources.Online, "")
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("Dummy's state file went with resmon (%v): the test cannot show the sweep", err)
	}
	p2 := resmontest.Start(t, bin, "-state-dir", dir+"/resmon", "-ocf-root", root)
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the new resmon said hello, but Dummy's state file is still there (%v): the orphan runs", err)
	}
	if es, _ := os.ReadDir(dir + "/resmon"); len(es) != 0 {
		t.Errorf("records left in the state directory: %v", es)
	}
	// The failover manager's terminate of the orphan finds nothing left.
	if err := p2.Send(resources.Command{Op: resources.CmdTerminate, Resource: "d1"}); err != nil {
		t.Fatal(err)
	}
	resmontest.Expect(t, p2, "d1", resources.Offline, "")
}
