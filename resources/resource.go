// Package resources is the resource model and the failover manager: what a
// resource is (its states, its policies, the interface its type
// implements), how the resources of a group depend on each other, and the
// deterministic core that decides, on every node from the replicated
// database, which node owns each group and which resources it brings online
// (docs/resources.md).
//
// Like every protocol core, the failover manager here starts no goroutines,
// reads no clock and does no I/O. The resource types themselves run in
// resmon, a separate process (internal/resmon), which executes the
// manager's commands and reports each resource's state.
package resources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// State is a resource's state (MSCS's resource states).
type State uint8

// The states. A pending state that lasts longer than the resource's pending
// timeout ends Failed (online) or, after a Terminate, Offline (offline).
const (
	Offline State = iota
	OnlinePending
	Online
	OfflinePending
	Failed
)

var stateNames = [...]string{"offline", "online-pending", "online", "offline-pending", "failed"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// ParseState is the inverse of State.String.
func ParseState(s string) (State, error) {
	for i, n := range stateNames {
		if n == s {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown resource state %q", s)
}

// Props are a resource's properties as the database holds them: the
// common ones (docs/resources.md) and its type's.
type Props map[string]db.Value

// Str returns the string property name, or def when it is not set.
func (p Props) Str(name, def string) string {
	if v, ok := p[name]; ok && v.Type == db.TypeString {
		return v.Str
	}
	return def
}

// Int returns the int property name, or def when it is not set.
func (p Props) Int(name string, def int64) int64 {
	if v, ok := p[name]; ok && v.Type == db.TypeInt {
		return v.Int
	}
	return def
}

// Bool returns the bool property name, or def when it is not set.
func (p Props) Bool(name string, def bool) bool {
	if v, ok := p[name]; ok && v.Type == db.TypeBool {
		return v.Bool
	}
	return def
}

// List returns the list property name, or nil when it is not set.
func (p Props) List(name string) []string {
	if v, ok := p[name]; ok && v.Type == db.TypeList {
		return v.List
	}
	return nil
}

// Type is a resource type (MSCS's resource DLL): the code that handles one
// kind of resource. resmon hosts the types; their property schemas live in
// gup/db (db.TypeSchema) so that every node validates a transaction the
// same way before it is applied.
type Type interface {
	// Name is the type's name as resources name it ("ip_address").
	Name() string
	// Open prepares the resource named name with props (already valid
	// under the type's schema). It must not change the system: no address
	// added, no process started.
	Open(name string, props Props, log *slog.Logger) (Instance, error)
}

// Instance is one opened resource.
type Instance interface {
	// Online brings the resource online and returns once it is (ctx ends
	// at the pending timeout).
	Online(ctx context.Context) error
	// Offline takes it offline gracefully (ctx ends at the pending
	// timeout; resmon calls Terminate after that).
	Offline(ctx context.Context) error
	// Terminate takes it offline at once, without grace (the lease
	// lapsed, a pending timeout passed, the resource failed). It must not
	// block for long and must be safe to call in any state, again and
	// again, and while another method runs (resmon does not wait for a
	// hung Online before it terminates).
	Terminate()
	// LooksAlive is the cheap, frequent check (a process exists, the
	// address is on the interface).
	LooksAlive() error
	// IsAlive is the thorough check (a check command, a probe).
	IsAlive(ctx context.Context) error
	// Close releases what Open took; the resource is offline.
	Close()
}

// Failure is what an Instance reports by itself between checks: a link
// lost, a process that exited. An Instance that can see failures without
// polling implements Watcher; resmon treats a value on the channel as a
// failed check.
type Watcher interface {
	Failures() <-chan error
}

// CommandOp is what a Command asks of resmon.
type CommandOp uint8

// The commands.
const (
	// CmdOnline: open the resource (if not open) and bring it online;
	// resmon reports OnlinePending, then Online or Failed.
	CmdOnline CommandOp = iota + 1
	// CmdOffline: take it offline gracefully; resmon reports
	// OfflinePending, then Offline (after a Terminate if the pending
	// timeout passed).
	CmdOffline
	// CmdTerminate: take it offline at once; resmon reports Offline.
	CmdTerminate
)

var opNames = [...]string{"", "online", "offline", "terminate"}

func (o CommandOp) String() string {
	if o >= CmdOnline && o <= CmdTerminate {
		return opNames[o]
	}
	return fmt.Sprintf("CommandOp(%d)", uint8(o))
}

// Properties the failover manager adds to an online command's Props
// beside the resource's own (no database property name has a '.' before
// these prefixes' ends, save an OCF parameter's "param.").
const (
	// PropResourceTypePrefix prefixes each property of the resourcetype
	// object the resource names ("resourcetype.ocf_agent").
	PropResourceTypePrefix = "resourcetype."
	// PropNodeID and PropNodeName are this node's id (an int, 1..64: the
	// physical disk's reservation key) and name.
	PropNodeID   = "node.id"
	PropNodeName = "node.name"
)

// Command is one of the failover manager's commands to resmon.
type Command struct {
	Op       CommandOp
	Resource string
	// Type, Props and the intervals are set for CmdOnline. Props include
	// the common properties; a network name's props carry the addresses of
	// the IP addresses it depends on in "addresses" when it names none. (A
	// new resmon terminates what its predecessor left of an application
	// through its state directory; an address left behind is adopted by
	// the next online.)
	Type  string
	Props Props
	// LooksAlive and IsAlive are the poll intervals, PendingTimeout the
	// bound on Online and Offline, all in milliseconds.
	LooksAliveMs, IsAliveMs, PendingTimeoutMs int64
}

func (c Command) String() string { return fmt.Sprintf("%v %s", c.Op, c.Resource) }

// FailureClass says where a failed resource may run again (Pacemaker's
// soft, hard and fatal errors, which the OCF adapter maps its exit codes
// to; the other types' failures are soft).
type FailureClass uint8

// The classes.
const (
	// FailSoft: restart in place up to the threshold, then move.
	FailSoft FailureClass = iota
	// FailHard: it cannot run on this node (not installed, not
	// configured here): move the group at once, no restart here.
	FailHard
	// FailFatal: it cannot run anywhere (its configuration is wrong):
	// leave it failed, neither restarted nor moved.
	FailFatal
)

var classNames = [...]string{"soft", "hard", "fatal"}

func (c FailureClass) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("FailureClass(%d)", uint8(c))
}

// ParseFailureClass is the inverse of FailureClass.String.
func ParseFailureClass(s string) (FailureClass, error) {
	for i, n := range classNames {
		if n == s {
			return FailureClass(i), nil
		}
	}
	return 0, fmt.Errorf("unknown failure class %q", s)
}

// ClassError is an error of a failure class other than soft. A type's
// Open, Online, LooksAlive, IsAlive or watcher returns one (Hard, Fatal)
// when retrying on this node, or anywhere, cannot help.
type ClassError struct {
	Class FailureClass
	Err   error
}

func (e *ClassError) Error() string { return e.Err.Error() }
func (e *ClassError) Unwrap() error { return e.Err }

// Hard marks err a hard failure: not on this node.
func Hard(err error) error { return &ClassError{Class: FailHard, Err: err} }

// Fatal marks err a fatal failure: not on any node.
func Fatal(err error) error { return &ClassError{Class: FailFatal, Err: err} }

// ClassOf returns err's failure class: that of the first ClassError in
// its chain, else soft.
func ClassOf(err error) FailureClass {
	var ce *ClassError
	if errors.As(err, &ce) {
		return ce.Class
	}
	return FailSoft
}

// Status is resmon's report of a resource's state.
type Status struct {
	Resource string
	State    State
	// Reason says why a resource failed or went offline by itself.
	Reason string
	// Class is a failure's class (Failed only).
	Class FailureClass
}
