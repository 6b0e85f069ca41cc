package clusterapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// The long operations (docs/clusterd.md, "Long operations"): a group move,
// a node drain, an eviction, a node's leave. Each is one write to the
// database (or POST /v1/leave); the failover manager of the owner carries
// it out and records what it did in the database, and the client follows
// it there through GET /v1/db/watch, reporting each step as a Progress,
// until it finished or failed. The client decides nothing: it reads the
// outcome the manager wrote (owner, state, move_error).
//
// An application moves a group and waits for the outcome so:
//
//	cl := clusterapi.NewClient("/run/wolfpack/clusterd.sock")
//	defer cl.Close()
//	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
//	defer cancel()
//	err := cl.MoveGroup(ctx, "web", "node2", true, func(p clusterapi.Progress) { log.Print(p.Text) })
//	var oe *clusterapi.OpError
//	if errors.As(err, &oe) {
//		log.Print("not moved: ", oe.Reason) // "move to node2 cancelled: node node2 is paused"
//	}
//
// The program clusterapi/examples/whereis reads where a group runs (Get)
// and follows its moves (Watch); testbed/nscluster/failover's
// TestIntegrationLongOperations runs it against a running cluster.

// LeavePath starts a planned stop of the node that answers: POST, operator
// role; the answer is a LeaveResult.
const LeavePath = "/v1/leave"

// LeaveRequest is the body of POST /v1/leave: {} (no field yet).
type LeaveRequest struct{}

// LeaveResult answers POST /v1/leave.
type LeaveResult struct {
	Node     string `json:"node"`
	Stopping bool   `json:"stopping"`
}

// Watch follows the database changes the node applies (GET
// /v1/db/watch), calling fn for each, until ctx ends, the stream ends
// (the daemon stopped) or fn returns an error; it returns that error, or
// nil when the stream ended. ready, when not nil, is called once the
// node registered the watch: a change applied after that is seen.
func (c *Client) Watch(ctx context.Context, ready func(), fn func(Change) error) error {
	if err := followLines(ctx, c, DBPath+"/watch", "watch", ready, fn); err != nil {
		return err
	}
	return ctx.Err()
}

// followLines GETs path, a stream of JSON lines, and calls fn with each
// line decoded as a T (ready first, once the answer is 200), until the
// stream ends (nil), or a request, a decode or fn fails (that error;
// what names the request in it).
func followLines[T any](ctx context.Context, c *Client, path, what string, ready func(), fn func(T) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", what, c.where, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", what, c.where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b := make([]byte, 4096)
		n, _ := resp.Body.Read(b)
		return fmt.Errorf("%s on %s: %w", what, c.where, newStatusError(resp.StatusCode, b[:n]))
	}
	if ready != nil {
		ready()
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return fmt.Errorf("%s on %s: %w", what, c.where, err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s on %s: %w", what, c.where, err)
	}
	return nil
}

// Progress is one step of a long operation, as the database shows it.
type Progress struct {
	Group     string          `json:"group"`
	Owner     string          `json:"owner"`
	MovingTo  string          `json:"moving_to,omitempty"`
	State     string          `json:"state"`
	Resources []ResourceState `json:"resources"`
	// Text says it for people: "web: online on node2 (ip online, app
	// online)".
	Text string `json:"text"`
}

// ResourceState is a resource's state in the database, and the node that
// reported it.
type ResourceState struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Node   string `json:"node,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// OpError is a long operation that failed: Reason says why (the failover
// manager's, when it refused or could not carry it out).
type OpError struct {
	Op     string // "move web to node2", "drain node1"
	Reason string
}

func (e *OpError) Error() string { return e.Op + " failed: " + e.Reason }

// follower re-reads what an operation watches after each change.
type follower struct {
	c    *Client
	last map[string]string // group -> the last progress text reported
	fn   func(Progress)
}

// follow runs step after ready (the watch registered) and after every
// change, until step reports done or an error, or ctx ends (an OpError
// naming op and the last step seen).
func (c *Client) follow(ctx context.Context, op string, start func() error, step func() (bool, error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kick := make(chan struct{}, 1)
	// One channel, in order: start's answer (once the watch is
	// registered), then the watch's end. A watch that ends right after
	// start cannot hide start's refusal.
	type watchEvent struct {
		started bool
		err     error
	}
	evc := make(chan watchEvent, 2)
	go func() {
		err := c.Watch(ctx, func() { evc <- watchEvent{started: true, err: start()} }, func(Change) error {
			select {
			case kick <- struct{}{}:
			default:
			}
			return nil
		})
		evc <- watchEvent{err: err}
	}()
	if ev := <-evc; !ev.started {
		if ev.err == nil {
			ev.err = errors.New("the watch ended")
		}
		return ev.err
	} else if ev.err != nil {
		return ev.err
	}
	for {
		done, err := step()
		if err != nil || done {
			if ctx.Err() != nil && err != nil && errors.Is(err, context.DeadlineExceeded) {
				return &OpError{Op: op, Reason: "timed out"}
			}
			return err
		}
		select {
		case <-kick:
		case ev := <-evc:
			if ctx.Err() != nil {
				return &OpError{Op: op, Reason: "timed out"}
			}
			err := ev.err
			if err == nil {
				err = errors.New("the daemon stopped answering")
			}
			return &OpError{Op: op, Reason: err.Error()}
		case <-ctx.Done():
			return &OpError{Op: op, Reason: "timed out"}
		}
	}
}

// groupView reads a group and its resources from the node's own copy
// (the watch reported them applied there).
func (f *follower) groupView(ctx context.Context, name string, res []Object) (Object, Progress, error) {
	r, err := f.c.Get(ctx, "group", name, true)
	if err != nil {
		return Object{}, Progress{}, err
	}
	g := r.Object
	p := Progress{Group: name, Owner: str(g, "owner"), MovingTo: str(g, "moving_to"), State: str(g, "state")}
	var parts []string
	for _, o := range res {
		if str(o, "group") != name {
			continue
		}
		rs := ResourceState{Name: o.Name, State: cmpOr(str(o, "state"), "unknown"), Node: str(o, "state_node"), Reason: str(o, "reason")}
		p.Resources = append(p.Resources, rs)
		parts = append(parts, rs.Name+" "+rs.State)
	}
	detail := ""
	if len(parts) > 0 {
		detail = " (" + strings.Join(parts, ", ") + ")"
	}
	switch {
	case p.MovingTo != "":
		p.Text = fmt.Sprintf("%s: moving from %s to %s: taking it offline on %s%s", name, p.Owner, p.MovingTo, p.Owner, detail)
	case p.State == "pending":
		p.Text = fmt.Sprintf("%s: bringing it online on %s%s", name, p.Owner, detail)
	default:
		p.Text = fmt.Sprintf("%s: %s on %s%s", name, cmpOr(p.State, "unknown"), p.Owner, detail)
	}
	return g, p, nil
}

// report hands p on once per new text.
func (f *follower) report(p Progress) {
	if f.fn != nil && f.last[p.Group] != p.Text {
		f.last[p.Group] = p.Text
		f.fn(p)
	}
}

func (f *follower) resources(ctx context.Context) ([]Object, error) {
	r, err := f.c.List(ctx, "resource", true)
	return r.Objects, err
}

// MoveGroup moves group to node: it sets the group's moving_to (a
// transaction that checks the group's version), then, when wait, follows
// the move until the group is online (or offline, if that is its
// target_state) on node. Each step the database shows goes to progress
// (nil: none). It fails with an *OpError when the failover manager
// cancelled the move (the reason it recorded in move_error: node is not a
// member, is paused, is not a possible owner, already owns the group),
// when a resource failed on node, when the group ended on another node,
// and when ctx ends first. A missing group is a *StatusError with Code 404;
// a move that raced another change of the group, Code 409.
func (c *Client) MoveGroup(ctx context.Context, group, node string, wait bool, progress func(Progress)) error {
	op := "move " + group + " to " + node
	var from string
	commit := func() error {
		// The owner the move starts from is the one the write saw: the
		// write checks the version read. The owner may record a state in
		// between (a 409): read again, a few times.
		for try := 0; ; try++ {
			r, err := c.Get(ctx, "group", group, false)
			if err != nil {
				return err
			}
			from = str(r.Object, "owner")
			_, err = c.Commit(ctx, Tx{Ops: []Op{
				{Op: "check", Kind: "group", Name: group, IfVersion: r.Object.Version},
				{Op: "set", Kind: "group", Name: group, Props: map[string]any{"moving_to": node}},
				{Op: "delete-props", Kind: "group", Name: group, Remove: []string{"move_error"}},
			}})
			var se *StatusError
			if err == nil || try == 2 || !errors.As(err, &se) || se.Code != http.StatusConflict || !strings.Contains(se.Message, db.ErrPrecondition.Error()) {
				return err
			}
		}
	}
	if !wait {
		return commit()
	}
	f := &follower{c: c, last: map[string]string{}, fn: progress}
	return c.follow(ctx, op, commit, func() (bool, error) {
		res, err := f.resources(ctx)
		if err != nil {
			return false, err
		}
		g, p, err := f.groupView(ctx, group, res)
		if err != nil {
			return false, err
		}
		f.report(p)
		return moveOutcome(op, g, p, from, node)
	})
}

// moveOutcome reads a move's outcome from the group: done, failed (an
// *OpError), or under way.
func moveOutcome(op string, g Object, p Progress, from, to string) (bool, error) {
	switch {
	case p.MovingTo == to:
		return false, nil
	case p.MovingTo != "":
		return false, &OpError{Op: op, Reason: "another move, to " + p.MovingTo + ", replaced it"}
	case p.Owner == to && (p.State == "online" || p.State == "offline"):
		return true, nil
	case p.Owner == to && p.State == "failed":
		return false, &OpError{Op: op, Reason: "the group failed on " + to + failedResources(p)}
	case p.Owner == to:
		return false, nil
	case p.Owner == from:
		if why := str(g, "move_error"); why != "" {
			return false, &OpError{Op: op, Reason: why}
		}
		return false, &OpError{Op: op, Reason: "the move was cancelled"}
	}
	return false, &OpError{Op: op, Reason: fmt.Sprintf("the group went to %s instead (%s)", cmpOr(p.Owner, "no node"), cmpOr(p.State, "no state"))}
}

func failedResources(p Progress) string {
	var s []string
	for _, r := range p.Resources {
		if r.State == "failed" {
			s = append(s, r.Name+": "+cmpOr(r.Reason, "failed"))
		}
	}
	if len(s) == 0 {
		return ""
	}
	return ": " + strings.Join(s, "; ")
}

// DrainNode pauses node and moves every group it owns to other nodes
// (each to the node the failover manager chooses, as a planned stop
// does): it sets the node's paused and draining, then, when wait, follows
// the moves until node owns nothing and each group that left is online
// elsewhere. A group no other member may host stays on node and fails
// the drain (an *OpError naming it and the reason the failover manager
// recorded); so does a group that failed where it went. ResumeNode undoes
// the pause. A missing node is a *StatusError with Code 404.
func (c *Client) DrainNode(ctx context.Context, node string, wait bool, progress func(Progress)) error {
	return c.drain(ctx, "drain "+node, node, wait, progress,
		Op{Op: "set", Kind: "node", Name: node, Props: map[string]any{"paused": true, "draining": true}})
}

func (c *Client) drain(ctx context.Context, op, node string, wait bool, progress func(Progress), ops ...Op) error {
	if _, err := c.Get(ctx, "node", node, false); err != nil {
		return err
	}
	commit := func() error {
		_, err := c.Commit(ctx, Tx{Ops: ops})
		return err
	}
	if !wait {
		return commit()
	}
	f := &follower{c: c, last: map[string]string{}, fn: progress}
	moved := map[string]bool{} // groups that were on node
	return c.follow(ctx, op, commit, func() (bool, error) {
		groups, err := c.List(ctx, "group", true)
		if err != nil {
			return false, err
		}
		res, err := f.resources(ctx)
		if err != nil {
			return false, err
		}
		done := true
		var stuck []string
		for _, g := range groups.Objects {
			owner := str(g, "owner")
			if owner != node && !moved[g.Name] {
				continue
			}
			moved[g.Name] = true
			_, p, err := f.groupView(ctx, g.Name, res)
			if err != nil {
				return false, err
			}
			f.report(p)
			switch why := str(g, "move_error"); {
			case owner == node && p.MovingTo == "" && strings.HasPrefix(why, "drain of "):
				stuck = append(stuck, g.Name+" stays on "+node+": "+why)
			case owner == node || p.MovingTo != "" || p.State == "pending" || p.State == "":
				done = false
			case p.State == "failed":
				stuck = append(stuck, g.Name+" failed on "+owner+failedResources(p))
			}
		}
		if !done {
			return false, nil
		}
		if len(stuck) > 0 {
			slices.Sort(stuck)
			return false, &OpError{Op: op, Reason: strings.Join(stuck, "; ")}
		}
		return true, nil
	})
}

// ResumeNode undoes a pause or a drain: node may host groups again (the
// groups that left it stay where they are).
func (c *Client) ResumeNode(ctx context.Context, node string) error {
	_, err := c.Commit(ctx, Tx{Ops: []Op{
		{Op: "set", Kind: "node", Name: node, Props: map[string]any{"paused": false}},
		{Op: "delete-props", Kind: "node", Name: node, Remove: []string{"draining"}},
	}})
	return err
}

// EvictNode removes node from the cluster (as WSFC's Evict-ClusterNode):
// it drains it as DrainNode does (a group no other member may host stays
// offline once node is out), then sets its evicted property: the members
// regroup it out of the membership (its clusterd stops, exit status 4),
// the arbitration's winner removes its key from the quorum disk, and the
// members refuse its joins until AddNode. EvictNode returns once node is
// no longer a member in the view of the node the client asks.
func (c *Client) EvictNode(ctx context.Context, node string, progress func(Progress)) error {
	op := "evict " + node
	err := c.drain(ctx, op, node, true, progress,
		Op{Op: "set", Kind: "node", Name: node, Props: map[string]any{"paused": true, "draining": true}})
	var oe *OpError
	if err != nil && (!errors.As(err, &oe) || oe.Reason == "timed out") {
		return err
	}
	r, gerr := c.Get(ctx, "node", node, false)
	if gerr != nil {
		return gerr
	}
	if _, err := c.Commit(ctx, Tx{Ops: []Op{{Op: "set", Kind: "node", Name: node, Props: map[string]any{"evicted": true}}}}); err != nil {
		return err
	}
	id := 0
	if v, ok := r.Object.Props["id"].(float64); ok {
		id = int(v)
	}
	for {
		st, _, err := c.Status(ctx)
		if err != nil {
			return &OpError{Op: op, Reason: err.Error()}
		}
		if !slices.Contains(st.Members, id) {
			if progress != nil {
				progress(Progress{Text: fmt.Sprintf("%s: evicted: out of the membership %v", node, st.Members)})
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return &OpError{Op: op, Reason: "timed out: node " + node + " is still a member"}
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// AddNode re-admits an evicted node: the members accept its joins again,
// and it may host groups (its evicted, draining and paused properties are
// cleared). The node must already be in every node file: AddNode does not
// add a node the cluster never had.
func (c *Client) AddNode(ctx context.Context, node string) error {
	if _, err := c.Get(ctx, "node", node, false); err != nil {
		return err
	}
	_, err := c.Commit(ctx, Tx{Ops: []Op{
		{Op: "set", Kind: "node", Name: node, Props: map[string]any{"paused": false}},
		{Op: "delete-props", Kind: "node", Name: node, Remove: []string{"evicted", "draining"}},
	}})
	return err
}

// Leave stops the node the client talks to, as SIGTERM does: POST
// /v1/leave, then it follows the drain of its groups (each to progress)
// until clusterd closes its admin API after leaving the membership.
func (c *Client) Leave(ctx context.Context, progress func(Progress)) error {
	st, _, err := c.Status(ctx)
	if err != nil {
		return err
	}
	f := &follower{c: c, last: map[string]string{}, fn: progress}
	start := func() error { return c.do(ctx, http.MethodPost, LeavePath, LeaveRequest{}, &LeaveResult{}) }
	err = c.follow(ctx, "leave "+st.Name, start, func() (bool, error) {
		groups, err := c.List(ctx, "group", true)
		if err != nil {
			return true, nil // the daemon stopped serving: it left
		}
		res, _ := f.resources(ctx)
		for _, g := range groups.Objects {
			if str(g, "owner") == st.Name || str(g, "moving_to") != "" {
				if _, p, err := f.groupView(ctx, g.Name, res); err == nil {
					f.report(p)
				}
			}
		}
		return false, nil
	})
	var oe *OpError
	if errors.As(err, &oe) && oe.Reason != "timed out" {
		// The watch ended: clusterd stopped. Wait for the socket to go.
		for {
			if _, _, serr := c.Status(ctx); serr != nil {
				if ctx.Err() != nil {
					return &OpError{Op: "leave " + st.Name, Reason: "timed out"}
				}
				return nil
			}
			select {
			case <-ctx.Done():
				return &OpError{Op: "leave " + st.Name, Reason: "timed out"}
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return err
}

func str(o Object, k string) string {
	s, _ := o.Props[k].(string)
	return s
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
