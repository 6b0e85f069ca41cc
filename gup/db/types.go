package db

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Errors. Every error Apply, Validate, the decoders and Restore return wraps
// one of these; the message names the operation, the object and the problem.
var (
	// ErrMalformed: an encoding (transaction or snapshot) that does not
	// decode: bad magic, version, length, CRC32C, order or bounds.
	ErrMalformed = errors.New("db: malformed")
	// ErrInvalid: a structurally invalid transaction or object: a bad name,
	// an unknown kind, a property of the wrong type, a value out of range,
	// a property a resource's type does not have, a required one missing.
	ErrInvalid = errors.New("db: invalid")
	// ErrExists: a create of an object that exists.
	ErrExists = errors.New("db: object exists")
	// ErrNotFound: an operation on an object that does not exist.
	ErrNotFound = errors.New("db: no such object")
	// ErrPrecondition: an operation's version precondition did not hold
	// (the object changed since the client read it, or exists when it must
	// not).
	ErrPrecondition = errors.New("db: precondition failed")
	// ErrReference: the transaction would break a reference between
	// objects: a missing group, node or resource type, a dependency outside
	// its group or in a cycle, a group or node still in use.
	ErrReference = errors.New("db: reference")
	// ErrSequence: Apply was called out of order (a driver bug, not a
	// transaction's outcome); nothing changed, not even Seq.
	ErrSequence = errors.New("db: out of sequence")
)

// Limits on names, values and encodings.
const (
	MaxNameLen     = 63       // an object name
	MaxPropNameLen = 63       // a property name
	MaxProps       = 256      // properties of one object
	MaxStringLen   = 64 << 10 // a string value, and each item of a list
	MaxListLen     = 1024     // items of a list value
	MaxOps         = 1024     // operations of one transaction
	MaxTxLen       = 4 << 20  // an encoded transaction
	MaxSnapshotLen = 1 << 30  // an encoded snapshot
)

// Kind is the kind of an object.
type Kind uint8

// The kinds. Objects of different kinds may share a name.
const (
	KindCluster      Kind = 1 // the cluster's own properties; one object, named ClusterObject
	KindNode         Kind = 2 // a cluster node
	KindNetwork      Kind = 3 // a network the nodes share
	KindGroup        Kind = 4 // a group of resources that fail over together
	KindResource     Kind = 5 // a resource; its group, type and dependencies are properties
	KindResourceType Kind = 6 // a resource type: the agent that runs its resources
	// KindEvent is one entry of the cluster-wide event log (events.go):
	// created, never changed; the database numbers them and keeps the
	// newest MaxEvents.
	KindEvent Kind = 7

	kindMax = KindEvent
)

// Kinds lists every kind in order.
var Kinds = []Kind{KindCluster, KindNode, KindNetwork, KindGroup, KindResource, KindResourceType, KindEvent}

// ClusterObject is the name of the one object of KindCluster.
const ClusterObject = "cluster"

var kindNames = [...]string{"", "cluster", "node", "network", "group", "resource", "resourcetype", "event"}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k >= KindCluster && k <= kindMax }

func (k Kind) String() string {
	if k.Valid() {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind returns the kind named s ("resource", ...).
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds {
		if kindNames[k] == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown kind %q", ErrInvalid, s)
}

// Type is the type of a property value.
type Type uint8

// The property types.
const (
	TypeString Type = 1
	TypeInt    Type = 2 // int64
	TypeBool   Type = 3
	TypeList   Type = 4 // list of strings
)

var typeNames = [...]string{"", "string", "int", "bool", "list"}

func (t Type) String() string {
	if t >= TypeString && t <= TypeList {
		return typeNames[t]
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Value is a typed property value; only the field of its Type is used.
type Value struct {
	Type Type
	Str  string
	Int  int64
	Bool bool
	List []string
}

// StringValue, IntValue, BoolValue and ListValue make values.
func StringValue(s string) Value { return Value{Type: TypeString, Str: s} }

// IntValue returns an int value.
func IntValue(i int64) Value { return Value{Type: TypeInt, Int: i} }

// BoolValue returns a bool value.
func BoolValue(b bool) Value { return Value{Type: TypeBool, Bool: b} }

// ListValue returns a list value holding a copy of items.
func ListValue(items ...string) Value {
	return Value{Type: TypeList, List: append([]string{}, items...)}
}

// Equal reports whether v and w are the same value (a nil and an empty
// list are the same).
func (v Value) Equal(w Value) bool {
	if v.Type != w.Type {
		return false
	}
	switch v.Type {
	case TypeString:
		return v.Str == w.Str
	case TypeInt:
		return v.Int == w.Int
	case TypeBool:
		return v.Bool == w.Bool
	case TypeList:
		return slices.Equal(v.List, w.List)
	}
	return true
}

func (v Value) String() string {
	switch v.Type {
	case TypeString:
		return strconv.Quote(v.Str)
	case TypeInt:
		return strconv.FormatInt(v.Int, 10)
	case TypeBool:
		return strconv.FormatBool(v.Bool)
	case TypeList:
		q := make([]string, len(v.List))
		for i, s := range v.List {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, " ") + "]"
	}
	return v.Type.String()
}

// clone returns v with its own copy of a list. Values inside the database
// are never modified in place, so only reads need it.
func (v Value) clone() Value {
	if v.Type == TypeList {
		v.List = append([]string{}, v.List...)
	}
	return v
}

// check validates v's structure: a known type, bounded valid UTF-8
// strings, no fields set outside its type (so that it encodes canonically).
func (v Value) check() error {
	switch v.Type {
	case TypeString:
		if v.Int != 0 || v.Bool || v.List != nil {
			return errors.New("string value with other fields set")
		}
		return checkString(v.Str)
	case TypeInt:
		if v.Str != "" || v.Bool || v.List != nil {
			return errors.New("int value with other fields set")
		}
	case TypeBool:
		if v.Str != "" || v.Int != 0 || v.List != nil {
			return errors.New("bool value with other fields set")
		}
	case TypeList:
		if v.Str != "" || v.Int != 0 || v.Bool {
			return errors.New("list value with other fields set")
		}
		if len(v.List) > MaxListLen {
			return fmt.Errorf("list of %d items (max %d)", len(v.List), MaxListLen)
		}
		for i, s := range v.List {
			if err := checkString(s); err != nil {
				return fmt.Errorf("item %d: %v", i, err)
			}
		}
	default:
		return fmt.Errorf("unknown value type %d", v.Type)
	}
	return nil
}

func checkString(s string) error {
	if len(s) > MaxStringLen {
		return fmt.Errorf("string of %d bytes (max %d)", len(s), MaxStringLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("string is not valid UTF-8")
	}
	return nil
}

// Object is one object of the database as a read returns it (a deep copy).
type Object struct {
	Kind Kind
	Name string
	// Created is the GUP sequence number of the transaction that created
	// the object; Version, of the last one that changed it.
	Created uint64
	Version uint64
	Props   map[string]Value
}

// Prop returns the property name and whether it is set.
func (o *Object) Prop(name string) (Value, bool) {
	v, ok := o.Props[name]
	return v, ok
}

func (o *Object) clone() Object {
	c := *o
	c.Props = make(map[string]Value, len(o.Props))
	for k, v := range o.Props {
		c.Props[k] = v.clone()
	}
	return c
}

// ValidName checks an object name: 1 to MaxNameLen bytes of ASCII letters,
// digits, '-', '_' and '.', starting and ending with a letter or a digit
// (a DNS label that may also hold '_' and '.'). Names are case-sensitive.
func ValidName(s string) error {
	if len(s) == 0 || len(s) > MaxNameLen {
		return fmt.Errorf("name of %d bytes, want 1..%d", len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isAlnum(c):
		case (c == '-' || c == '_' || c == '.') && i > 0 && i < len(s)-1:
		default:
			return fmt.Errorf("name %q: byte %d (%q) not allowed (letters, digits, and -_. inside)", s, i, c)
		}
	}
	return nil
}

// ValidPropName checks a property name: 1 to MaxPropNameLen bytes of ASCII
// letters, digits, '-', '_' and '.', starting with a letter.
func ValidPropName(s string) error {
	if len(s) == 0 || len(s) > MaxPropNameLen {
		return fmt.Errorf("property name of %d bytes, want 1..%d", len(s), MaxPropNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isAlpha(c):
		case i > 0 && (isAlnum(c) || c == '-' || c == '_' || c == '.'):
		default:
			return fmt.Errorf("property name %q: byte %d (%q) not allowed (a letter first, then letters, digits and -_.)", s, i, c)
		}
	}
	return nil
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isAlpha(c) || c >= '0' && c <= '9' }
