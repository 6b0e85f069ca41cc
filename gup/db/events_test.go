package db

import (
	"errors"
	"fmt"
	"testing"
)

func eventOp(name, typ string) Op {
	return Create(KindEvent, name, P{"type": str(typ), "time": IntValue(1), "message": str("m " + name)})
}

// TestEventsNumbered: the database numbers events in the order of their
// operations across transactions, whatever seq a client sends; an event
// is never changed or deleted; the oldest beyond MaxEvents are pruned in
// the transaction that adds one more; a restored copy numbers on.
func TestEventsNumbered(t *testing.T) {
	d := New()
	mustApply(t, d, eventOp("a", EventRegroup), eventOp("b", EventNodeLost))
	client := eventOp("c", EventGroupPulled)
	client.Props["seq"] = IntValue(77)
	mustApply(t, d, client)
	for name, want := range map[string]int64{"a": 1, "b": 2, "c": 3} {
		o, _ := d.Get(KindEvent, name)
		if got := o.Props["seq"].Int; got != want {
			t.Errorf("event %s: seq %d, want %d", name, got, want)
		}
	}
	before := d.Len()
	for _, op := range []Op{
		Set(KindEvent, "a", P{"message": str("rewritten")}),
		DeleteProps(KindEvent, "a", "cause"),
		Delete(KindEvent, "a"),
	} {
		if err := apply(t, d, op); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", &op, err)
		}
	}
	if o, _ := d.Get(KindEvent, "a"); d.Len() != before || o.Props["message"].Str != "m a" {
		t.Fatalf("a refused change changed the log: %d objects, a = %v", d.Len(), o.Props)
	}
	d.TakeChanges()
	for i := range MaxEvents {
		mustApply(t, d, eventOp(fmt.Sprintf("e%d", i), EventGroupOnline))
	}
	if n := len(d.List(KindEvent)); n != MaxEvents {
		t.Fatalf("%d events kept, want %d", n, MaxEvents)
	}
	for _, gone := range []string{"a", "b", "c"} {
		if _, ok := d.Get(KindEvent, gone); ok {
			t.Errorf("event %s not pruned", gone)
		}
	}
	deleted := 0
	for _, c := range d.TakeChanges() {
		if c.Op == Deleted && c.Kind == KindEvent {
			deleted++
		}
	}
	if deleted != 3 {
		t.Errorf("%d deletions seen by a watcher, want 3", deleted)
	}
	r := New()
	if err := r.Restore(d.Snapshot()); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*DB{d, r} {
		if err := x.Apply(x.Seq()+1, encode(t, eventOp("next", EventGroupOffline))); err != nil {
			t.Fatal(err)
		}
		if o, _ := x.Get(KindEvent, "next"); o.Props["seq"].Int != MaxEvents+4 {
			t.Errorf("next event numbered %d, want %d", o.Props["seq"].Int, MaxEvents+4)
		}
	}
}
