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
	switch o.Kind {
	case KindResource:
		if g := o.Props["group"].Str; s.get(KindGroup, g) == nil {
			return fmt.Errorf("%w: resource %q: group %q does not exist", ErrReference, o.Name, g)
		}
		if t := o.Props["type"].Str; s.get(KindResourceType, t) == nil {
			return fmt.Errorf("%w: resource %q: resource type %q does not exist", ErrReference, o.Name, t)
		}
	case KindGroup:
		for _, n := range o.Props["preferred_owners"].List {
			if s.get(KindNode, n) == nil {
				return fmt.Errorf("%w: group %q: preferred owner %q is not a node", ErrReference, o.Name, n)
			}
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
		what = "is a preferred owner of group"
		s.each(KindGroup, func(g *object) {
			if slices.Contains(g.Props["preferred_owners"].List, o.Name) {
				users = append(users, g.Name)
			}
		})
	case KindGroup:
		what = "still holds resource"
		users = s.membersOf(o.Name)
	case KindResourceType:
		what = "is the type of resource"
		s.each(KindResource, func(r *object) {
			if r.Props["type"].Str == o.Name {
				users = append(users, r.Name)
			}
		})
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
				return fmt.Errorf("%w: resource %q depends on itself", ErrReference, r)
			}
			d := s.get(KindResource, dn)
			if d == nil {
				return fmt.Errorf("%w: resource %q depends on %q, which does not exist", ErrReference, r, dn)
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
