package clustercli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
)

// TestEventsCommands: cluster events and cluster why against the real
// database behind a socket server: the log a failover leaves (as the
// failover manager and the node core record it), filtered, as a table and
// as JSON, and the chain behind the group.
func TestEventsCommands(t *testing.T) {
	s := newDBServer(t)
	now := time.Now().UnixMilli()
	ev := func(name, typ, node, msg, cause, causeEvent string, age time.Duration) clusterapi.Op {
		p := map[string]any{"type": typ, "time": now - age.Milliseconds(), "message": msg, "recorder": "node2"}
		for k, v := range map[string]string{"node": node, "cause": cause, "cause_event": causeEvent} {
			if v != "" {
				p[k] = v
			}
		}
		if strings.HasPrefix(typ, "group-") {
			p["group"] = "web"
		}
		return clusterapi.Op{Op: "create", Kind: "event", Name: name, Props: p}
	}
	for _, tx := range []clusterapi.Tx{
		{Ops: []clusterapi.Op{
			{Op: "create", Kind: "node", Name: "node1", Props: map[string]any{"id": 1}},
			{Op: "create", Kind: "node", Name: "node2", Props: map[string]any{"id": 2}},
			ev("old", "group-placed", "node1", "group web placed on node1", "the group had no owner", "", 2*time.Hour),
		}},
		{Ops: []clusterapi.Op{
			ev("node1-lost-3.2", "node-lost", "node1", "node 1 lost (epoch 3.2)", "silent on every private network", "", time.Second),
			ev("regroup-3.2", "regroup", "", "membership 3.2 installed", "", "node1-lost-3.2", time.Second),
		}},
		{Ops: []clusterapi.Op{
			{Op: "create", Kind: "group", Name: "web", Props: map[string]any{"owner": "node2", "state": "online", "event": "n2.1.2"}},
			ev("n2.1.1", "group-pulled", "node2", "group web pulled by node2", "", "regroup-3.2", 500*time.Millisecond),
			ev("n2.1.2", "group-online", "node2", "group web online on node2", "", "n2.1.1", 0),
		}},
	} {
		if err := s.apply(tx); err != nil {
			t.Fatal(err)
		}
	}

	table := s.mustCLI(t, "events")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "SEQ") {
		t.Fatalf("events: want a header and 5 events:\n%s", table)
	}
	for i, want := range []string{"the group had no owner", "silent on every private network", "<- #2", "<- #3", "<- #4"} {
		if !strings.HasSuffix(lines[i+1], want) {
			t.Errorf("events line %d: %q, want the cause %q", i+1, lines[i+1], want)
		}
	}
	var evs []clusterapi.Event
	if err := json.Unmarshal([]byte(s.mustCLI(t, "events", "--json", "--group", "web", "--since", "1h")), &evs); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Type != "group-pulled" || evs[1].CauseSeq != evs[0].Seq || evs[0].Node != "node2" {
		t.Errorf("events --group web --since 1h --json: %+v", evs)
	}
	if err := json.Unmarshal([]byte(s.mustCLI(t, "events", "--json", "--since", "3", "--type", "group-online")), &evs); err != nil || len(evs) != 1 || evs[0].Seq != 5 {
		t.Errorf("events --since 3 --type group-online: %+v, %v", evs, err)
	}
	if err := json.Unmarshal([]byte(s.mustCLI(t, "events", "--json", "--limit", "2", "--node", "node2")), &evs); err != nil || len(evs) != 2 || evs[0].Seq != 4 {
		t.Errorf("events --limit 2 --node node2: %+v, %v", evs, err)
	}
	for _, bad := range [][]string{
		{"events", "--type", "exploded"}, {"events", "--since", "yesterday"}, {"events", "--limit", "-1"},
		{"events", "--follow", "--limit", "3"}, {"events", "extra"}, {"why"}, {"why", "a", "b"},
	} {
		if _, err := s.cli(bad...); exitCode(err) != 2 {
			t.Errorf("cluster %s: exit %d (%v), want 2", strings.Join(bad, " "), exitCode(err), err)
		}
	}

	why := s.mustCLI(t, "why", "web")
	for _, want := range []string{"group web is online on node2, because:", "#5", "#4", "#3", "#2", "root cause: silent on every private network"} {
		if !strings.Contains(why, want) {
			t.Errorf("why web: no %q in\n%s", want, why)
		}
	}
	var w whyResult
	if err := json.Unmarshal([]byte(s.mustCLI(t, "why", "web", "--json")), &w); err != nil {
		t.Fatal(err)
	}
	var chain []string
	for _, e := range w.Chain {
		chain = append(chain, e.Type)
	}
	if strings.Join(chain, " ") != "group-online group-pulled regroup node-lost" || w.Owner != "node2" || w.RootCause != "silent on every private network" {
		t.Errorf("why web --json: %+v", w)
	}
	if _, err := s.cli("why", "nosuch"); exitCode(err) != exitNotFound {
		t.Errorf("why nosuch: exit %d (%v), want %d", exitCode(err), err, exitNotFound)
	}
	for _, args := range [][]string{{"events", "-h"}, {"why", "--help"}} {
		if out, err := s.cli(args...); err != nil || !strings.HasPrefix(out, "usage: cluster "+args[0]) {
			t.Errorf("cluster %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
