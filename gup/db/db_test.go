package db

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func encode(t testing.TB, ops ...Op) []byte {
	t.Helper()
	tx := Tx{Ops: ops}
	b, err := tx.MarshalBinary()
	if err != nil {
		t.Fatalf("encode %v: %v", ops, err)
	}
	return b
}

// apply applies ops as the next transaction and returns its outcome.
func apply(t testing.TB, d *DB, ops ...Op) error {
	t.Helper()
	return d.Apply(d.Seq()+1, encode(t, ops...))
}

func mustApply(t testing.TB, d *DB, ops ...Op) {
	t.Helper()
	if err := apply(t, d, ops...); err != nil {
		t.Fatalf("apply %d: %v", d.Seq(), err)
	}
}

type P = map[string]Value

func str(s string) Value { return StringValue(s) }

// base returns a database with two nodes, a resource type, two groups and
// a few resources: web-ip ← web-fs ← web-srv in group web, db-ip in db.
func base(t testing.TB) *DB {
	d := New()
	mustApply(t, d,
		Create(KindCluster, ClusterObject, P{"description": str("test")}),
		Create(KindNode, "n1", P{"id": IntValue(1), "addrs": ListValue("10.0.0.1")}),
		Create(KindNode, "n2", P{"id": IntValue(2)}),
		Create(KindNetwork, "priv0", P{"role": str("cluster"), "subnet": str("10.0.0.0/24")}),
		Create(KindResourceType, "ip", P{"agent": str("ip_address")}),
		Create(KindGroup, "web", P{"preferred_owners": ListValue("n1", "n2")}),
		Create(KindGroup, "db", nil),
	)
	mustApply(t, d,
		Create(KindResource, "web-ip", P{"group": str("web"), "type": str("ip"), "address": str("10.0.0.10")}),
		Create(KindResource, "web-fs", P{"group": str("web"), "type": str("ip"), "address": str("10.0.0.11"), "depends_on": ListValue("web-ip")}),
		Create(KindResource, "web-srv", P{"group": str("web"), "type": str("ip"), "address": str("10.0.0.12"), "depends_on": ListValue("web-fs", "web-ip")}),
		Create(KindResource, "db-ip", P{"group": str("db"), "type": str("ip"), "address": str("10.0.0.13")}),
	)
	d.TakeChanges()
	return d
}

func TestCreateSetDelete(t *testing.T) {
	d := New()
	mustApply(t, d, Create(KindCluster, ClusterObject, nil))
	mustApply(t, d, Set(KindCluster, ClusterObject, P{"k": str("v")}))
	o, ok := d.Get(KindCluster, ClusterObject)
	if !ok || o.Created != 1 || o.Version != 2 || !o.Props["k"].Equal(str("v")) {
		t.Fatalf("after set: %+v %v", o, ok)
	}
	// Setting the same value changes nothing: no new version, no change.
	d.TakeChanges()
	mustApply(t, d, Set(KindCluster, ClusterObject, P{"k": str("v")}))
	if o, _ := d.Get(KindCluster, ClusterObject); o.Version != 2 {
		t.Fatalf("a set to the same value moved the version to %d", o.Version)
	}
	if c := d.TakeChanges(); len(c) != 0 {
		t.Fatalf("a set to the same value recorded %v", c)
	}
	mustApply(t, d, DeleteProps(KindCluster, ClusterObject, "k", "absent"))
	if o, _ := d.Get(KindCluster, ClusterObject); o.Version != 4 || len(o.Props) != 0 {
		t.Fatalf("after delete-props: %+v", o)
	}
	mustApply(t, d, Delete(KindCluster, ClusterObject))
	if _, ok := d.Get(KindCluster, ClusterObject); ok || d.Len() != 0 || d.Seq() != 5 {
		t.Fatalf("after delete: found %v, len %d, seq %d", ok, d.Len(), d.Seq())
	}
	want := []Change{
		{Seq: 4, Kind: KindCluster, Name: ClusterObject, Op: Updated, Version: 4},
		{Seq: 5, Kind: KindCluster, Name: ClusterObject, Op: Deleted, Version: 4},
	}
	if c := d.TakeChanges(); !reflect.DeepEqual(c, want) {
		t.Fatalf("changes %+v, want %+v", c, want)
	}
	if err := apply(t, d, Set(KindCluster, ClusterObject, P{"k": str("v")})); !errors.Is(err, ErrNotFound) {
		t.Fatalf("set of a missing object: %v, want ErrNotFound", err)
	}
	mustApply(t, d, Create(KindCluster, ClusterObject, nil))
	if err := apply(t, d, Create(KindCluster, ClusterObject, nil)); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
}

func TestPreconditions(t *testing.T) {
	d := base(t)
	v := d.Seq()
	mustApply(t, d, Set(KindCluster, ClusterObject, P{"k": str("v")}).IfVersion(1))
	err := apply(t, d, Set(KindCluster, ClusterObject, P{"k": str("w")}).IfVersion(1))
	if !errors.Is(err, ErrPrecondition) || !strings.Contains(err.Error(), "version is 3, want 1") {
		t.Fatalf("stale version: %v", err)
	}
	if err := apply(t, d, Check(KindGroup, "nope").IfVersion(1)); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("version of a missing object: %v", err)
	}
	mustApply(t, d, Check(KindGroup, "nope").IfAbsent(), Check(KindGroup, "web").IfVersion(1))
	if err := apply(t, d, Check(KindGroup, "web").IfAbsent()); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("absent on an existing object: %v", err)
	}
	if err := apply(t, d, Check(KindGroup, "nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("check of a missing object: %v", err)
	}
	// A precondition after a change in the same transaction sees the
	// transaction's own version.
	seq := d.Seq() + 1
	mustApply(t, d, Set(KindGroup, "db", P{"x": IntValue(1)}), Set(KindGroup, "db", P{"y": IntValue(2)}).IfVersion(seq))
	_ = v
}

func TestAllOrNothing(t *testing.T) {
	d := base(t)
	before := d.Snapshot()
	err := apply(t, d,
		Set(KindCluster, ClusterObject, P{"k": str("v")}),
		Create(KindGroup, "new", nil),
		Delete(KindGroup, "web"), // still holds resources
	)
	if !errors.Is(err, ErrReference) {
		t.Fatalf("got %v, want ErrReference", err)
	}
	if d.Seq() != 3 {
		t.Fatalf("seq %d after a failed transaction 3", d.Seq())
	}
	if c := d.TakeChanges(); len(c) != 0 {
		t.Fatalf("a failed transaction recorded %v", c)
	}
	if got := d.Snapshot(); !bytes.Equal(got, withSeq(before, 3)) {
		t.Fatal("a failed transaction changed the database")
	}
}

// withSeq returns snapshot b with its sequence number replaced.
func withSeq(b []byte, seq uint64) []byte {
	c := bytes.Clone(b)
	be.PutUint64(c[8:], seq)
	be.PutUint32(c[len(c)-4:], crc32Checksum(c[:len(c)-4]))
	return c
}

func TestReferences(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []Op
		is   error
		msg  string
	}{
		{"resource without group", []Op{Create(KindResource, "r", P{"group": str("nope"), "type": str("ip")})},
			ErrReference, `resource "r": group "nope" does not exist`},
		{"resource without type", []Op{Create(KindResource, "r", P{"group": str("web"), "type": str("disk")})},
			ErrReference, `resource "r": resource type "disk" does not exist`},
		{"delete a group with resources", []Op{Delete(KindGroup, "web")},
			ErrReference, `delete group "web": it still holds resources "web-fs", "web-ip", "web-srv"`},
		{"delete a used type", []Op{Delete(KindResourceType, "ip")},
			ErrReference, `delete resourcetype "ip": it is the type of resources "db-ip", "web-fs", "web-ip", "web-srv"`},
		{"delete a preferred owner", []Op{Delete(KindNode, "n2")},
			ErrReference, `delete node "n2": it is a preferred owner of group "web"`},
		{"delete a dependency", []Op{Delete(KindResource, "web-ip")},
			ErrReference, `delete resource "web-ip": it is a dependency of resources "web-fs", "web-srv"`},
		{"preferred owner not a node", []Op{Set(KindGroup, "db", P{"preferred_owners": ListValue("n1", "n9")})},
			ErrReference, `group "db": preferred owner "n9" is not a node`},
		{"cross-group dependency", []Op{Set(KindResource, "db-ip", P{"depends_on": ListValue("web-ip")})},
			ErrReference, `resource "db-ip" (group "db") depends on "web-ip" (group "web"): a dependency stays within its group`},
		{"moving a resource its group depends on", []Op{Set(KindResource, "web-fs", P{"group": str("db"), "depends_on": ListValue()})},
			ErrReference, `resource "web-srv" (group "web") depends on "web-fs" (group "db")`},
		{"cycle", []Op{Set(KindResource, "web-ip", P{"depends_on": ListValue("web-srv")})},
			ErrReference, `group "web": dependency cycle "web-fs" → "web-ip" → "web-srv" → "web-fs"`},
		{"self", []Op{Set(KindResource, "web-ip", P{"depends_on": ListValue("web-ip")})},
			ErrReference, `resource "web-ip" depends on itself`},
		{"missing dependency", []Op{Set(KindResource, "web-ip", P{"depends_on": ListValue("ghost")})},
			ErrReference, `resource "web-ip" depends on "ghost", which does not exist`},
		{"duplicate node id", []Op{Create(KindNode, "n3", P{"id": IntValue(2)})},
			ErrInvalid, `node "n3": id 2 is also node "n2"'s`},
		{"wrong type", []Op{Set(KindNode, "n1", P{"id": str("1")})},
			ErrInvalid, `property id of a node must be of type int, not string`},
		{"out of range", []Op{Set(KindNode, "n1", P{"id": IntValue(65)})},
			ErrInvalid, `property id: 65, want 1..64`},
		{"delete a required property", []Op{DeleteProps(KindResource, "web-ip", "group")},
			ErrInvalid, `property group of a resource is required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := base(t)
			tx := Tx{Ops: tc.ops}
			data, err := tx.MarshalBinary()
			if err == nil {
				err = d.Apply(d.Seq()+1, data)
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v\nwant %v containing %s", err, tc.is, tc.msg)
			}
		})
	}
	// What is refused alone is fine in one transaction that keeps the
	// invariants at its end: empty a group, then delete it (in any order).
	d := base(t)
	mustApply(t, d, Delete(KindGroup, "web"), Delete(KindResource, "web-srv"), Delete(KindResource, "web-fs"), Delete(KindResource, "web-ip"))
	mustApply(t, d, Set(KindResource, "db-ip", P{"group": str("dbx")}), Create(KindGroup, "dbx", nil), Delete(KindGroup, "db"))
	if o, _ := d.Get(KindResource, "db-ip"); o.Props["group"].Str != "dbx" {
		t.Fatalf("moved resource: %+v", o)
	}
}

func TestZeroValue(t *testing.T) {
	var d DB
	if d.Len() != 0 || d.List(KindNode) != nil && len(d.List(KindNode)) != 0 {
		t.Fatal("zero DB not empty")
	}
	mustApply(t, &d, Create(KindCluster, ClusterObject, nil))
	if !bytes.Equal(d.Snapshot(), func() []byte {
		n := New()
		mustApply(t, n, Create(KindCluster, ClusterObject, nil))
		return n.Snapshot()
	}()) {
		t.Fatal("zero DB differs from New")
	}
}

func TestSequence(t *testing.T) {
	d := base(t)
	data := encode(t, Set(KindCluster, ClusterObject, P{"k": str("v")}))
	for _, seq := range []uint64{0, 1, 2} {
		if err := d.Apply(seq, data); !errors.Is(err, ErrSequence) || d.Seq() != 2 {
			t.Fatalf("apply at %d after 2: %v, seq now %d", seq, err, d.Seq())
		}
	}
	// A malformed transaction is an outcome like any other: seq advances.
	if err := d.Apply(3, []byte("junk")); !errors.Is(err, ErrMalformed) || d.Seq() != 3 {
		t.Fatalf("junk: %v, seq %d", err, d.Seq())
	}
}

func TestReadsDoNotAlias(t *testing.T) {
	d := base(t)
	o, _ := d.Get(KindGroup, "web")
	o.Props["preferred_owners"].List[0] = "mangled"
	o.Props["x"] = str("y")
	for _, l := range d.List(KindGroup) {
		l.Props["preferred_owners"] = ListValue()
	}
	again, _ := d.Get(KindGroup, "web")
	if !reflect.DeepEqual(again.Props, P{"preferred_owners": ListValue("n1", "n2")}) {
		t.Fatalf("a read aliased the database: %+v", again.Props)
	}
	// Nor does a transaction alias the caller's values.
	list := []string{"n1"}
	tx := Tx{Ops: []Op{Set(KindGroup, "db", P{"preferred_owners": {Type: TypeList, List: list}})}}
	data, _ := tx.MarshalBinary()
	if err := d.Apply(d.Seq()+1, data); err != nil {
		t.Fatal(err)
	}
	list[0] = "mangled"
	if o, _ := d.Get(KindGroup, "db"); o.Props["preferred_owners"].List[0] != "n1" {
		t.Fatal("a transaction aliased its caller's list")
	}
}

func TestList(t *testing.T) {
	d := base(t)
	var names []string
	for _, o := range d.List(KindResource) {
		names = append(names, o.Name)
	}
	if want := []string{"db-ip", "web-fs", "web-ip", "web-srv"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("List %v, want %v", names, want)
	}
	if d.Len() != 11 {
		t.Fatalf("Len %d, want 11", d.Len())
	}
}

func TestChanges(t *testing.T) {
	d := base(t)
	mustApply(t, d,
		Set(KindGroup, "db", P{"failback": str("immediate")}),
		Create(KindNode, "n3", P{"id": IntValue(3)}),
		Set(KindGroup, "db", P{"description": str("x")}),
		Delete(KindResource, "db-ip"),
		Delete(KindNetwork, "priv0"),
		Create(KindNetwork, "priv0", nil),
		Create(KindGroup, "tmp", nil),
		Delete(KindGroup, "tmp"),
	)
	want := []Change{
		{Seq: 3, Kind: KindGroup, Name: "db", Op: Updated, Version: 3},
		{Seq: 3, Kind: KindNode, Name: "n3", Op: Created, Version: 3},
		{Seq: 3, Kind: KindResource, Name: "db-ip", Op: Deleted, Version: 2},
		{Seq: 3, Kind: KindNetwork, Name: "priv0", Op: Deleted, Version: 1},
		{Seq: 3, Kind: KindNetwork, Name: "priv0", Op: Created, Version: 3},
	}
	if c := d.TakeChanges(); !reflect.DeepEqual(c, want) {
		t.Fatalf("changes\n%+v\nwant\n%+v", c, want)
	}
	if err := d.Restore(d.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if c := d.TakeChanges(); !reflect.DeepEqual(c, []Change{{Seq: 3, Op: Reset}}) {
		t.Fatalf("after Restore: %+v", c)
	}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen+1)
	for _, tc := range []struct {
		op  Op
		msg string
	}{
		{Create(KindCluster, "other", nil), `the cluster object is named "cluster"`},
		{Create(KindGroup, "-g", nil), `byte 0 ('-') not allowed`},
		{Create(KindGroup, "g-", nil), `byte 1 ('-') not allowed`},
		{Create(KindGroup, long, nil), "name of 64 bytes"},
		{Create(KindGroup, "g", P{"1x": IntValue(1)}), `property name "1x"`},
		{Create(KindGroup, "g", P{"s": str("\xff")}), "not valid UTF-8"},
		{Create(KindResource, "r", P{"group": str("g")}), "a resource needs property type"},
		{Create(KindGroup, "g", P{"preferred_owners": ListValue("a", "a")}), `"a" listed twice`},
		{Create(KindNode, "n", P{"id": IntValue(1), "addrs": ListValue("10.0.0.01")}), "item 0"},
		{Create(KindNetwork, "n", P{"subnet": str("10.0.0.1/24")}), "host bits set"},
		{Create(KindNetwork, "n", P{"role": str("public")}), `"public", want one of`},
		{Set(KindGroup, "g", nil), "set of no properties"},
		{Set(KindGroup, "g", P{"a": str("x")}).IfAbsent(), "a set cannot require the object to be absent"},
		{Check(KindGroup, "g").IfVersion(0), "version precondition 0"},
		{Create(KindGroup, "g", nil).IfVersion(3), "a create cannot require a version"},
		{Op{Type: OpCheck, Kind: KindGroup, Name: "g", Version: 3}, "version 3 without a version precondition"},
		{Op{Type: 9, Kind: KindGroup, Name: "g"}, "unknown operation 9"},
		{Op{Type: OpDelete, Kind: 9, Name: "g"}, "unknown kind 9"},
		{DeleteProps(KindGroup, "g"), "0 properties to delete"},
		{DeleteProps(KindGroup, "g", "a", "a"), "property a listed twice"},
		{Op{Type: OpDelete, Kind: KindGroup, Name: "g", Remove: []string{"a"}}, "a delete takes no properties"},
		{Create(KindGroup, "g", P{"v": {Type: TypeString, Str: "x", Int: 1}}), "string value with other fields set"},
		{Create(KindGroup, "g", P{"v": {Type: 7}}), "unknown value type 7"},
	} {
		tx := Tx{Ops: []Op{tc.op}}
		err := tx.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: got %v, want ErrInvalid containing %s", tc.op, err, tc.msg)
		}
		if _, err := tx.MarshalBinary(); err == nil {
			t.Errorf("%v: encoded", tc.op)
		}
	}
	if err := (&Tx{}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty transaction: %v", err)
	}
}

func sampleTxs() []Tx {
	return []Tx{
		{Ops: []Op{Set(KindCluster, ClusterObject, P{"k": str("v")})}},
		{Ops: []Op{Set(KindCluster, ClusterObject, P{"k": str("v")}).IfVersion(7)}},
		{Ops: []Op{
			Create(KindGroup, "g", P{"preferred_owners": ListValue("n1", "n2"), "failback": str("immediate"), "n": IntValue(-5), "e": ListValue()}).IfAbsent(),
			DeleteProps(KindNode, "n1", "z", "a"),
			Delete(KindResource, "r.1"),
			Check(KindGroup, "other").IfAbsent(),
		}},
	}
}

func TestTxEncoding(t *testing.T) {
	for _, tx := range sampleTxs() {
		b, err := tx.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Tx
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("decode %x: %v", b, err)
		}
		again, err := got.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encode: %v\n% x\n% x", err, b, again)
		}
		for i := range b {
			if err := got.UnmarshalBinary(b[:i]); err == nil {
				t.Fatalf("a prefix of %d bytes decoded", i)
			}
		}
		if err := got.UnmarshalBinary(append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("trailing byte: %v", err)
		}
	}
	// The example transaction's bytes, as the format comment lays them out.
	b, _ := (&Tx{Ops: []Op{Set(KindCluster, ClusterObject, P{"k": str("v")})}}).MarshalBinary()
	want := "5750545801000001" + "02010000" + "0000000000000000" + "07636c7573746572" + "0001" + "016b" + "01" + "0000000176" + "0000"
	if got := fmt.Sprintf("%x", b); got != want {
		t.Fatalf("encoding\n%s\nwant\n%s", got, want)
	}
	// Non-canonical variants are refused, each named.
	for _, tc := range []struct {
		mod func([]byte) []byte
		msg string
	}{
		{func(b []byte) []byte { b[0] = 'X'; return b }, "transaction magic"},
		{func(b []byte) []byte { b[4] = 2; return b }, "transaction version 2"},
		{func(b []byte) []byte { b[5] = 1; return b }, "reserved byte"},
		{func(b []byte) []byte { b[11] = 1; return b }, "op 0: reserved byte set"},
		{func(b []byte) []byte { b[10] = 1; return b }, "version 0"},
		{func(b []byte) []byte { b[32] = 9; return b }, "unknown type 9"},
		{func(b []byte) []byte { b[7] = 2; return b }, "truncated"},
	} {
		var got Tx
		err := got.UnmarshalBinary(tc.mod(bytes.Clone(b)))
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("got %v, want %s", err, tc.msg)
		}
	}
}

func TestRestoreRefuses(t *testing.T) {
	d := base(t)
	good := d.Snapshot()
	other := New()
	mustApply(t, other, Create(KindCluster, ClusterObject, P{"mark": str("other")}))
	otherSnap := other.Snapshot()
	check := func(name string, snap []byte, is error, msg string) {
		t.Helper()
		err := other.Restore(snap)
		if !errors.Is(err, is) || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: got %v, want %v containing %s", name, err, is, msg)
		}
		if !bytes.Equal(other.Snapshot(), otherSnap) {
			t.Errorf("%s: a refused snapshot changed the database", name)
		}
	}
	check("empty", nil, ErrMalformed, "snapshot of 0 bytes")
	check("truncated", good[:len(good)-9], ErrMalformed, "CRC32C")
	bad := bytes.Clone(good)
	bad[30] ^= 1
	check("bit flip", bad, ErrMalformed, "CRC32C")
	bad = bytes.Clone(good)
	bad[0] = 'X'
	check("magic", bad, ErrMalformed, "snapshot magic")

	// Valid CRC32C, broken content: built by corrupting a database's
	// internals and encoding it.
	corrupt := func(f func(d *DB)) []byte {
		d := base(t)
		f(d)
		return d.Snapshot()
	}
	check("missing group", corrupt(func(d *DB) { delete(d.objs[KindGroup], "db"); d.count-- }),
		ErrReference, `resource "db-ip": group "db" does not exist`)
	check("cycle", corrupt(func(d *DB) { d.objs[KindResource]["web-ip"].Props["depends_on"] = ListValue("web-srv") }),
		ErrReference, "dependency cycle")
	check("cross-group", corrupt(func(d *DB) { d.objs[KindResource]["db-ip"].Props["depends_on"] = ListValue("web-ip") }),
		ErrReference, "stays within its group")
	check("bad name", corrupt(func(d *DB) {
		d.objs[KindNode]["-x"] = &Object{Kind: KindNode, Name: "-x", Created: 1, Version: 1, Props: P{"id": IntValue(9)}}
		d.count++
	}),
		ErrInvalid, `name "-x"`)
	check("future version", corrupt(func(d *DB) { d.objs[KindNode]["n1"].Version = 99 }),
		ErrMalformed, "version 99 at sequence 2")
	check("wrong type", corrupt(func(d *DB) { d.objs[KindNode]["n1"].Props["id"] = str("1") }),
		ErrInvalid, "property id of a node must be of type int")
	check("count", corrupt(func(d *DB) { d.count++ }), ErrMalformed, "truncated")
	check("count low", corrupt(func(d *DB) { d.count-- }), ErrMalformed, "bytes after object 10")
}

// TestLargeRoundTrip: a database of more than 2 MB (2,000 resources with
// properties) survives Snapshot and Restore byte for byte.
func TestLargeRoundTrip(t *testing.T) {
	d := large(t, 2000)
	snap := d.Snapshot()
	if len(snap) < 2<<20 {
		t.Fatalf("snapshot of %d bytes, want over 2 MB", len(snap))
	}
	r := New()
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if r.Seq() != d.Seq() || r.Len() != d.Len() {
		t.Fatalf("restored seq %d len %d, want %d %d", r.Seq(), r.Len(), d.Seq(), d.Len())
	}
	if !bytes.Equal(r.Snapshot(), snap) {
		t.Fatal("restored database encodes differently")
	}
	for _, k := range Kinds {
		if !reflect.DeepEqual(r.List(k), d.List(k)) {
			t.Fatalf("%s objects differ after restore", k)
		}
	}
	// The restored database goes on like the original, including the
	// group index used for its checks.
	for _, db := range []*DB{d, r} {
		mustApply(t, db, Delete(KindResource, "r-0099"), Set(KindResource, "r-0098", P{"restart_threshold": IntValue(1)}))
		if err := apply(t, db, Delete(KindGroup, "g-01")); !errors.Is(err, ErrReference) || !strings.Contains(err.Error(), "and 90 more") {
			t.Fatalf("delete a full group: %v", err)
		}
	}
	if !bytes.Equal(r.Snapshot(), d.Snapshot()) {
		t.Fatal("the restored database diverged")
	}
}

// large builds a database of n resources in groups of 100, each resource
// with a few properties and a dependency on the one before it.
func large(t testing.TB, n int) *DB {
	d := New()
	mustApply(t, d, Create(KindCluster, ClusterObject, nil), Create(KindResourceType, "generic", P{"agent": str("generic_application")}),
		Create(KindNode, "n1", P{"id": IntValue(1)}), Create(KindNode, "n2", P{"id": IntValue(2)}))
	var ops []Op
	flush := func() {
		if len(ops) > 0 {
			mustApply(t, d, ops...)
			ops = nil
		}
	}
	for i := 0; i < n; i++ {
		g := fmt.Sprintf("g-%02d", i/100)
		if i%100 == 0 {
			flush()
			mustApply(t, d, Create(KindGroup, g, P{"preferred_owners": ListValue("n1", "n2")}))
		}
		p := P{
			"group":             str(g),
			"type":              str("generic"),
			"description":       str(strings.Repeat("resource description ", 40)),
			"command":           str(fmt.Sprintf("/usr/bin/service --index=%d --mode=active", i)),
			"restart_threshold": IntValue(int64(i % 1000)),
			"target_state":      str([]string{"online", "offline"}[i%2]),
			"environment":       ListValue("VERBOSE=1", fmt.Sprintf("INDEX=%d", i), "MODE=active"),
		}
		if i%100 != 0 {
			p["depends_on"] = ListValue(fmt.Sprintf("r-%04d", i-1))
		}
		ops = append(ops, Create(KindResource, fmt.Sprintf("r-%04d", i), p))
	}
	flush()
	d.TakeChanges()
	return d
}

func BenchmarkApplySmallTx(b *testing.B) {
	d := base(b)
	data := [2][]byte{
		encode(b, Set(KindCluster, ClusterObject, P{"k": str("v")})),
		encode(b, Set(KindCluster, ClusterObject, P{"k": str("w")})),
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := d.Apply(d.Seq()+1, data[i%2]); err != nil {
			b.Fatal(err)
		}
		d.TakeChanges()
	}
}

func BenchmarkApplySmallTxLargeDB(b *testing.B) {
	d := large(b, 2000)
	data := [2][]byte{
		encode(b, Set(KindResource, "r-1000", P{"k": str("v")})),
		encode(b, Set(KindResource, "r-1000", P{"k": str("w")})),
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := d.Apply(d.Seq()+1, data[i%2]); err != nil {
			b.Fatal(err)
		}
		d.TakeChanges()
	}
}

func BenchmarkSnapshot2MB(b *testing.B) {
	d := large(b, 2000)
	b.SetBytes(int64(len(d.Snapshot())))
	b.ReportAllocs()
	for b.Loop() {
		d.Snapshot()
	}
}

func BenchmarkRestore2MB(b *testing.B) {
	snap := large(b, 2000).Snapshot()
	d := New()
	b.SetBytes(int64(len(snap)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Restore(snap); err != nil {
			b.Fatal(err)
		}
	}
}
