package ocf

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/resources"
)

// Each exit status's class, as Pacemaker's scheduler classes it
// (lib/pengine/unpack.c): 2, 4, 5 hard; 3 hard unless a recurring
// monitor's; 6 fatal; the rest, timeouts and signals soft.
func TestFailureClasses(t *testing.T) {
	for _, c := range []struct {
		o         outcome
		recurring bool
		class     resources.FailureClass
		msg       string
	}{
		{outcome{rc: 1, reason: "boom"}, false, resources.FailSoft, "start: exit 1 (OCF_ERR_GENERIC): boom"},
		{outcome{rc: 2}, false, resources.FailHard, "exit 2 (OCF_ERR_ARGS)"},
		{outcome{rc: 3}, false, resources.FailHard, "exit 3 (OCF_ERR_UNIMPLEMENTED)"},
		{outcome{rc: 3}, true, resources.FailSoft, "exit 3"},
		{outcome{rc: 4}, false, resources.FailHard, "OCF_ERR_PERM"},
		{outcome{rc: 5, reason: "no binary"}, false, resources.FailHard, "exit 5 (OCF_ERR_INSTALLED): no binary"},
		{outcome{rc: 6}, true, resources.FailFatal, "exit 6 (OCF_ERR_CONFIGURED)"},
		{outcome{rc: 7}, true, resources.FailSoft, "exit 7 (OCF_NOT_RUNNING)"},
		{outcome{rc: 9}, true, resources.FailSoft, "OCF_FAILED_MASTER"},
		{outcome{rc: 42}, false, resources.FailSoft, "exit 42 (unknown, taken as OCF_ERR_GENERIC)"},
		{outcome{rc: rcNone, timedOut: true}, false, resources.FailSoft, "timed out after 2s, its process group killed"},
		{outcome{rc: rcNone, signal: syscall.SIGSEGV}, false, resources.FailSoft, "killed by signal 11"},
	} {
		err := failure("start", c.o, 2*time.Second, c.recurring)
		if got := resources.ClassOf(err); got != c.class || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v recurring %v: %v %q; want %v with %q", c.o, c.recurring, got, err, c.class, c.msg)
		}
	}
}

func TestMonitorStates(t *testing.T) {
	for _, c := range []struct {
		rc    int
		probe bool
		want  state
	}{
		{0, false, stateRunning}, {190, false, stateRunning}, {8, false, stateRunning}, {191, false, stateRunning},
		{7, false, stateStopped}, {7, true, stateStopped},
		{5, true, stateStopped}, {2, true, stateStopped}, {5, false, stateFailed}, {2, false, stateFailed},
		{1, true, stateFailed}, {6, true, stateFailed}, {200, false, stateFailed},
	} {
		if got := monitorState(outcome{rc: c.rc}, c.probe); got != c.want {
			t.Errorf("rc %d probe %v: %v, want %v", c.rc, c.probe, got, c.want)
		}
	}
	if monitorState(outcome{rc: 0, timedOut: true}, false) != stateFailed {
		t.Error("a timed-out monitor is not a failure")
	}
	if !succeeded("stop", outcome{rc: 7}) || succeeded("start", outcome{rc: 7}) || !succeeded("start", outcome{rc: 190}) {
		t.Error("stop's 7 is success, start's is not; degraded is success")
	}
}
