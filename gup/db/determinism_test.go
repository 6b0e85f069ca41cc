package db

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
)

// randomTx draws a transaction over a few names per kind, so that creates
// collide, references break and cycles form often.
func randomTx(r *rand.Rand, seq uint64) Tx {
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	names := []string{"a", "b", "c", "d"}
	var ops []Op
	for range 1 + r.IntN(4) {
		k := Kinds[r.IntN(len(Kinds))]
		name := pick(names...)
		if k == KindCluster {
			name = ClusterObject
		}
		props := P{}
		switch k {
		case KindNode:
			props["id"] = IntValue(int64(1 + r.IntN(6)))
		case KindGroup:
			if r.IntN(2) == 0 {
				props["preferred_owners"] = ListValue(pick(names...))
			}
		case KindResource:
			props["group"] = str(pick(names...))
			props["type"] = str(pick(append(names, BuiltinTypes...)...))
			if r.IntN(2) == 0 {
				props["depends_on"] = ListValue(pick(names...))
			}
			// Right for one type, wrong for the others.
			props[pick("command", "address", "name")] = str(pick("x", "10.0.0.1", "x.example"))
		case KindResourceType:
			props["agent"] = str(pick(BuiltinTypes...))
		case KindEvent:
			props["type"] = str(pick(EventTypes...))
			props["time"] = IntValue(int64(seq))
			props["message"] = str("m")
		}
		if k != KindResource {
			props["p"+strconv.Itoa(r.IntN(3))] = str(pick("x", "y"))
		}
		var o Op
		switch r.IntN(5) {
		case 0, 1:
			o = Create(k, name, props)
		case 2:
			o = Set(k, name, props)
		case 3:
			o = DeleteProps(k, name, "p0", "p1")
		case 4:
			o = Delete(k, name)
		}
		switch r.IntN(6) {
		case 0:
			if o.Type != OpCreate {
				o = o.IfVersion(1 + r.Uint64N(seq))
			}
		case 1:
			if o.Type == OpCreate {
				o = o.IfAbsent()
			}
		}
		ops = append(ops, o)
	}
	return Tx{Ops: ops}
}

// TestDeterminism: two databases fed the same transactions return the same
// outcomes and changes and encode to the same bytes after every one; a
// third, restored from a snapshot midway, catches up and stays equal.
func TestDeterminism(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		a, b := New(), New()
		var c *DB
		ok := 0
		for i := range 300 {
			seq := a.Seq() + 1
			tx := randomTx(r, seq)
			data, err := tx.MarshalBinary()
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			errs := []string{fmt.Sprint(a.Apply(seq, data)), fmt.Sprint(b.Apply(seq, data))}
			if errs[0] == "<nil>" {
				ok++
			}
			dbs := []*DB{a, b}
			if c != nil {
				errs = append(errs, fmt.Sprint(c.Apply(seq, data)))
				dbs = append(dbs, c)
			}
			snap := a.Snapshot()
			changes := a.TakeChanges()
			for j, d := range dbs[1:] {
				if errs[j+1] != errs[0] {
					t.Fatalf("seed %d tx %d: outcomes differ: %s / %s", seed, seq, errs[0], errs[j+1])
				}
				if got := d.TakeChanges(); !reflect.DeepEqual(got, changes) && (d != c || len(got) > 0) {
					t.Fatalf("seed %d tx %d: changes differ:\n%v\n%v", seed, seq, changes, got)
				}
				if !bytes.Equal(d.Snapshot(), snap) {
					t.Fatalf("seed %d tx %d: snapshots differ", seed, seq)
				}
			}
			if i == 150 {
				c = New()
				if err := c.Restore(snap); err != nil {
					t.Fatalf("seed %d: restore: %v", seed, err)
				}
				c.TakeChanges()
			}
		}
		if ok < 20 {
			t.Fatalf("seed %d: only %d of 300 transactions succeeded; the generator tests little", seed, ok)
		}
	}
}
