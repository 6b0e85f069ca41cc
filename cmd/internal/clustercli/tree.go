package clustercli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// clusterView is what `cluster status` draws: one node's GET /v1/status and
// the database's nodes, groups and resources (DBErr: why they could not be
// read; the tree then shows the membership alone).
type clusterView struct {
	Status    clusterapi.Status
	Nodes     []clusterapi.Object
	Groups    []clusterapi.Object
	Resources []clusterapi.Object
	DBErr     error
}

// Highlights: a problem (red, or "!" without colour) and something in
// progress (yellow, or "~").
const (
	markProblem  = "!"
	markProgress = "~"
)

// tree writes the lines of the status tree; each line may be marked as a
// problem or as in progress, and problems are collected for the summary.
type tree struct {
	b        strings.Builder
	color    bool
	problems []string
	progress []string
}

func (t *tree) line(depth int, mark, text string) {
	indent := strings.Repeat("  ", depth)
	switch {
	case mark == "":
		fmt.Fprintf(&t.b, "  %s%s\n", indent, text)
	case t.color && mark == markProblem:
		fmt.Fprintf(&t.b, "  %s\x1b[1;31m%s\x1b[0m\n", indent, text)
	case t.color:
		fmt.Fprintf(&t.b, "  %s\x1b[33m%s\x1b[0m\n", indent, text)
	default:
		fmt.Fprintf(&t.b, "%s %s%s\n", mark, indent, text)
	}
}

func (t *tree) inProgress(depth int, text, summary string) {
	t.line(depth, markProgress, text)
	t.progress = append(t.progress, summary)
}

func (t *tree) heading(text string) { fmt.Fprintf(&t.b, "%s\n", text) }

func (t *tree) problem(depth int, text, summary string) {
	t.line(depth, markProblem, text)
	t.problems = append(t.problems, summary)
}

// renderStatus writes v as a tree: the cluster, its nodes, networks and
// groups with their resources in dependency order, problems marked, and a
// summary line of them at the end.
func renderStatus(w io.Writer, v clusterView, color bool) error {
	st := v.Status
	t := &tree{color: color}
	names := map[int]string{st.Node: st.Name}
	for _, p := range st.Peers {
		names[p.Node] = p.Name
	}
	name := func(id int) string {
		if n, ok := names[id]; ok && n != "" {
			return n
		}
		return fmt.Sprintf("node %d", id)
	}
	owner := 0
	switch {
	case st.QuorumOwner:
		owner = st.Node
	case st.GUP.Locker != 0:
		owner = st.GUP.Locker
	}

	head := "cluster"
	if st.Cluster != "" {
		head += " " + st.Cluster
	}
	head += fmt.Sprintf(", epoch %s, as %s sees it (up %s)", st.Epoch, st.Name,
		humanize.RelTime(time.Time{}, time.Time{}.Add(time.Duration(st.UptimeMS)*time.Millisecond), "", ""))
	t.heading(head)
	q := "quorum: "
	if owner != 0 {
		q += "owned by " + name(owner)
	} else {
		q += "no owner known"
	}
	if st.QuorumDevice != "" {
		q += ", LUN " + st.QuorumDevice
	}
	if owner == 0 {
		t.problem(0, q, "no quorum owner")
	} else {
		t.line(0, "", q)
	}
	if st.Stage != "" && st.Stage != "stabilized" {
		t.inProgress(0, fmt.Sprintf("regroup round %d in stage %s", st.Round, st.Stage), "regroup")
	}

	// Nodes: this one, then its peers in id order.
	flag := func(node, prop string) bool {
		for _, o := range v.Nodes {
			if o.Name == node {
				b, _ := o.Props[prop].(bool)
				return b
			}
		}
		return false
	}
	// marks are the administrator's marks on a node, as the database has
	// them: evicted (out of the cluster until added back), draining,
	// paused.
	marks := func(node string) string {
		switch {
		case flag(node, "evicted"):
			return ", evicted (cluster node add re-admits it)"
		case flag(node, "draining"):
			return ", draining"
		case flag(node, "paused"):
			return ", paused"
		}
		return ""
	}
	t.heading("nodes")
	netNames := make([]string, 0, len(st.Networks))
	for n := range st.Networks {
		netNames = append(netNames, n)
	}
	slices.Sort(netNames)
	self := fmt.Sprintf("%s (id %d): %s", st.Name, st.Node, st.State)
	self += marks(st.Name)
	if owner == st.Node {
		self += ", quorum owner"
	}
	self += fmt.Sprintf(", incarnation %d, this node", st.Incarnation)
	switch {
	case st.State == "up" && flag(st.Name, "draining"):
		t.inProgress(1, self, st.Name+" draining")
	case st.State == "up":
		t.line(1, "", self)
	default:
		t.problem(1, self, fmt.Sprintf("%s is %s", st.Name, st.State))
	}
	peers := slices.Clone(st.Peers)
	slices.SortFunc(peers, func(a, b clusterapi.PeerStatus) int { return a.Node - b.Node })
	for _, p := range peers {
		state := "down"
		switch {
		case slices.Contains(st.Members, p.Node):
			state = "up"
		case p.Alive:
			state = "joining"
		}
		s := fmt.Sprintf("%s (id %d): %s", p.Name, p.Node, state)
		s += marks(p.Name)
		if owner == p.Node {
			s += ", quorum owner"
		}
		if p.Incarnation != 0 {
			s += fmt.Sprintf(", incarnation %d", p.Incarnation)
		}
		if state != "down" {
			heard := "none"
			if len(p.NetworksUp) > 0 {
				heard = strings.Join(p.NetworksUp, ", ")
			}
			s += ", heard on " + heard
		}
		switch {
		case flag(p.Name, "evicted") && state == "down":
			t.line(1, "", s) // out of the cluster on purpose
		case flag(p.Name, "draining"):
			t.inProgress(1, s, p.Name+" draining")
		case state == "down":
			t.problem(1, s, p.Name+" is down")
		case state == "joining":
			t.inProgress(1, s, p.Name+" joining")
		default:
			t.line(1, "", s)
		}
	}

	// Networks: up when this node hears every other member on it.
	t.heading("networks")
	for _, n := range netNames {
		up := st.Networks[n].Up
		var missing []string
		for _, m := range st.Members {
			if m != st.Node && !slices.Contains(up, m) {
				missing = append(missing, name(m))
			}
		}
		switch {
		case len(missing) == 0:
			t.line(1, "", n+": up")
		case len(missing) == len(st.Members)-1:
			t.problem(1, fmt.Sprintf("%s: down (%s hears no other member on it)", n, st.Name), fmt.Sprintf("network %s down", n))
		default:
			who := strings.Join(missing, ", ")
			t.problem(1, fmt.Sprintf("%s: partly down (%s does not hear %s on it)", n, st.Name, who),
				fmt.Sprintf("network %s down to %s", n, who))
		}
	}

	// Groups, each with its resources in the order they come online.
	t.heading("groups")
	if v.DBErr != nil {
		t.problem(1, "the database could not be read: "+v.DBErr.Error(), "database unreadable")
	} else if len(v.Groups) == 0 {
		t.line(1, "", "(none)")
	}
	byGroup := map[string][]clusterapi.Object{}
	for _, r := range v.Resources {
		g, _ := r.Props["group"].(string)
		byGroup[g] = append(byGroup[g], r)
	}
	for _, g := range v.Groups {
		renderGroup(t, g, dependencyOrder(byGroup[g.Name]))
	}

	sum := "no problems"
	if n := len(t.problems); n > 0 {
		sum = fmt.Sprintf("%d %s: %s", n, plural(n, "problem"), strings.Join(t.problems, "; "))
	}
	if len(t.progress) > 0 {
		sum += "; in progress: " + strings.Join(t.progress, "; ")
	}
	t.heading(sum)
	_, err := io.WriteString(w, t.b.String())
	return err
}

func str(o clusterapi.Object, key, def string) string {
	if s, ok := o.Props[key].(string); ok && s != "" {
		return s
	}
	return def
}

func strList(o clusterapi.Object, key string) []string {
	var out []string
	switch v := o.Props[key].(type) {
	case []string:
		out = v
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func renderGroup(t *tree, g clusterapi.Object, rs []clusterapi.Object) {
	state, target := str(g, "state", "offline"), str(g, "target_state", "online")
	s := g.Name + ": " + state
	if o := str(g, "owner", ""); o != "" {
		s += " on " + o
	}
	if target != "online" {
		s += " (target " + target + ")"
	}
	switch to := str(g, "moving_to", ""); {
	case to != "":
		t.inProgress(1, s+", moving to "+to, fmt.Sprintf("group %s moving to %s", g.Name, to))
	case state == "failed" || state == "partial":
		t.problem(1, s, fmt.Sprintf("group %s %s", g.Name, state))
	case target == "online" && state == "offline":
		t.problem(1, s+" (target online)", fmt.Sprintf("group %s offline, target online", g.Name))
	case state == "pending":
		t.inProgress(1, s, fmt.Sprintf("group %s pending", g.Name))
	default:
		t.line(1, "", s)
	}
	for _, r := range rs {
		rstate := str(r, "state", "offline")
		line := fmt.Sprintf("%s: %s, %s", r.Name, rstate, str(r, "type", "?"))
		if deps := strList(r, "depends_on"); len(deps) > 0 {
			line += ", needs " + strings.Join(deps, ", ")
		}
		if why := str(r, "reason", ""); why != "" {
			line += ": " + why
		}
		switch {
		case rstate == "failed":
			t.problem(2, line, fmt.Sprintf("resource %s failed", r.Name))
		case strings.HasSuffix(rstate, "-pending"):
			t.line(2, markProgress, line)
		default:
			t.line(2, "", line)
		}
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// dependencyOrder sorts a group's resources in the order the failover
// manager brings them online (resources.DependencyOrder).
func dependencyOrder(rs []clusterapi.Object) []clusterapi.Object {
	return resources.DependencyOrder(slices.Clone(rs), func(o clusterapi.Object) string { return o.Name },
		func(o clusterapi.Object) []string { return strList(o, "depends_on") })
}
