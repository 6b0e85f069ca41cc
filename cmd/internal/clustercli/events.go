package clustercli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// cluster events and cluster why: the cluster-wide event log
// (docs/events.md) through GET /v1/events.

const eventsUsage = `usage: cluster events [--follow] [--since D|SEQ] [--node N] [--group G] [--resource R]
                      [--type T] [--limit K] [--json] [connection flags]

Prints the cluster-wide event log as any member holds it: node up and
down, regroups, group moves, resource failures, groups online, offline
and failed, each with its cause (an earlier event, "<- #SEQ", or the
condition that led to it).

  --follow      go on printing each new event as it is committed (Ctrl-C ends)
  --since D     only events of the last D (a duration: 10m, 2h)
  --since SEQ   only events after sequence number SEQ
  --node N, --group G, --resource R
                only events about that node, group or resource
  --type T      only events of type T: ` + "%s" + `
  --limit K     only the last K events (not with --follow)
  --json        the API's events: a JSON array (with --follow, one a line)
` + connFlagsUsage

const whyUsage = `usage: cluster why GROUP [--json] [connection flags]

Prints the chain of events that put GROUP where it is: its owner and
state now, then the event that last changed them, and back through each
event's cause (the move, the failure or the node loss behind it) to the
root cause. Exit status 4 if there is no such group.
` + connFlagsUsage

const connFlagsUsage = `
connection flags:
  --socket PATH    clusterd's admin socket (default ` + defaultSocket + `)
  --api URL        or its admin API on TCP, https://HOST:PORT, with --ca F --cert F --key F
  --timeout D      how long to wait for the daemon (default 10s)

exit status: 0 ok, 1 error, 2 usage, 4 no such object.
`

// eventConn registers the connection flags of events and why.
func eventConn(fs *flag.FlagSet) (connFlags, *time.Duration) {
	var timeout time.Duration
	durationVar(fs, &timeout, "timeout", 10*time.Second)
	return addConnFlags(fs), &timeout
}

func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := fmt.Sprintf(eventsUsage, strings.Join(db.EventTypes, ", "))
	fs := flag.NewFlagSet("cluster events", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	conn, timeout := eventConn(fs)
	var f clusterapi.EventFilter
	follow := fs.Bool("follow", false, "")
	since := fs.String("since", "", "")
	fs.StringVar(&f.Node, "node", "", "")
	fs.StringVar(&f.Group, "group", "", "")
	fs.StringVar(&f.Resource, "resource", "", "")
	fs.StringVar(&f.Type, "type", "", "")
	fs.IntVar(&f.Limit, "limit", 0, "")
	asJSON := fs.Bool("json", false, "")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if err != nil {
		return usagef("events: %v (cluster events -h for the usage)", err)
	}
	if len(pos) > 0 {
		fmt.Fprint(stderr, usage)
		return usagef("events: takes no arguments, got %q", pos)
	}
	var after time.Time
	if *since != "" {
		if n, err := strconv.ParseInt(*since, 10, 64); err == nil && n >= 0 {
			f.Since = n
		} else if d, err := time.ParseDuration(*since); err == nil && d > 0 {
			after = time.Now().Add(-d)
		} else {
			return usagef("events: --since %q: want a duration (10m) or an event's sequence number", *since)
		}
	}
	if f.Type != "" && !slices.Contains(db.EventTypes, f.Type) {
		return usagef("events: --type %q: not an event type (one of %s)", f.Type, strings.Join(db.EventTypes, ", "))
	}
	if f.Limit < 0 || (*follow && f.Limit > 0) {
		return usagef("events: --limit must be positive, and not with --follow")
	}
	if *timeout <= 0 {
		return usagef("events: --timeout must be positive, got %s", *timeout)
	}
	cl, err := conn.client("events")
	if err != nil {
		return err
	}
	defer cl.Close()
	recent := func(e clusterapi.Event) bool { return after.IsZero() || !e.Time.Before(after) }
	if *follow {
		// The backlog first, within --timeout; then as long as the
		// command runs.
		tw := newEventTable(stdout)
		return cl.FollowEvents(ctx, f, func(e clusterapi.Event) error {
			if !recent(e) {
				return nil
			}
			if *asJSON {
				return json.NewEncoder(stdout).Encode(e)
			}
			tw.row(e)
			return tw.Flush()
		})
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := cl.Events(ctx, f)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	evs := slices.DeleteFunc(res.Events, func(e clusterapi.Event) bool { return !recent(e) })
	if *asJSON {
		return writeIndented(stdout, evs)
	}
	tw := newEventTable(stdout)
	for _, e := range evs {
		tw.row(e)
	}
	return tw.Flush()
}

func writeIndented(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// eventTable prints events as a table, its header once.
type eventTable struct {
	*tabwriter.Writer
	header bool
	now    time.Time
}

func newEventTable(w io.Writer) *eventTable {
	return &eventTable{Writer: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0), now: time.Now()}
}

func (t *eventTable) row(e clusterapi.Event) {
	if !t.header {
		fmt.Fprintln(t, "SEQ\tTIME\tTYPE\tNODE\tOBJECT\tMESSAGE\tCAUSE")
		t.header = true
	}
	obj := e.Group
	if e.Resource != "" {
		obj = e.Group + "/" + e.Resource
	}
	fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, whenText(e.Time, t.now), e.Type, dash(e.Node), dash(obj), e.Message, causeText(e))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// whenText is a time for people: the local time of day with
// milliseconds (events come fast), and the date when it is not today.
func whenText(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if t.YearDay() == now.YearDay() && t.Year() == now.Year() {
		return t.Format("15:04:05.000")
	}
	return t.Format("2006-01-02 15:04:05.000")
}

// causeText is an event's cause: the earlier event by its number, or
// the condition.
func causeText(e clusterapi.Event) string {
	switch {
	case e.CauseSeq > 0:
		return fmt.Sprintf("<- #%d", e.CauseSeq)
	case e.CauseEvent != "":
		return fmt.Sprintf("<- %s (no longer kept)", e.CauseEvent)
	case e.Cause != "":
		return e.Cause
	}
	return "-"
}

// whyResult is `cluster why --json`.
type whyResult struct {
	Group string `json:"group"`
	Owner string `json:"owner,omitempty"`
	State string `json:"state,omitempty"`
	// Chain is the group's last event first, then each one's cause.
	Chain []clusterapi.Event `json:"chain"`
	// RootCause is the condition at the end of the chain, when known.
	RootCause string `json:"root_cause,omitempty"`
}

func runWhy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster why", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	conn, timeout := eventConn(fs)
	asJSON := fs.Bool("json", false, "")
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, whyUsage)
		return nil
	}
	if err != nil {
		return usagef("why: %v (cluster why -h for the usage)", err)
	}
	if len(pos) != 1 {
		fmt.Fprint(stderr, whyUsage)
		return usagef("why: want GROUP, got %d arguments", len(pos))
	}
	if *timeout <= 0 {
		return usagef("why: --timeout must be positive, got %s", *timeout)
	}
	cl, err := conn.client("why")
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	g, err := cl.Get(ctx, "group", pos[0], false)
	if err != nil {
		return classify(fmt.Sprintf("why: group %q", pos[0]), err)
	}
	res, err := cl.Events(ctx, clusterapi.EventFilter{})
	if err != nil {
		return fmt.Errorf("why: %w", err)
	}
	w := why(g.Object, res.Events)
	if *asJSON {
		return writeIndented(stdout, w)
	}
	return printWhy(stdout, w)
}

// why walks the log from the group's last event through each cause.
func why(g clusterapi.Object, log []clusterapi.Event) whyResult {
	str := func(k string) string { s, _ := g.Props[k].(string); return s }
	w := whyResult{Group: g.Name, Owner: str("owner"), State: str("state"), Chain: []clusterapi.Event{}}
	byName := map[string]clusterapi.Event{}
	for _, e := range log {
		byName[e.Name] = e
	}
	seen := map[string]bool{}
	for name := str("event"); name != "" && !seen[name]; {
		seen[name] = true
		e, ok := byName[name]
		if !ok {
			w.RootCause = fmt.Sprintf("event %s is no longer kept (the log holds the last %d)", name, db.MaxEvents)
			break
		}
		w.Chain = append(w.Chain, e)
		w.RootCause = e.Cause
		name = e.CauseEvent
	}
	return w
}

func printWhy(out io.Writer, w whyResult) error {
	switch {
	case w.Owner == "":
		fmt.Fprintf(out, "group %s has no owner", w.Group)
	case w.State == "":
		fmt.Fprintf(out, "group %s is owned by %s", w.Group, w.Owner)
	default:
		fmt.Fprintf(out, "group %s is %s on %s", w.Group, w.State, w.Owner)
	}
	if len(w.Chain) == 0 {
		fmt.Fprintln(out, "; no event about it is recorded")
		return nil
	}
	fmt.Fprintln(out, ", because:")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	now := time.Now()
	for _, e := range w.Chain {
		fmt.Fprintf(tw, "  #%d\t%s\t%s\t%s\n", e.Seq, whenText(e.Time, now), e.Type, e.Message)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if w.RootCause != "" {
		fmt.Fprintf(out, "root cause: %s\n", w.RootCause)
	}
	return nil
}
