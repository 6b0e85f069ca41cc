package ocf

import (
	"fmt"
	"syscall"
	"time"

	"github.com/wolfpack-ha/wolfpack/resources"
)

// The OCF exit codes (OCF Resource Agent API, "Return codes"; Pacemaker's
// enum ocf_exitcode).
const (
	rcOK                = 0
	rcErrGeneric        = 1
	rcErrArgs           = 2 // invalid in the local context: not here
	rcUnimplemented     = 3
	rcErrPerm           = 4
	rcNotInstalled      = 5
	rcNotConfigured     = 6 // invalid as configured: nowhere
	rcNotRunning        = 7
	rcRunningPromoted   = 8
	rcFailedPromoted    = 9
	rcDegraded          = 190
	rcDegradedPromoted  = 191
	rcNone              = -1 // no exit status: timed out, killed, not started
	reasonPrefix        = "ocf-exit-reason:"
	defaultTimeout      = 20 * time.Second // Pacemaker's default operation timeout
	defaultMonitorEvery = 10 * time.Second // CRM_meta_interval when none is advertised
)

var rcNames = map[int]string{
	rcOK: "OCF_SUCCESS", rcErrGeneric: "OCF_ERR_GENERIC", rcErrArgs: "OCF_ERR_ARGS", rcUnimplemented: "OCF_ERR_UNIMPLEMENTED",
	rcErrPerm: "OCF_ERR_PERM", rcNotInstalled: "OCF_ERR_INSTALLED", rcNotConfigured: "OCF_ERR_CONFIGURED",
	rcNotRunning: "OCF_NOT_RUNNING", rcRunningPromoted: "OCF_RUNNING_MASTER", rcFailedPromoted: "OCF_FAILED_MASTER",
	rcDegraded: "OCF_DEGRADED", rcDegradedPromoted: "OCF_DEGRADED_MASTER",
}

// outcome is how one run of an action ended.
type outcome struct {
	rc       int // the exit status, rcNone if there is none
	timedOut bool
	killed   bool           // by Terminate
	signal   syscall.Signal // that ended it, if any
	reason   string         // the last ocf-exit-reason: line of stderr
	took     time.Duration
	err      error // could not run it at all
}

// ActionError is an action that did not give the result it needed: its
// exit status (or why it has none) and the agent's exit reason.
type ActionError struct {
	Action   string // "start", "monitor", "probe" (monitor at interval 0), ...
	RC       int    // -1: none (see the other fields)
	TimedOut bool
	Timeout  time.Duration
	Killed   bool
	Signal   syscall.Signal
	Reason   string
	Err      error
}

func (e *ActionError) Error() string {
	s := e.Action + ": "
	switch {
	case e.Err != nil:
		s += e.Err.Error()
	case e.TimedOut:
		s += fmt.Sprintf("timed out after %v, its process group killed", e.Timeout)
	case e.Killed:
		s += "killed (terminated)"
	case e.Signal != 0:
		s += fmt.Sprintf("killed by signal %d (%v)", int(e.Signal), e.Signal)
	default:
		name := rcNames[e.RC]
		if name == "" {
			name = "unknown, taken as OCF_ERR_GENERIC"
		}
		s += fmt.Sprintf("exit %d (%s)", e.RC, name)
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

func (e *ActionError) Unwrap() error { return e.Err }

// class is a failed action's failure class, as Pacemaker's scheduler
// classes the result (lib/pengine/unpack.c, remap_operation): 2
// (OCF_ERR_ARGS), 4 (OCF_ERR_PERM) and 5 (OCF_ERR_INSTALLED) are hard
// (not on this node), 3 (OCF_ERR_UNIMPLEMENTED) is hard for a
// non-recurring action and soft for a recurring monitor, 6
// (OCF_ERR_CONFIGURED) is fatal (nowhere); everything else, timeouts and
// signals included, is soft.
func (e *ActionError) class(recurring bool) resources.FailureClass {
	if e.Err != nil || e.TimedOut || e.Killed || e.Signal != 0 {
		return resources.FailSoft
	}
	switch e.RC {
	case rcErrArgs, rcErrPerm, rcNotInstalled:
		return resources.FailHard
	case rcUnimplemented:
		if recurring {
			return resources.FailSoft
		}
		return resources.FailHard
	case rcNotConfigured:
		return resources.FailFatal
	}
	return resources.FailSoft
}

// failure turns a failed outcome into an error of its class.
func failure(action string, o outcome, timeout time.Duration, recurring bool) error {
	e := &ActionError{Action: action, RC: o.rc, TimedOut: o.timedOut, Timeout: timeout, Killed: o.killed,
		Signal: o.signal, Reason: o.reason, Err: o.err}
	switch e.class(recurring) {
	case resources.FailHard:
		return resources.Hard(e)
	case resources.FailFatal:
		return resources.Fatal(e)
	}
	return e
}

// effective maps an exit status as Pacemaker does (services__ocf2ocf,
// pcmk__effective_rc): degraded is running (190 → 0, 191 → 8), and a
// status outside the OCF codes is a generic error.
func effective(rc int) int {
	switch {
	case rc == rcDegraded:
		return rcOK
	case rc == rcDegradedPromoted:
		return rcRunningPromoted
	case rc < 0 || rc > rcFailedPromoted:
		return rcErrGeneric
	}
	return rc
}

// state is what a monitor found.
type state uint8

const (
	stateRunning state = iota
	stateStopped
	stateFailed
)

// monitorState reads a monitor's outcome. A probe (monitor at interval
// 0, before a start) takes 2 and 5 as stopped too, as Pacemaker does
// (pcmk_xe_mask_probe_failure): an agent whose software or configuration
// is missing here is not running here. A promoted result counts as
// running (promotable resources are not run as such here).
func monitorState(o outcome, probe bool) state {
	if o.err != nil || o.timedOut || o.killed || o.signal != 0 {
		return stateFailed
	}
	switch rc := effective(o.rc); {
	case rc == rcOK || rc == rcRunningPromoted:
		return stateRunning
	case rc == rcNotRunning:
		return stateStopped
	case probe && (rc == rcErrArgs || rc == rcNotInstalled):
		return stateStopped
	}
	return stateFailed
}

// succeeded says whether a non-monitor action did what it was asked.
// A stop that finds the resource not running (7) has stopped it.
func succeeded(action string, o outcome) bool {
	if o.err != nil || o.timedOut || o.killed || o.signal != 0 {
		return false
	}
	rc := effective(o.rc)
	return rc == rcOK || (action == "stop" && rc == rcNotRunning)
}
