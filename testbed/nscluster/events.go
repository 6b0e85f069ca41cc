package nscluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Messages the rig itself adds to the event stream (clusterd never logs
// these: they carry the rig's prefix).
const (
	// MsgStarted: the rig started the node's process (Attrs "pid").
	MsgStarted = "nscluster: started"
	// MsgExited: the node's process ended (Attrs "status": exit status,
	// -1 if killed by a signal; "signal": the signal's name, if any).
	MsgExited = "nscluster: exited"
)

// Event is one JSON log line of a node's process (or one of the rig's own
// Msg* events about it).
type Event struct {
	// Seq numbers events in the order the rig read them, from 0.
	Seq int
	// Node is the node's id.
	Node int
	// Time is the record's own "time" (slog's JSON handler writes it at
	// the log call), or Read if it has none.
	Time time.Time
	// Read is when the rig read the line.
	Read time.Time
	// Level and Msg are slog's "level" and "msg".
	Level, Msg string
	// Attrs holds every field of the record, as encoding/json decodes
	// them into an any (numbers are float64).
	Attrs map[string]any
}

// Int returns attribute key as an int.
func (e Event) Int(key string) (int, bool) {
	switch v := e.Attrs[key].(type) {
	case float64:
		return int(v), true
	case json.Number:
		n, err := v.Int64()
		return int(n), err == nil
	}
	return 0, false
}

// Epoch is a membership epoch as clusterd writes it: "generation.installer"
// (regroup.Epoch's String), or a plain number.
type Epoch string

// UnmarshalJSON accepts a string or a number.
func (e *Epoch) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*e = Epoch(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("epoch %s: %w", b, err)
	}
	*e = Epoch(n.String())
	return nil
}

// Gen is the epoch's generation (the number before the dot), which orders
// epochs.
func (e Epoch) Gen() uint64 {
	g, _, _ := strings.Cut(string(e), ".")
	n, _ := strconv.ParseUint(g, 10, 64)
	return n
}

// Epoch returns the event's "epoch" attribute.
func (e Event) Epoch() Epoch { return Epoch(e.String("epoch")) }

// Ints returns attribute key, a list of numbers (members), as ints.
func (e Event) Ints(key string) []int {
	l, _ := e.Attrs[key].([]any)
	out := make([]int, 0, len(l))
	for _, x := range l {
		switch v := x.(type) {
		case float64:
			out = append(out, int(v))
		case json.Number:
			n, _ := v.Int64()
			out = append(out, int(n))
		}
	}
	return out
}

// String returns attribute key as a string (numbers are formatted).
func (e Event) String(key string) string {
	switch v := e.Attrs[key].(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// Format is a one-line rendering for test logs.
func (e Event) Format() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s node%d %q", e.Time.Format("15:04:05.000"), e.Node, e.Msg)
	for k, v := range e.Attrs {
		switch k {
		case "time", "level", "msg":
			continue
		}
		fmt.Fprintf(&b, " %s=%v", k, v)
	}
	return b.String()
}

// parseLine turns one log line into an event (ok false: not a JSON record).
func parseLine(node int, line []byte, read time.Time) (Event, bool) {
	var attrs map[string]any
	if err := json.Unmarshal(line, &attrs); err != nil {
		return Event{}, false
	}
	e := Event{Node: node, Read: read, Time: read, Attrs: attrs}
	e.Msg, _ = attrs["msg"].(string)
	e.Level, _ = attrs["level"].(string)
	if s, ok := attrs["time"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			e.Time = t
		}
	}
	return e, true
}

// eventLog is every event of a cluster, in order, with a way to wait for
// more.
type eventLog struct {
	mu      sync.Mutex
	evs     []Event
	changed chan struct{} // closed and replaced at each add
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	e.Seq = len(l.evs)
	l.evs = append(l.evs, e)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *eventLog) snapshot() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.evs...)
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.evs)
}

// wait returns the first event that matches, in the whole history, or
// waits for one until ctx ends.
func (l *eventLog) wait(ctx context.Context, match func(Event) bool) (Event, error) {
	next := 0
	for {
		l.mu.Lock()
		evs := l.evs[next:len(l.evs):len(l.evs)]
		ch := l.changed
		next = len(l.evs)
		l.mu.Unlock()
		for _, e := range evs {
			if match(e) {
				return e, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// Match builds the predicate of WaitEvent and Events: node 0 matches any
// node, msg "" any message, pred nil any event.
func Match(node int, msg string, pred func(Event) bool) func(Event) bool {
	return func(e Event) bool {
		return (node == 0 || e.Node == node) && (msg == "" || e.Msg == msg) && (pred == nil || pred(e))
	}
}

// After is a predicate: events the rig read at or after sequence number
// mark (see Cluster.Mark).
func After(mark int) func(Event) bool {
	return func(e Event) bool { return e.Seq >= mark }
}

// And combines predicates.
func And(preds ...func(Event) bool) func(Event) bool {
	return func(e Event) bool {
		for _, p := range preds {
			if p != nil && !p(e) {
				return false
			}
		}
		return true
	}
}
