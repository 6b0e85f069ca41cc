package ocf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// requireAgents skips t unless root, not -short, and Debian's agents
// (resource-agents, pacemaker-resource-agents; scripts/deps.sh) are here.
func requireAgents(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("integration test skipped: needs root; run e.g. sudo -E go test -run TestIntegration ./resources/ocf/")
	}
	for _, a := range []string{"pacemaker/Dummy", "heartbeat/IPaddr2"} {
		if _, err := os.Stat(filepath.Join(DefaultRoot, "resource.d", a)); err != nil {
			t.Skipf("%v: apt-get install resource-agents pacemaker-resource-agents (scripts/deps.sh does)", err)
		}
	}
}

// testAgents are the test's own agents (provider wolfpack-test): hang's
// start sleeps and leaves a child (its pids in $OCF_RESKEY_pids), fail's
// start exits with $OCF_RESKEY_rc and an exit reason.
var testAgents = map[string]string{
	"hang": `#!/bin/sh
case "$1" in
meta-data) cat <<'X'
<?xml version="1.0"?>
<resource-agent name="hang"><version>1.1</version>
<parameters><parameter name="pids" required="1"><content type="string"/></parameter></parameters>
<actions><action name="start" timeout="1s"/><action name="stop" timeout="5s"/><action name="monitor" timeout="5s" interval="1s"/></actions>
</resource-agent>
X
	exit 0;;
start) sleep 1000 & echo $$ $! > "$OCF_RESKEY_pids"; sleep 1000; exit 0;;
stop) exit 0;;
monitor) exit 7;;
*) exit 3;;
esac
`,
	"fail": `#!/bin/sh
case "$1" in
meta-data) cat <<'X'
<?xml version="1.0"?>
<resource-agent name="fail"><version>1.1</version>
<parameters><parameter name="rc"><content type="integer" default="1"/></parameter></parameters>
<actions><action name="start" timeout="5s"/><action name="stop" timeout="5s"/><action name="monitor" timeout="5s" interval="1s"/></actions>
</resource-agent>
X
	exit 0;;
start) echo "ocf-exit-reason:not the last" >&2; echo "ocf-exit-reason:start refused on purpose" >&2; exit "$OCF_RESKEY_rc";;
stop) exit 0;;
monitor) exit 7;;
*) exit 3;;
esac
`,
}

// testRoot builds an OCF_ROOT in a temporary directory: Debian's agents
// and their shell library linked in, and the test agents.
func testRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "resource.d", "wolfpack-test"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"lib", "resource.d/heartbeat", "resource.d/pacemaker"} {
		if err := os.Symlink(filepath.Join(DefaultRoot, l), filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	for name, script := range testAgents {
		if err := os.WriteFile(filepath.Join(root, "resource.d", "wolfpack-test", name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// typeProps loads agent's meta-data and returns the online command's
// properties the failover manager would give a resource of the
// resourcetype made from it: the resourcetype's, prefixed, and params.
func typeProps(t *testing.T, root, agent string, params map[string]db.Value) resources.Props {
	t.Helper()
	m, err := LoadMetadata(t.Context(), root, agent)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := m.ResourceTypeProps(agent)
	if err != nil {
		t.Fatal(err)
	}
	p := resources.Props{resources.PropNodeName: db.StringValue("n1"), resources.PropNodeID: db.IntValue(1)}
	for k, v := range rt {
		p[resources.PropResourceTypePrefix+k] = v
	}
	for k, v := range params {
		p[db.OCFParamPrefix+k] = v
	}
	return p
}
