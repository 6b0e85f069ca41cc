package db

import (
	"fmt"
	"slices"
	"strconv"
)

// OpType is what an operation does.
type OpType uint8

// The operations.
const (
	// OpCreate creates an object with Props; it fails if the object exists.
	OpCreate OpType = 1
	// OpSet sets Props (adding or replacing each); it fails if the object
	// does not exist.
	OpSet OpType = 2
	// OpDeleteProps deletes the properties named in Remove (one that is
	// not set is no error); it fails if the object does not exist.
	OpDeleteProps OpType = 3
	// OpDelete deletes the object; it fails if it does not exist.
	OpDelete OpType = 4
	// OpCheck changes nothing and fails unless its precondition holds; with
	// no precondition, unless the object exists. It makes a transaction
	// depend on an object it does not change.
	OpCheck OpType = 5
)

var opNames = [...]string{"", "create", "set", "delete-props", "delete", "check"}

func (t OpType) String() string {
	if t >= OpCreate && t <= OpCheck {
		return opNames[t]
	}
	return "op(" + strconv.Itoa(int(t)) + ")"
}

// Cond is an operation's precondition.
type Cond uint8

// The preconditions.
const (
	CondNone Cond = 0
	// CondVersion: the object exists and its Version is Op.Version.
	CondVersion Cond = 1
	// CondAbsent: the object does not exist (OpCheck and OpCreate only).
	CondAbsent Cond = 2
)

// Op is one operation of a transaction.
type Op struct {
	Type OpType
	Kind Kind
	Name string
	// Props are the properties an OpCreate or OpSet sets.
	Props map[string]Value
	// Remove names the properties an OpDeleteProps deletes.
	Remove []string
	// Cond and Version are the precondition.
	Cond    Cond
	Version uint64
}

// Create returns an OpCreate.
func Create(k Kind, name string, props map[string]Value) Op {
	return Op{Type: OpCreate, Kind: k, Name: name, Props: props}
}

// Set returns an OpSet.
func Set(k Kind, name string, props map[string]Value) Op {
	return Op{Type: OpSet, Kind: k, Name: name, Props: props}
}

// DeleteProps returns an OpDeleteProps.
func DeleteProps(k Kind, name string, props ...string) Op {
	return Op{Type: OpDeleteProps, Kind: k, Name: name, Remove: props}
}

// Delete returns an OpDelete.
func Delete(k Kind, name string) Op { return Op{Type: OpDelete, Kind: k, Name: name} }

// Check returns an OpCheck; add a precondition with IfVersion or IfAbsent.
func Check(k Kind, name string) Op { return Op{Type: OpCheck, Kind: k, Name: name} }

// IfVersion returns o with the precondition that the object's version is v.
func (o Op) IfVersion(v uint64) Op { o.Cond, o.Version = CondVersion, v; return o }

// IfAbsent returns o with the precondition that the object does not exist.
func (o Op) IfAbsent() Op { o.Cond, o.Version = CondAbsent, 0; return o }

func (o *Op) String() string {
	return fmt.Sprintf("%s %s %q", o.Type, o.Kind, o.Name)
}

// Tx is a transaction: operations applied in order, all or nothing. An
// operation sees the effects of the ones before it (a version precondition
// after a change in the same transaction sees the new version, the
// transaction's sequence number). The references between objects are
// checked once, after the last operation.
type Tx struct {
	Ops []Op
}

// Validate checks the transaction's structure, what a sender can check
// without the database: kinds, names, property names, types and ranges,
// the fields each operation allows, the preconditions, the bounds. Apply's
// outcome is the authoritative one.
func (t *Tx) Validate() error {
	if len(t.Ops) == 0 {
		return fmt.Errorf("%w: transaction without operations", ErrInvalid)
	}
	if len(t.Ops) > MaxOps {
		return fmt.Errorf("%w: transaction of %d operations (max %d)", ErrInvalid, len(t.Ops), MaxOps)
	}
	for i := range t.Ops {
		if err := t.Ops[i].validate(); err != nil {
			return fmt.Errorf("%w: op %d (%s): %v", ErrInvalid, i, &t.Ops[i], err)
		}
	}
	return nil
}

func (o *Op) validate() error {
	if o.Type < OpCreate || o.Type > OpCheck {
		return fmt.Errorf("unknown operation %d", o.Type)
	}
	if !o.Kind.Valid() {
		return fmt.Errorf("unknown kind %d", o.Kind)
	}
	if err := ValidName(o.Name); err != nil {
		return err
	}
	if o.Kind == KindCluster && o.Name != ClusterObject {
		return fmt.Errorf("the cluster object is named %q", ClusterObject)
	}
	switch o.Cond {
	case CondNone:
	case CondVersion:
		if o.Version == 0 {
			return fmt.Errorf("version precondition 0 (no object has version 0; use IfAbsent)")
		}
		if o.Type == OpCreate {
			return fmt.Errorf("a create cannot require a version (the object would exist)")
		}
	case CondAbsent:
		if o.Type != OpCreate && o.Type != OpCheck {
			return fmt.Errorf("a %s cannot require the object to be absent", o.Type)
		}
	default:
		return fmt.Errorf("unknown precondition %d", o.Cond)
	}
	if o.Cond != CondVersion && o.Version != 0 {
		return fmt.Errorf("version %d without a version precondition", o.Version)
	}
	switch o.Type {
	case OpCreate, OpSet:
		if len(o.Remove) != 0 {
			return fmt.Errorf("a %s removes no properties", o.Type)
		}
		if o.Type == OpSet && len(o.Props) == 0 {
			return fmt.Errorf("set of no properties")
		}
		if len(o.Props) > MaxProps {
			return fmt.Errorf("%d properties (max %d)", len(o.Props), MaxProps)
		}
		for _, n := range sortedKeys(o.Props) {
			if err := checkProp(o.Kind, n, o.Props[n]); err != nil {
				return err
			}
		}
		if o.Type == OpCreate {
			for _, s := range schemas[o.Kind] {
				if _, ok := o.Props[s.Name]; s.Required && !ok {
					return fmt.Errorf("a %s needs property %s", o.Kind, s.Name)
				}
			}
		}
	case OpDeleteProps:
		if len(o.Props) != 0 {
			return fmt.Errorf("a %s sets no properties", o.Type)
		}
		if len(o.Remove) == 0 || len(o.Remove) > MaxProps {
			return fmt.Errorf("%d properties to delete, want 1..%d", len(o.Remove), MaxProps)
		}
		for i, n := range o.Remove {
			if err := ValidPropName(n); err != nil {
				return err
			}
			if slices.Contains(o.Remove[:i], n) {
				return fmt.Errorf("property %s listed twice", n)
			}
			if s := spec(o.Kind, n); s != nil && s.Required {
				return fmt.Errorf("property %s of a %s is required", n, o.Kind)
			}
		}
	case OpDelete, OpCheck:
		if len(o.Props) != 0 || len(o.Remove) != 0 {
			return fmt.Errorf("a %s takes no properties", o.Type)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}
