package clusterapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// EventsPath is the cluster-wide event log (docs/events.md):
//
//	GET /v1/events?since=SEQ&node=N&group=G&resource=R&type=T&limit=K   {seq, events: [Event]}
//	GET /v1/events?follow=1&...   the matching events after since, then each new one, one JSON Event a line
//
// Any member answers for the whole cluster: the events live in the
// replicated database.
const EventsPath = "/v1/events"

// Event is one entry of the cluster-wide event log.
type Event struct {
	// Seq is the event's number in the cluster-wide order.
	Seq int64 `json:"seq"`
	// Name is the event's name in the database (causes name events by it).
	Name string    `json:"name"`
	Time time.Time `json:"time"`
	Type string    `json:"type"`
	// Recorder is the node that recorded it.
	Recorder string `json:"recorder,omitempty"`
	// Node, Group and Resource are the objects it concerns.
	Node     string `json:"node,omitempty"`
	Group    string `json:"group,omitempty"`
	Resource string `json:"resource,omitempty"`
	Message  string `json:"message"`
	// Cause is the condition that led to it; CauseEvent (by name) and
	// CauseSeq the earlier event that did (CauseSeq 0: that event is no
	// longer kept, or was never recorded).
	Cause      string `json:"cause,omitempty"`
	CauseEvent string `json:"cause_event,omitempty"`
	CauseSeq   int64  `json:"cause_seq,omitempty"`
	// A regroup's epoch and members after and before (node ids).
	Epoch         string   `json:"epoch,omitempty"`
	Members       []string `json:"members,omitempty"`
	MembersBefore []string `json:"members_before,omitempty"`
}

// EventsResult answers GET /v1/events: the database's sequence number
// read and the matching events in order.
type EventsResult struct {
	Seq    uint64  `json:"seq"`
	Events []Event `json:"events"`
}

// EventFilter selects events: after Since (a Seq), about Node, Group,
// Resource, of Type; Limit keeps the last Limit of them (0: all).
type EventFilter struct {
	Since                       int64
	Node, Group, Resource, Type string
	Limit                       int
}

// Match reports whether e passes the filter (Limit aside).
func (f EventFilter) Match(e Event) bool {
	return e.Seq > f.Since && (f.Node == "" || e.Node == f.Node) && (f.Group == "" || e.Group == f.Group) &&
		(f.Resource == "" || e.Resource == f.Resource) && (f.Type == "" || e.Type == f.Type)
}

// Query encodes the filter as the endpoint's query.
func (f EventFilter) Query() url.Values {
	q := url.Values{}
	if f.Since > 0 {
		q.Set("since", strconv.FormatInt(f.Since, 10))
	}
	for k, v := range map[string]string{"node": f.Node, "group": f.Group, "resource": f.Resource, "type": f.Type} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// ParseEventFilter reads the endpoint's query; an unknown parameter, a
// bad number or an unknown type is an error that names it.
func ParseEventFilter(q url.Values) (f EventFilter, follow bool, err error) {
	for k, v := range q {
		if len(v) != 1 {
			return f, false, fmt.Errorf("query parameter %s given %d times", k, len(v))
		}
		s := v[0]
		switch k {
		case "since":
			f.Since, err = strconv.ParseInt(s, 10, 64)
			if err != nil || f.Since < 0 {
				return f, false, fmt.Errorf("since=%q: want an event's sequence number (an integer >= 0)", s)
			}
		case "limit":
			f.Limit, err = strconv.Atoi(s)
			if err != nil || f.Limit < 0 {
				return f, false, fmt.Errorf("limit=%q: want an integer >= 0", s)
			}
		case "node":
			f.Node = s
		case "group":
			f.Group = s
		case "resource":
			f.Resource = s
		case "type":
			if !slices.Contains(db.EventTypes, s) {
				return f, false, fmt.Errorf("type=%q: not an event type (one of %v)", s, db.EventTypes)
			}
			f.Type = s
		case "follow":
			follow, err = strconv.ParseBool(s)
			if err != nil {
				return f, false, fmt.Errorf("follow=%q: want 1 or 0", s)
			}
		default:
			return f, false, fmt.Errorf("unknown query parameter %q (since, node, group, resource, type, limit, follow)", k)
		}
	}
	return f, follow, nil
}

// EventFromObject converts an event object of the database; causeSeq
// resolves a cause_event's name to its Seq (nil: left 0).
func EventFromObject(o db.Object, causeSeq func(name string) int64) Event {
	p := func(k string) string { return o.Props[k].Str }
	e := Event{
		Seq: o.Props["seq"].Int, Name: o.Name, Time: time.UnixMilli(o.Props["time"].Int).UTC(), Type: p("type"),
		Recorder: p("recorder"), Node: p("node"), Group: p("group"), Resource: p("resource"),
		Message: p("message"), Cause: p("cause"), CauseEvent: p("cause_event"), Epoch: p("epoch"),
		Members: o.Props["members"].List, MembersBefore: o.Props["members_before"].List,
	}
	if e.CauseEvent != "" && causeSeq != nil {
		e.CauseSeq = causeSeq(e.CauseEvent)
	}
	return e
}

// EventLog returns the events of d matching f, in order.
func EventLog(d *db.DB, f EventFilter) []Event {
	seqOf := func(name string) int64 {
		o, _ := d.Get(db.KindEvent, name)
		return o.Props["seq"].Int
	}
	out := []Event{}
	for _, o := range d.List(db.KindEvent) {
		if e := EventFromObject(o, seqOf); f.Match(e) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Event) int { return int(a.Seq - b.Seq) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out
}

// Events reads the event log.
func (c *Client) Events(ctx context.Context, f EventFilter) (EventsResult, error) {
	var r EventsResult
	path := EventsPath
	if q := f.Query(); len(q) > 0 {
		path += "?" + q.Encode()
	}
	err := c.do(ctx, http.MethodGet, path, nil, &r)
	return r, err
}

// FollowEvents calls fn with each event matching f (Limit aside): those
// the log holds after f.Since, then each new one as it is committed,
// until ctx ends (nil), fn fails (its error) or the daemon stops or the
// connection breaks (an error).
func (c *Client) FollowEvents(ctx context.Context, f EventFilter, fn func(Event) error) error {
	q := f.Query()
	q.Del("limit")
	q.Set("follow", "1")
	err := followLines(ctx, c, EventsPath+"?"+q.Encode(), "follow events", nil, fn)
	switch {
	case ctx.Err() != nil:
		return nil
	case err == nil:
		return fmt.Errorf("follow events on %s: the daemon ended the stream", c.where)
	}
	return err
}
