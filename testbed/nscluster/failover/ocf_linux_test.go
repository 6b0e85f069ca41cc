package failover

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/resources/ocf"
	"github.com/wolfpack-ha/wolfpack/testbed"
	"github.com/wolfpack-ha/wolfpack/testbed/nscluster"
)

// hardOnAgent is a test OCF agent (Dummy's behaviour on a state file)
// that fails hard, exit 5 "not installed", on the node named in a file
// STATE.hard-NODE: the failure Pacemaker bans from a node. The adapter
// names the node in OCF_RESKEY_CRM_meta_on_node, as Pacemaker's executor
// does.
const hardOnAgent = `#!/bin/sh
: ${OCF_FUNCTIONS_DIR=${OCF_ROOT}/lib/heartbeat}
. ${OCF_FUNCTIONS_DIR}/ocf-shellfuncs
hard() {
	if [ -e "${OCF_RESKEY_state}.hard-${OCF_RESKEY_CRM_meta_on_node}" ]; then
		ocf_exit_reason "not installed on ${OCF_RESKEY_CRM_meta_on_node}"
		exit $OCF_ERR_INSTALLED
	fi
}
case $__OCF_ACTION in
meta-data) cat <<END
<?xml version="1.0"?>
<resource-agent name="HardOn" version="1.0">
<version>1.1</version>
<shortdesc lang="en">fails hard on a chosen node</shortdesc>
<parameters>
<parameter name="state" required="1" unique="1"><content type="string"/></parameter>
</parameters>
<actions>
<action name="start" timeout="5s"/>
<action name="stop" timeout="5s"/>
<action name="monitor" timeout="5s" interval="1s" depth="0"/>
<action name="meta-data" timeout="5s"/>
<action name="validate-all" timeout="5s"/>
</actions>
</resource-agent>
END
	exit $OCF_SUCCESS;;
start) hard; touch "${OCF_RESKEY_state}"; exit $OCF_SUCCESS;;
stop) rm -f "${OCF_RESKEY_state}"; exit $OCF_SUCCESS;;
monitor) hard; [ -e "${OCF_RESKEY_state}" ] && exit $OCF_SUCCESS; exit $OCF_NOT_RUNNING;;
validate-all) exit $OCF_SUCCESS;;
*) exit $OCF_ERR_UNIMPLEMENTED;;
esac
`

// TestIntegrationOCFFailover: Debian's ocf:pacemaker:Dummy and a test
// agent in a group on two clusterd nodes, created from their meta-data as
// an operator's tool would. Dummy's monitor starts returning 7 (its state
// file removed): a soft failure, restarted in place on the same node, no
// push. The test agent's monitor returns 5 ("not installed") on node1: a
// hard failure, no restart there, the group pushed to node2 at once.
func TestIntegrationOCFFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (root, namespaces)")
	}
	if _, err := os.Stat(filepath.Join(ocf.DefaultRoot, "resource.d/pacemaker/Dummy")); err != nil {
		t.Skipf("pacemaker-resource-agents not installed (scripts/deps.sh): %v", err)
	}
	// An OCF root with Debian's pacemaker agents and shell functions and
	// the test agent; resmon is started with -ocf-root through a wrapper.
	dir := t.TempDir()
	root := filepath.Join(dir, "ocf")
	for _, d := range []string{"resource.d/wolfpack-test"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"lib", "resource.d/pacemaker", "resource.d/heartbeat"} {
		if err := os.Symlink(filepath.Join(ocf.DefaultRoot, l), filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "resource.d/wolfpack-test/HardOn"), []byte(hardOnAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	resmon, err := testbed.BuildGo(t.Context(), "./cmd/resmon")
	if err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "resmon")
	if err := os.WriteFile(wrapper, fmt.Appendf(nil, "#!/bin/sh\nexec %s -ocf-root %s \"$@\"\n", resmon, root), 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRigWith(t, nscluster.Config{Nodes: 2, Resmon: wrapper}, 2*time.Minute)

	// The resource types, from the agents' meta-data.
	var ops []clusterapi.Op
	for _, a := range []struct{ name, agent string }{{"dummy", "pacemaker:Dummy"}, {"hardon", "wolfpack-test:HardOn"}} {
		md, err := ocf.LoadMetadata(r.ctx, root, a.agent)
		if err != nil {
			t.Fatal(err)
		}
		props, err := md.ResourceTypeProps(a.agent)
		if err != nil {
			t.Fatal(err)
		}
		jp := map[string]any{}
		for k, v := range props {
			jp[k], _ = clusterapi.JSONValue(v)
		}
		ops = append(ops, clusterapi.Op{Op: "create", Kind: "resourcetype", Name: a.name, Props: jp})
	}
	const resDummy, resHard = "vs1-dummy", "vs1-hard"
	dummyState, hardState := filepath.Join(dir, "dummy.state"), filepath.Join(dir, "hard.state")
	ops = append(ops,
		clusterapi.Op{Op: "create", Kind: "group", Name: group, Props: map[string]any{"preferred_owners": []string{"node1", "node2"}}},
		clusterapi.Op{Op: "create", Kind: "resource", Name: resDummy, Props: map[string]any{
			"group": group, "type": "dummy", "param.state": dummyState, "looks_alive_ms": 200}},
		clusterapi.Op{Op: "create", Kind: "resource", Name: resHard, Props: map[string]any{
			"group": group, "type": "hardon", "param.state": hardState, "looks_alive_ms": 200, "depends_on": []string{resDummy}}},
	)
	r.commit(1, clusterapi.Tx{Ops: ops})
	r.waitOnline(1, 1)
	for _, f := range []string{dummyState, hardState} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("online on node1, but the agent's state file: %v", err)
		}
	}

	// Soft: Dummy's monitor returns 7; restarted on node1.
	mark := r.c.Mark()
	if err := os.Remove(dummyState); err != nil {
		t.Fatal(err)
	}
	ofDummy := func(e nscluster.Event) bool { return e.String("resource") == resDummy }
	f := r.waitEvent(1, evResourceFailed, mark, ofDummy)
	r.waitEvent(1, evRestart, mark, ofDummy)
	r.poll("Dummy's state file back", func() (bool, string) {
		_, err := os.Stat(dummyState)
		return err == nil, fmt.Sprint(err)
	})
	// Its dependent went offline with it and comes back after it.
	r.waitEvent(1, "state", mark, resState("vs1-hard", "online"))
	r.checkOwner(1, 2)
	if p := r.c.Events(0, evPush, nscluster.After(mark)); len(p) > 0 {
		t.Fatalf("a soft failure pushed the group: %v", p[0].Format())
	}
	t.Logf("soft: %s (%s)", f.Format(), f.String("reason"))

	// Hard: the test agent is "not installed" on node1; pushed to node2.
	mark = r.c.Mark()
	cut := time.Now()
	if err := os.WriteFile(hardState+".hard-node1", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ofHard := func(e nscluster.Event) bool { return e.String("resource") == resHard }
	st := r.waitEvent(1, "state", mark, func(e nscluster.Event) bool { return ofHard(e) && e.String("state") == "failed" })
	if c, why := st.String("class"), st.String("reason"); c != "hard" || !strings.HasPrefix(why, "looks-alive failed: monitor: exit 5") {
		t.Errorf("resmon reported %s failed with class %q (%s), want a hard failure of its monitor: %s", resHard, c, why, st.Format())
	}
	r.waitEvent(1, evPush, mark, ofGroup)
	r.waitOnline(2, 2)
	r.checkOwner(2, 1)
	if l := r.c.Events(1, evRestart, nscluster.And(nscluster.After(mark), ofHard)); len(l) > 0 {
		t.Errorf("a hard failure was restarted in place: %v", l[0].Format())
	}
	_, _, props, err := r.groupState(2, false)
	if err != nil {
		t.Fatal(err)
	}
	if fo, _ := props["failovers"].([]any); len(fo) != 1 {
		t.Errorf("group failovers %v: want the one push", props["failovers"])
	}
	for _, fn := range []string{dummyState, hardState} {
		if _, err := os.Stat(fn); err != nil {
			t.Errorf("online on node2, but the agent's state file: %v", err)
		}
	}
	t.Logf("hard: %s; timeline:\n%s%s", st.Format(), r.timeline(1, mark, cut), r.timeline(2, mark, cut))
}
