package db

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// PropSpec describes a property a kind knows. A property the schema of its
// kind does not name may still be set, with any type (an administrator's
// own properties, as MSCS's private properties); a known one must have its
// type and pass its check. The resource work adds per-resource-type schemas
// on top of this table.
type PropSpec struct {
	Name     string
	Type     Type
	Required bool // a create must set it and it cannot be deleted
	// Check, if set, validates a value of the right type.
	Check func(Value) error
	Doc   string
}

// References between objects are properties too; the database checks them
// after every transaction (see checkObject):
//
//	resource.group            names an existing group
//	resource.type             names an existing resource type
//	resource.depends_on       names resources of the same group; each group's graph is acyclic
//	group.preferred_owners    names existing nodes
//	node.id                   unique among nodes
var schemas = [...][]PropSpec{
	KindCluster: {
		{Name: "description", Type: TypeString, Doc: "free text"},
		{Name: "heartbeat_interval_ms", Type: TypeInt, Check: intRange(10, 10000), Doc: "heartbeat interval"},
		{Name: "heartbeat_threshold", Type: TypeInt, Check: intRange(2, 100), Doc: "missed heartbeats before a suspicion"},
		{Name: "quorum_check_interval_ms", Type: TypeInt, Check: intRange(100, 60000), Doc: "quorum check interval"},
	},
	KindNode: {
		{Name: "id", Type: TypeInt, Required: true, Check: intRange(1, 64), Doc: "node id, unique"},
		{Name: "addrs", Type: TypeList, Check: addrList, Doc: "addresses on the private networks, in network order"},
		{Name: "description", Type: TypeString, Doc: "free text"},
	},
	KindNetwork: {
		{Name: "role", Type: TypeString, Check: oneOf("cluster", "client", "both", "none"), Doc: "what the network carries"},
		{Name: "subnet", Type: TypeString, Check: prefix, Doc: "address/bits"},
		{Name: "description", Type: TypeString, Doc: "free text"},
	},
	KindGroup: {
		{Name: "preferred_owners", Type: TypeList, Check: uniqueNames, Doc: "node names, most preferred first"},
		{Name: "auto_failback", Type: TypeBool, Doc: "move back to a preferred owner when it rejoins"},
		{Name: "description", Type: TypeString, Doc: "free text"},
	},
	KindResource: {
		{Name: "group", Type: TypeString, Required: true, Check: objectName, Doc: "the group it belongs to"},
		{Name: "type", Type: TypeString, Required: true, Check: objectName, Doc: "its resource type"},
		{Name: "depends_on", Type: TypeList, Check: uniqueNames, Doc: "resources of the same group that must be online first"},
		{Name: "description", Type: TypeString, Doc: "free text"},
	},
	KindResourceType: {
		{Name: "agent", Type: TypeString, Doc: "the agent that runs resources of this type"},
		{Name: "description", Type: TypeString, Doc: "free text"},
	},
}

// Schema returns the known properties of kind k, sorted by name.
func Schema(k Kind) []PropSpec {
	if !k.Valid() {
		return nil
	}
	s := slices.Clone(schemas[k])
	slices.SortFunc(s, func(a, b PropSpec) int { return strings.Compare(a.Name, b.Name) })
	return s
}

func spec(k Kind, name string) *PropSpec {
	for i := range schemas[k] {
		if schemas[k][i].Name == name {
			return &schemas[k][i]
		}
	}
	return nil
}

// checkProp validates one property of an object of kind k: its name, its
// value's structure, and its type and range if the schema knows it.
func checkProp(k Kind, name string, v Value) error {
	if err := ValidPropName(name); err != nil {
		return err
	}
	if err := v.check(); err != nil {
		return fmt.Errorf("property %s: %v", name, err)
	}
	s := spec(k, name)
	if s == nil {
		return nil
	}
	if v.Type != s.Type {
		return fmt.Errorf("property %s of a %s is a %s, not a %s", name, k, s.Type, v.Type)
	}
	if s.Check != nil {
		if err := s.Check(v); err != nil {
			return fmt.Errorf("property %s: %v", name, err)
		}
	}
	return nil
}

func intRange(lo, hi int64) func(Value) error {
	return func(v Value) error {
		if v.Int < lo || v.Int > hi {
			return fmt.Errorf("%d, want %d..%d", v.Int, lo, hi)
		}
		return nil
	}
}

func oneOf(vals ...string) func(Value) error {
	return func(v Value) error {
		if !slices.Contains(vals, v.Str) {
			return fmt.Errorf("%q, want one of %q", v.Str, vals)
		}
		return nil
	}
}

func objectName(v Value) error { return ValidName(v.Str) }

// uniqueNames: object names, none twice.
func uniqueNames(v Value) error {
	for i, s := range v.List {
		if err := ValidName(s); err != nil {
			return fmt.Errorf("item %d: %v", i, err)
		}
		if slices.Contains(v.List[:i], s) {
			return fmt.Errorf("%q listed twice", s)
		}
	}
	return nil
}

func addrList(v Value) error {
	for i, s := range v.List {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("item %d: %v", i, err)
		}
		if a.String() != s {
			return fmt.Errorf("item %d: %q is not in canonical form (%s)", i, s, a)
		}
	}
	return nil
}

func prefix(v Value) error {
	p, err := netip.ParsePrefix(v.Str)
	if err != nil {
		return err
	}
	if p.Masked() != p {
		return fmt.Errorf("%s has host bits set (%s)", p, p.Masked())
	}
	return nil
}
