package resources

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// Defaults of the properties (docs/resources.md).
const (
	DefaultRestartThreshold  = 3
	DefaultRestartPeriodS    = 900
	DefaultLooksAliveMs      = 5000
	DefaultIsAliveMs         = 60000
	DefaultPendingTimeoutMs  = 180000
	DefaultFailoverThreshold = 10
	DefaultFailoverPeriodS   = 6 * 3600
)

// RestartAction is what happens when a resource fails.
type RestartAction uint8

// The restart actions.
const (
	// RestartThenFailover: restart in place up to the threshold, then
	// fail the group over (the default).
	RestartThenFailover RestartAction = iota
	// RestartOnly: restart up to the threshold, then leave it failed.
	RestartOnly
	// NoRestart: leave it failed.
	NoRestart
)

// Failback is a group's failback policy.
type Failback uint8

// The failback policies.
const (
	FailbackNever Failback = iota
	FailbackImmediate
	FailbackWindow
)

// Resource is a resource as the failover manager reads it from the
// database.
type Resource struct {
	Name, Group string
	// Type is the built-in type that runs it: the resource's type, or the
	// agent of the resourcetype object it names.
	Type             string
	DependsOn        []string
	Restart          RestartAction
	RestartThreshold int
	RestartPeriodS   int64
	LooksAliveMs     int64
	IsAliveMs        int64
	PendingTimeoutMs int64
	PossibleOwners   []string // node names; empty: every node
	Offline          bool     // target_state offline
	State            string   // runtime, as last written
	Props            Props
	// TypeProps are the properties of the resourcetype object it names
	// (nil for a built-in type).
	TypeProps Props
}

// Group is a group as the failover manager reads it.
type Group struct {
	Name              string
	Version           uint64
	Preferred         []string
	Failback          Failback
	WindowStart       int
	WindowEnd         int
	FailoverThreshold int
	FailoverPeriodS   int64
	Offline           bool // target_state offline
	MovingTo          string
	MoveError         string // why the last move was cancelled
	Owner             string
	OwnerInc          uint64
	Failovers         []int64 // Unix ms
	State             string
	// Event is the name of the last event recorded about the group
	// (events.go): where `cluster why` starts.
	Event string
	// Resources in dependency order: each after the ones it depends on,
	// ties broken by name.
	Resources []*Resource
}

// Model is the part of the database the failover manager works from.
type Model struct {
	Seq    uint64
	Groups []*Group // by name
	// Nodes maps node names to ids and back.
	NodeID   map[string]nodes.ID
	NodeName map[nodes.ID]string
	// Paused nodes host nothing new (a drained or an evicted node is
	// paused too).
	Paused nodes.Set
	// Draining nodes move their groups away (cluster node drain);
	// Evicted ones too, and the members refuse their joins (cluster node
	// evict).
	Draining, Evicted nodes.Set
	// kinds: the database's KindSeq of each kind read, when read.
	kinds [4]uint64
}

// modelKinds are the kinds of objects the model reads.
var modelKinds = [4]db.Kind{db.KindNode, db.KindResourceType, db.KindResource, db.KindGroup}

func kindSeqs(d *db.DB) (s [4]uint64) {
	for i, k := range modelKinds {
		s[i] = d.KindSeq(k)
	}
	return s
}

// Current reports whether the model still holds what d holds: no object
// of a kind it reads changed since it was read. An update to other
// objects (networks, the cluster's properties) moves it to d's Seq.
func (m *Model) Current(d *db.DB) bool {
	if d.Seq() == m.Seq {
		return true
	}
	if kindSeqs(d) == m.kinds {
		m.Seq = d.Seq()
		return true
	}
	return false
}

// Load reads the model from the database.
func Load(d *db.DB) *Model {
	m := &Model{Seq: d.Seq(), NodeID: map[string]nodes.ID{}, NodeName: map[nodes.ID]string{}, kinds: kindSeqs(d)}
	for _, o := range d.List(db.KindNode) {
		p := Props(o.Props)
		id := nodes.ID(p.Int("id", 0))
		if !id.Valid() {
			continue
		}
		m.NodeID[o.Name] = id
		m.NodeName[id] = o.Name
		if p.Bool("evicted", false) {
			m.Evicted = m.Evicted.Add(id)
		}
		if p.Bool("draining", false) || p.Bool("evicted", false) {
			m.Draining = m.Draining.Add(id)
		}
		if p.Bool("paused", false) || m.Draining.Has(id) {
			m.Paused = m.Paused.Add(id)
		}
	}
	agents := map[string]Props{}
	for _, o := range d.List(db.KindResourceType) {
		agents[o.Name] = Props(o.Props)
	}
	byGroup := map[string][]*Resource{}
	for _, o := range d.List(db.KindResource) {
		r := resourceOf(o, agents)
		byGroup[r.Group] = append(byGroup[r.Group], r)
	}
	for _, o := range d.List(db.KindGroup) {
		g := groupOf(o)
		g.Resources = dependencyOrder(byGroup[g.Name])
		m.Groups = append(m.Groups, g)
	}
	return m
}

func resourceOf(o db.Object, agents map[string]Props) *Resource {
	p := Props(o.Props)
	r := &Resource{
		Name: o.Name, Group: p.Str("group", ""), Type: p.Str("type", ""),
		DependsOn:        p.List("depends_on"),
		RestartThreshold: int(p.Int("restart_threshold", DefaultRestartThreshold)),
		RestartPeriodS:   p.Int("restart_period_s", DefaultRestartPeriodS),
		LooksAliveMs:     p.Int("looks_alive_ms", DefaultLooksAliveMs),
		IsAliveMs:        p.Int("is_alive_ms", DefaultIsAliveMs),
		PendingTimeoutMs: p.Int("pending_timeout_ms", DefaultPendingTimeoutMs),
		PossibleOwners:   p.List("possible_owners"),
		Offline:          p.Str("target_state", "online") == "offline",
		State:            p.Str("state", ""),
		Props:            p,
	}
	if t, ok := agents[r.Type]; ok && t.Str("agent", "") != "" {
		r.Type, r.TypeProps = t.Str("agent", ""), t
	}
	switch p.Str("restart_action", "failover") {
	case "restart":
		r.Restart = RestartOnly
	case "none":
		r.Restart = NoRestart
	}
	return r
}

func groupOf(o db.Object) *Group {
	p := Props(o.Props)
	g := &Group{
		Name: o.Name, Version: o.Version, Preferred: p.List("preferred_owners"),
		WindowStart:       int(p.Int("failback_window_start", 0)),
		WindowEnd:         int(p.Int("failback_window_end", 0)),
		FailoverThreshold: int(p.Int("failover_threshold", DefaultFailoverThreshold)),
		FailoverPeriodS:   p.Int("failover_period_s", DefaultFailoverPeriodS),
		Offline:           p.Str("target_state", "online") == "offline",
		MovingTo:          p.Str("moving_to", ""),
		MoveError:         p.Str("move_error", ""),
		Owner:             p.Str("owner", ""),
		OwnerInc:          uint64(p.Int("owner_inc", 0)),
		State:             p.Str("state", ""),
		Event:             p.Str("event", ""),
	}
	switch p.Str("failback", "never") {
	case "immediate":
		g.Failback = FailbackImmediate
	case "window":
		g.Failback = FailbackWindow
	}
	for _, s := range p.List("failovers") {
		if t, err := strconv.ParseInt(s, 10, 64); err == nil {
			g.Failovers = append(g.Failovers, t)
		}
	}
	return g
}

// dependencyOrder sorts rs so that every resource comes after the ones it
// depends on (DependencyOrder).
func dependencyOrder(rs []*Resource) []*Resource {
	return DependencyOrder(rs, func(r *Resource) string { return r.Name }, func(r *Resource) []string { return r.DependsOn })
}

// DependencyOrder sorts items (a group's resources) so that every one comes
// after the ones it depends on: the order the failover manager brings them
// online (Kahn's algorithm, the ready item with the smallest name first).
// The database refuses cycles; an item in one anyway (or depending on an
// item outside the list) comes last, in name order. It sorts items in
// place by name and returns the order in a new slice.
func DependencyOrder[T any](items []T, name func(T) string, deps func(T) []string) []T {
	slices.SortFunc(items, func(a, b T) int { return cmp.Compare(name(a), name(b)) })
	in := map[string]bool{}
	for _, r := range items {
		in[name(r)] = true
	}
	done := map[string]bool{}
	var out []T
	for len(out) < len(items) {
		progress := false
		for _, r := range items {
			if done[name(r)] {
				continue
			}
			ready := true
			for _, d := range deps(r) {
				if in[d] && !done[d] {
					ready = false
					break
				}
			}
			if ready {
				done[name(r)] = true
				out = append(out, r)
				progress = true
				break
			}
		}
		if !progress {
			for _, r := range items {
				if !done[name(r)] {
					done[name(r)] = true
					out = append(out, r)
				}
			}
		}
	}
	return out
}

// Candidates returns the nodes that may own g, in order: its preferred
// owners, then every other node of the database by id. It is computed
// from the database alone, so every node computes the same list.
func (m *Model) Candidates(g *Group) []nodes.ID {
	var out []nodes.ID
	for _, n := range g.Preferred {
		if id, ok := m.NodeID[n]; ok && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	ids := make([]nodes.ID, 0, len(m.NodeName))
	for id := range m.NodeName {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// Possible reports whether node id may host every resource of g.
func (m *Model) Possible(g *Group, id nodes.ID) bool {
	name, ok := m.NodeName[id]
	if !ok {
		return false
	}
	for _, r := range g.Resources {
		if len(r.PossibleOwners) > 0 && !slices.Contains(r.PossibleOwners, name) {
			return false
		}
	}
	return true
}

// Unfit says why node name cannot take g now (a move to it would be
// cancelled), or "" when it can: it must be another member, not paused,
// and a possible owner of every resource.
func (m *Model) Unfit(g *Group, name string, self nodes.ID, members nodes.Set) string {
	id, ok := m.NodeID[name]
	switch {
	case !ok:
		return fmt.Sprintf("node %s has no node object", name)
	case id == self:
		return fmt.Sprintf("node %s already owns it", name)
	case !members.Has(id):
		return fmt.Sprintf("node %s is not a member of the cluster", name)
	case m.Evicted.Has(id):
		return fmt.Sprintf("node %s is evicted", name)
	case m.Draining.Has(id):
		return fmt.Sprintf("node %s is being drained", name)
	case m.Paused.Has(id):
		return fmt.Sprintf("node %s is paused", name)
	}
	for _, r := range g.Resources {
		if len(r.PossibleOwners) > 0 && !slices.Contains(r.PossibleOwners, name) {
			return fmt.Sprintf("node %s is not a possible owner of resource %s", name, r.Name)
		}
	}
	return ""
}

// Choose returns the owner g should have among members, never except (0:
// none fits). Every node computes the same answer from the same database
// and membership: that is how the survivors of a node failure agree on
// the new owner of each of its groups without exchanging a message.
func (m *Model) Choose(g *Group, members nodes.Set, except nodes.ID) nodes.ID {
	for _, id := range m.Candidates(g) {
		if id != except && members.Has(id) && !m.Paused.Has(id) && m.Possible(g, id) {
			return id
		}
	}
	return 0
}

// Group returns the group named name, or nil.
func (m *Model) Group(name string) *Group {
	i, ok := slices.BinarySearchFunc(m.Groups, name, func(g *Group, n string) int { return cmp.Compare(g.Name, n) })
	if !ok {
		return nil
	}
	return m.Groups[i]
}

func (g *Group) String() string { return fmt.Sprintf("group %s", g.Name) }
