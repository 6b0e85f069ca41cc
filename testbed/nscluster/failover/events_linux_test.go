package failover

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
)

// TestIntegrationEventLog: the owner of the virtual server crashes; the
// cluster binary, asking the survivor, shows the cluster-wide event log
// with the chain node lost -> regroup -> group pulled by the survivor ->
// group online, each event naming its cause, and `cluster why` walks
// the same chain back to "silent on every private network". A `cluster
// events --follow` started before the crash prints each of those events
// within a second of its time.
func TestIntegrationEventLog(t *testing.T) {
	start := time.Now()
	r := newRig(t, 2, 2*time.Minute)
	r.createVS(vsOpts{}, 1)
	t.Logf("cluster and virtual server up after %v", time.Since(start).Round(time.Millisecond))
	cli, sock := r.c.Config().CLI, r.c.Node(2).Socket
	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.CommandContext(r.ctx, cli, append(args, "--socket", sock)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out) + stderr.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}

	// The follower, on the node that survives.
	follow := exec.CommandContext(r.ctx, cli, "events", "--follow", "--json", "--socket", sock)
	out, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	type arrival struct {
		e  clusterapi.Event
		at time.Time
	}
	var mu sync.Mutex
	var arrived []arrival
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e clusterapi.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				mu.Lock()
				arrived = append(arrived, arrival{e, time.Now()})
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		_ = follow.Process.Kill()
		<-done
		_ = follow.Wait()
	})
	// The follower has printed the backlog: the group online on node 1.
	r.poll("the follower prints the backlog", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(arrived) > 0 && arrived[len(arrived)-1].e.Type == "group-online", fmt.Sprintf("%d events", len(arrived))
	})

	crash := time.Now()
	if err := r.c.Crash(1); err != nil {
		t.Fatal(err)
	}
	r.waitOnline(2, 2)
	t.Logf("online on node 2 %v after the crash", time.Since(crash).Round(time.Millisecond))

	// cluster events: the chain, linked by cause.
	var evs []clusterapi.Event
	r.poll("the events of the failover", func() (bool, string) {
		o, code := run("events", "--json", "--since", "1m")
		evs = nil
		if code != 0 || json.Unmarshal([]byte(o), &evs) != nil {
			return false, o
		}
		return findEvent(evs, "group-online", "node2") != nil, o
	})
	lost, online := findEvent(evs, "node-lost", "node1"), findEvent(evs, "group-online", "node2")
	pulled := findEvent(evs, "group-pulled", "node2")
	if lost == nil || pulled == nil {
		t.Fatalf("no node-lost of node1 or group-pulled by node2 in\n%s", eventLines(evs))
	}
	regroup := bySeq(evs, pulled.CauseSeq)
	switch {
	case !strings.Contains(lost.Cause, "silent on every private network"):
		t.Errorf("node-lost's cause %q, want silence", lost.Cause)
	case regroup == nil || regroup.Type != "regroup":
		t.Errorf("group-pulled's cause #%d is not a regroup:\n%s", pulled.CauseSeq, eventLines(evs))
	case regroup.CauseSeq != lost.Seq || strings.Join(regroup.Members, ",") != "2" || strings.Join(regroup.MembersBefore, ",") != "1,2":
		t.Errorf("regroup %+v: want caused by #%d, members 1,2 -> 2", *regroup, lost.Seq)
	case online.CauseSeq != pulled.Seq || pulled.Group != group || online.Group != group:
		t.Errorf("group-online %+v: want caused by the pull #%d", *online, pulled.Seq)
	}
	table, code := run("events", "--group", group)
	if code != 0 || !strings.Contains(table, "group-pulled") || !strings.Contains(table, "<- #") {
		t.Errorf("cluster events --group %s: exit %d:\n%s", group, code, table)
	}
	t.Logf("cluster events:\n%s", table)

	// cluster why.
	var w struct {
		Owner, State string
		Chain        []clusterapi.Event
		RootCause    string `json:"root_cause"`
	}
	o, code := run("why", group, "--json")
	if err := json.Unmarshal([]byte(o), &w); code != 0 || err != nil {
		t.Fatalf("cluster why %s --json: exit %d, %v: %s", group, code, err, o)
	}
	var types []string
	for _, e := range w.Chain {
		types = append(types, e.Type)
	}
	if got := strings.Join(types, " <- "); w.Owner != "node2" || w.State != "online" ||
		got != "group-online <- group-pulled <- regroup <- node-lost" || !strings.Contains(w.RootCause, "silent") {
		t.Errorf("cluster why: %s %s, chain %s, root cause %q", w.Owner, w.State, got, w.RootCause)
	}
	human, _ := run("why", group)
	if !strings.Contains(human, "group "+group+" is online on node2") || !strings.Contains(human, "root cause: silent") {
		t.Errorf("cluster why %s:\n%s", group, human)
	}
	t.Logf("cluster why %s:\n%s", group, human)
	if o, code := run("why", "no-such-group"); code != 4 {
		t.Errorf("cluster why no-such-group: exit %d, want 4: %s", code, o)
	}

	t.Logf("events and why checked %v after the crash", time.Since(crash).Round(time.Millisecond))
	// The follower saw each event of the failover within a second.
	r.poll("the follower prints the group online on node2", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(arrived) > 0 && arrived[len(arrived)-1].e.Seq >= online.Seq, fmt.Sprintf("%d events", len(arrived))
	})
	mu.Lock()
	defer mu.Unlock()
	for _, a := range arrived {
		if a.e.Time.Before(crash) {
			continue
		}
		lag := a.at.Sub(a.e.Time)
		t.Logf("follow: #%d %s after %d ms", a.e.Seq, a.e.Type, lag.Milliseconds())
		if lag > time.Second {
			t.Errorf("the follower printed #%d %s %v after its time", a.e.Seq, a.e.Type, lag)
		}
	}
}

func findEvent(evs []clusterapi.Event, typ, node string) *clusterapi.Event {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ && evs[i].Node == node {
			return &evs[i]
		}
	}
	return nil
}

func bySeq(evs []clusterapi.Event, seq int64) *clusterapi.Event {
	for i := range evs {
		if evs[i].Seq == seq {
			return &evs[i]
		}
	}
	return nil
}

func eventLines(evs []clusterapi.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "#%d %s %s %s %q cause %q <- #%d\n", e.Seq, e.Type, e.Node, e.Group, e.Message, e.Cause, e.CauseSeq)
	}
	return b.String()
}
