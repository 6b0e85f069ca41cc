package db

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// check enforces the invariants on what the transaction touched, after its
// last operation: each changed object is valid and its references resolve,
// nothing still refers to a deleted object, and every group whose
// resources changed has a dependency graph within the group and acyclic.
// The checks run in the order the transaction touched the objects, then
// group by group in name order, so the first error is the same on every
// node.
func (s *stage) check() error {
	groups := map[string]bool{}
	for _, k := range s.order {
		e := s.touch[k]
		if e.after == e.before {
			continue
		}
		if e.after != nil {
			if err := checkObject(s, e.after); err != nil {
				return err
			}
		} else if err := checkUnused(s, e.before); err != nil {
			return err
		}
		if k.kind == KindResourceType && e.before != nil && e.after != nil && !sameAgent(e.before, e.after) {
			// A new agent or new parameters: every resource of the type
			// must suit them.
			users := s.resourcesOfType(k.name)
			for _, r := range users {
				o := s.get(KindResource, r)
				if err := checkObject(s, o); err != nil {
					return err
				}
				groups[o.Props["group"].Str] = true
			}
		}
		switch k.kind {
		case KindResource:
			if e.before != nil {
				groups[e.before.Props["group"].Str] = true
			}
			if e.after != nil {
				groups[e.after.Props["group"].Str] = true
			}
		case KindGroup:
			groups[k.name] = true
		}
	}
	for _, g := range sortedKeys(groups) {
		if s.get(KindGroup, g) == nil {
			continue // deleted: checkUnused saw that it is empty
		}
		if err := checkGroup(s, g); err != nil {
			return err
		}
	}
	return nil
}

// checkObject checks one object on its own and the references it makes
// (but not dependencies: checkGroup).
func checkObject(s *stage, o *object) error {
	if err := ValidName(o.Name); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, o.Kind, err)
	}
	if o.Kind == KindCluster && o.Name != ClusterObject {
		return fmt.Errorf("%w: cluster object named %q, want %q", ErrInvalid, o.Name, ClusterObject)
	}
	if len(o.Props) > MaxProps {
		return fmt.Errorf("%w: %s %q has %d properties (max %d)", ErrInvalid, o.Kind, o.Name, len(o.Props), MaxProps)
	}
	for _, n := range sortedKeys(o.Props) {
		if err := checkProp(o.Kind, n, o.Props[n]); err != nil {
			return fmt.Errorf("%w: %s %q: %v", ErrInvalid, o.Kind, o.Name, err)
		}
	}
	for _, p := range schemas[o.Kind] {
		if _, ok := o.Props[p.Name]; p.Required && !ok {
			return fmt.Errorf("%w: %s %q: property %s missing", ErrInvalid, o.Kind, o.Name, p.Name)
		}
	}
	if c := objectChecks[o.Kind]; c != nil {
		if err := c(o.Props); err != nil {
			return fmt.Errorf("%w: %s %q: %v", ErrInvalid, o.Kind, o.Name, err)
		}
	}
	switch o.Kind {
	case KindResource:
		if g := o.Props["group"].Str; s.get(KindGroup, g) == nil {
			return fmt.Errorf("%w: resource %q: group %q does not exist", ErrReference, o.Name, g)
		}
		for _, n := range o.Props["possible_owners"].List {
			if s.get(KindNode, n) == nil {
				return fmt.Errorf("%w: resource %q: possible owner %q is not a node", ErrReference, o.Name, n)
			}
		}
		return checkResourceType(s, o)
	case KindGroup:
		for _, n := range o.Props["preferred_owners"].List {
			if s.get(KindNode, n) == nil {
				return fmt.Errorf("%w: group %q: preferred owner %q is not a node", ErrReference, o.Name, n)
			}
		}
		for _, p := range []string{"owner", "moving_to"} {
			if n := o.Props[p].Str; n != "" && s.get(KindNode, n) == nil {
				return fmt.Errorf("%w: group %q: property %s: %q is not a node", ErrReference, o.Name, p, n)
			}
		}
	case KindResourceType:
		if builtin(o.Name) != nil {
			return fmt.Errorf("%w: resourcetype %q: the name of a built-in type", ErrInvalid, o.Name)
		}
	case KindNode:
		id := o.Props["id"].Int
		var same []string
		s.each(KindNode, func(p *object) {
			if p.Name != o.Name && p.Props["id"].Int == id {
				same = append(same, p.Name)
			}
		})
		if len(same) > 0 {
			slices.Sort(same)
			return fmt.Errorf("%w: node %q: id %d is also node %s's", ErrInvalid, o.Name, id, nameList(same))
		}
	}
	return nil
}

// checkUnused refuses the deletion of an object something still refers to.
func checkUnused(s *stage, o *object) error {
	var users []string
	var what string
	switch o.Kind {
	case KindNode:
		return checkNodeUnused(s, o.Name)
	case KindGroup:
		what = "still holds resource"
		users = s.membersOf(o.Name)
	case KindResourceType:
		what = "is the type of resource"
		users = s.resourcesOfType(o.Name)
	case KindResource:
		what = "is a dependency of resource"
		for _, n := range s.membersOf(o.Props["group"].Str) {
			if slices.Contains(s.get(KindResource, n).Props["depends_on"].List, o.Name) {
				users = append(users, n)
			}
		}
	}
	if len(users) == 0 {
		return nil
	}
	slices.Sort(users)
	if len(users) > 1 {
		what += "s"
	}
	return fmt.Errorf("%w: delete %s %q: it %s %s", ErrReference, o.Kind, o.Name, what, nameList(users))
}

// checkNodeUnused refuses the deletion of node n while a group or a
// resource names it, naming every user.
func checkNodeUnused(s *stage, n string) error {
	var (
		preferred, owner, moving, possible []string
	)
	s.each(KindGroup, func(g *object) {
		if slices.Contains(g.Props["preferred_owners"].List, n) {
			preferred = append(preferred, g.Name)
		}
		if g.Props["owner"].Str == n {
			owner = append(owner, g.Name)
		}
		if g.Props["moving_to"].Str == n {
			moving = append(moving, g.Name)
		}
	})
	s.each(KindResource, func(r *object) {
		if slices.Contains(r.Props["possible_owners"].List, n) {
			possible = append(possible, r.Name)
		}
	})
	var uses []string
	for _, u := range []struct {
		what, kind string
		names      []string
	}{
		{"a preferred owner of", "group", preferred},
		{"the owner of", "group", owner},
		{"the move target (moving_to) of", "group", moving},
		{"a possible owner of", "resource", possible},
	} {
		if len(u.names) == 0 {
			continue
		}
		slices.Sort(u.names)
		k := u.kind
		if len(u.names) > 1 {
			k += "s"
		}
		uses = append(uses, u.what+" "+k+" "+nameList(u.names))
	}
	if len(uses) == 0 {
		return nil
	}
	return fmt.Errorf("%w: delete node %q: it is %s", ErrReference, n, strings.Join(uses, "; "))
}

// resolveType returns the schema of resource o's type and the type as
// errors name it: a built-in type, or a resourcetype object and its agent.
func resolveType(s *stage, o *object) (*typeSchema, string, error) {
	t := o.Props["type"].Str
	if b := builtin(t); b != nil {
		return b, t, nil
	}
	rt := s.get(KindResourceType, t)
	if rt == nil {
		return nil, "", fmt.Errorf("%w: resource %q: resource type %q does not exist (nor is it a built-in type: %s)",
			ErrReference, o.Name, t, strings.Join(builtinNames(), ", "))
	}
	agent := rt.Props["agent"].Str
	if agent == AgentOCF {
		return ocfSchema(rt), fmt.Sprintf("%q (ocf:%s)", t, rt.Props["ocf_agent"].Str), nil
	}
	b := builtin(agent)
	if b == nil {
		return nil, "", fmt.Errorf("%w: resource %q: resourcetype %q has agent %q, not a built-in type", ErrReference, o.Name, t, agent)
	}
	return b, fmt.Sprintf("%q (%s)", t, agent), nil
}

// agentOf returns the built-in type that runs resource o ("" if none does).
func agentOf(s *stage, o *object) string {
	b, _, err := resolveType(s, o)
	if err != nil {
		return ""
	}
	return b.name
}

// checkResourceType checks resource o's properties against its type's
// schema: every property is a common one or its type's, each of the right
// type and range, the type's required ones are set, and the type's check
// across them passes.
func checkResourceType(s *stage, o *object) error {
	ts, typ, err := resolveType(s, o)
	if err != nil {
		return err
	}
	for _, n := range sortedKeys(o.Props) {
		if spec(KindResource, n) != nil {
			continue // checkProp did
		}
		p := ts.spec(n)
		if p == nil && ts.name == AgentOCF {
			// Name what the agent takes: a misspelt parameter or a
			// missing "param." is the usual mistake.
			var names []string
			for _, q := range ts.props {
				names = append(names, q.Name)
			}
			takes := "which takes no parameters"
			if len(names) > 0 {
				takes = "whose parameters are " + nameList(names)
			}
			return fmt.Errorf("%w: resource %q: property %q is not a property of type %s, %s", ErrInvalid, o.Name, n, typ, takes)
		}
		if p == nil {
			return fmt.Errorf("%w: resource %q: property %q is not a property of type %s", ErrInvalid, o.Name, n, typ)
		}
		if err := checkSpec(p, "type "+typ, o.Props[n]); err != nil {
			return fmt.Errorf("%w: resource %q: %v", ErrInvalid, o.Name, err)
		}
	}
	for _, p := range ts.props {
		if _, ok := o.Props[p.Name]; p.Required && !ok {
			return fmt.Errorf("%w: resource %q: property %q of type %s missing", ErrInvalid, o.Name, p.Name, typ)
		}
	}
	if ts.check != nil {
		if err := ts.check(o.Props); err != nil {
			return fmt.Errorf("%w: resource %q (type %s): %v", ErrInvalid, o.Name, typ, err)
		}
	}
	return nil
}

// checkGroup checks the dependencies of group g's resources: each names a
// resource of the same group, and the graph has no cycle (reported as the
// path around it).
func checkGroup(s *stage, g string) error {
	members := s.membersOf(g)
	deps := make(map[string][]string, len(members))
	for _, r := range members {
		list := s.get(KindResource, r).Props["depends_on"].List
		for _, dn := range list {
			if dn == r {
				return fmt.Errorf("%w: group %q: resource %q depends on itself", ErrReference, g, r)
			}
			d := s.get(KindResource, dn)
			if d == nil {
				return fmt.Errorf("%w: group %q: resource %q depends on %q, which does not exist", ErrReference, g, r, dn)
			}
			if dg := d.Props["group"].Str; dg != g {
				return fmt.Errorf("%w: resource %q (group %q) depends on %q (group %q): a dependency stays within its group", ErrReference, r, g, dn, dg)
			}
		}
		deps[r] = list
	}
	const (
		white = iota
		grey
		black
	)
	color := make(map[string]int, len(members))
	var path []string
	var visit func(n string) []string
	visit = func(n string) []string {
		color[n] = grey
		path = append(path, n)
		for _, m := range deps[n] {
			switch color[m] {
			case white:
				if c := visit(m); c != nil {
					return c
				}
			case grey:
				i := slices.Index(path, m)
				return append(slices.Clone(path[i:]), m)
			}
		}
		path = path[:len(path)-1]
		color[n] = black
		return nil
	}
	for _, r := range members {
		if color[r] != white {
			continue
		}
		if c := visit(r); c != nil {
			q := make([]string, len(c))
			for i, n := range c {
				q[i] = strconv.Quote(n)
			}
			return fmt.Errorf("%w: group %q: dependency cycle %s", ErrReference, g, strings.Join(q, " → "))
		}
	}
	return checkMDNS(s, g, members)
}

// checkMDNS: a network_name resource in mdns mode names its interface or
// depends on an ip_address resource that does (docs/resources.md).
func checkMDNS(s *stage, g string, members []string) error {
	for _, r := range members {
		o := s.get(KindResource, r)
		if agentOf(s, o) != "network_name" || o.Props["mode"].Str == "dns" {
			continue
		}
		if _, ok := o.Props["interface"]; ok {
			continue
		}
		named := false
		for _, dn := range o.Props["depends_on"].List {
			d := s.get(KindResource, dn)
			if _, ok := d.Props["interface"]; ok && agentOf(s, d) == "ip_address" {
				named = true
				break
			}
		}
		if !named {
			return fmt.Errorf("%w: group %q: resource %q: property \"interface\" missing: a network_name in mdns mode needs one unless an ip_address resource it depends on names one",
				ErrInvalid, g, r)
		}
	}
	return nil
}

// nameList quotes names for an error: all of them up to ten, then a count.
func nameList(names []string) string {
	const most = 10
	q := make([]string, 0, most)
	for i, n := range names {
		if i == most {
			break
		}
		q = append(q, strconv.Quote(n))
	}
	s := strings.Join(q, ", ")
	if len(names) > most {
		s += fmt.Sprintf(" and %d more", len(names)-most)
	}
	return s
}

// sameAgent reports whether two versions of a resourcetype give its
// resources the same schema.
func sameAgent(a, b *object) bool {
	for _, n := range []string{"agent", "ocf_agent", "ocf_parameters"} {
		if !a.Props[n].Equal(b.Props[n]) {
			return false
		}
	}
	return true
}
