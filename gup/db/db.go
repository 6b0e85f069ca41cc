package db

import (
	"fmt"
	"slices"
	"strconv"
)

// ChangeOp is what happened to an object.
type ChangeOp uint8

// The change operations.
const (
	Created ChangeOp = 1
	Updated ChangeOp = 2
	Deleted ChangeOp = 3
	// Reset: Restore replaced the whole database; Kind and Name are empty.
	// A watcher reads everything again.
	Reset ChangeOp = 4
)

func (c ChangeOp) String() string {
	switch c {
	case Created:
		return "created"
	case Updated:
		return "updated"
	case Deleted:
		return "deleted"
	case Reset:
		return "reset"
	}
	return "change(" + strconv.Itoa(int(c)) + ")"
}

// Change is one object a transaction changed, as a watcher sees it.
type Change struct {
	Seq  uint64 // the transaction's sequence number (a Reset: the snapshot's)
	Kind Kind
	Name string
	Op   ChangeOp
	// Version is the object's version after the change (Seq) or, for
	// Deleted, its last version before.
	Version uint64
}

type key struct {
	kind Kind
	name string
}

// object is an object as stored. Its Props map and list values are never
// modified in place once committed: a transaction changes a copy.
type object = Object

// DB is the cluster database. The zero value is an empty database, as New
// returns.
type DB struct {
	seq     uint64
	objs    [kindMax + 1]map[string]*object
	members map[string]map[string]struct{} // group name → its resources
	count   int
	changes []Change
	// lastSnap is the length of the last snapshot, to size the next one's
	// buffer (it affects no output).
	lastSnap int
	// kindSeq is, for each kind, the sequence number of the last
	// transaction that changed one of its objects (or of the snapshot
	// restored).
	kindSeq [kindMax + 1]uint64
	// eventSeq is the number of the last event created (events.go).
	eventSeq int64
}

// New returns an empty database at sequence number 0.
func New() *DB {
	d := &DB{}
	d.reset()
	return d
}

func (d *DB) reset() {
	for _, k := range Kinds {
		d.objs[k] = map[string]*object{}
	}
	d.members = map[string]map[string]struct{}{}
	d.count = 0
}

// Seq returns the sequence number of the last transaction applied (or of
// the snapshot restored).
func (d *DB) Seq() uint64 { return d.seq }

// KindSeq returns the sequence number of the last transaction that
// changed an object of kind k (created, updated or deleted it), or of the
// last Restore, whichever is later: a reader that needs only some kinds
// looks again only when one of them changed.
func (d *DB) KindSeq(k Kind) uint64 {
	if !k.Valid() {
		return 0
	}
	return d.kindSeq[k]
}

// Len returns the number of objects.
func (d *DB) Len() int { return d.count }

// Get returns a copy of the object kind/name.
func (d *DB) Get(k Kind, name string) (Object, bool) {
	if !k.Valid() {
		return Object{}, false
	}
	o, ok := d.objs[k][name]
	if !ok {
		return Object{}, false
	}
	return o.clone(), true
}

// List returns copies of every object of kind k, sorted by name.
func (d *DB) List(k Kind) []Object {
	if !k.Valid() {
		return nil
	}
	out := make([]Object, 0, len(d.objs[k]))
	for _, n := range sortedKeys(d.objs[k]) {
		out = append(out, d.objs[k][n].clone())
	}
	return out
}

// TakeChanges returns the changes recorded since the last call, in the
// order they were made, and forgets them. The driver drains them after
// every Apply or Restore.
func (d *DB) TakeChanges() []Change {
	c := d.changes
	d.changes = nil
	return c
}

// Apply applies the transaction encoded in data (Tx.MarshalBinary),
// committed at GUP sequence number seq, which must be after Seq() (else
// ErrSequence and nothing changes). It may skip numbers: GUP does not
// apply the sequence numbers of refused or duplicate requests. The returned error is the
// transaction's outcome, the same on every node: a malformed or invalid
// transaction, a create of an object that exists, an operation on one that
// does not, a failed precondition, a broken reference. A transaction that
// fails changes nothing but Seq, which becomes seq whatever the outcome.
func (d *DB) Apply(seq uint64, data []byte) error {
	if seq <= d.seq {
		return fmt.Errorf("%w: transaction %d after %d", ErrSequence, seq, d.seq)
	}
	if d.objs[KindCluster] == nil {
		d.reset()
	}
	d.seq = seq
	var t Tx
	if err := t.UnmarshalBinary(data); err != nil {
		return fmt.Errorf("transaction %d: %w", seq, err)
	}
	s := newStage(d, seq)
	for i := range t.Ops {
		if err := s.apply(&t.Ops[i]); err != nil {
			return fmt.Errorf("transaction %d: op %d (%s): %w", seq, i, &t.Ops[i], err)
		}
	}
	if err := s.check(); err != nil {
		return fmt.Errorf("transaction %d: %w", seq, err)
	}
	s.commit()
	return nil
}

// entry is one object a transaction touched: before is the committed
// object (nil: it did not exist), after the staged one (nil: deleted).
type entry struct {
	before, after *object
	replaced      bool // deleted and created again in this transaction
}

// stage is a transaction in progress: a copy-on-write overlay on the
// committed objects. Nothing reaches the DB before commit.
type stage struct {
	d     *DB
	seq   uint64
	touch map[key]*entry
	order []key
	// eventSeq is the number of the last event created, this
	// transaction's included.
	eventSeq int64
}

func newStage(d *DB, seq uint64) *stage {
	return &stage{d: d, seq: seq, touch: map[key]*entry{}, eventSeq: d.eventSeq}
}

// get returns the object as the transaction sees it.
func (s *stage) get(k Kind, name string) *object {
	if e, ok := s.touch[key{k, name}]; ok {
		return e.after
	}
	return s.d.objs[k][name]
}

func (s *stage) entry(k Kind, name string) *entry {
	kk := key{k, name}
	e, ok := s.touch[kk]
	if !ok {
		b := s.d.objs[k][name]
		e = &entry{before: b, after: b}
		s.touch[kk] = e
		s.order = append(s.order, kk)
	}
	return e
}

// writable returns the staged object, copied on the first write.
func (s *stage) writable(e *entry) *object {
	if e.after == e.before {
		c := *e.before
		c.Props = make(map[string]Value, len(e.before.Props)+1)
		for n, v := range e.before.Props {
			c.Props[n] = v
		}
		e.after = &c
	}
	return e.after
}

func (s *stage) apply(o *Op) error {
	cur := s.get(o.Kind, o.Name)
	switch o.Cond {
	case CondVersion:
		if cur == nil {
			return fmt.Errorf("%w: does not exist, want version %d", ErrPrecondition, o.Version)
		}
		if cur.Version != o.Version {
			return fmt.Errorf("%w: version is %d, want %d", ErrPrecondition, cur.Version, o.Version)
		}
	case CondAbsent:
		if cur != nil {
			return fmt.Errorf("%w: exists (version %d), want none", ErrPrecondition, cur.Version)
		}
	}
	if o.Type == OpCreate {
		if cur != nil {
			return fmt.Errorf("%w (version %d)", ErrExists, cur.Version)
		}
		e := s.entry(o.Kind, o.Name)
		props := make(map[string]Value, len(o.Props))
		for n, v := range o.Props {
			props[n] = v
		}
		if o.Kind == KindEvent {
			s.numberEvent(props)
		}
		e.after = &object{Kind: o.Kind, Name: o.Name, Created: s.seq, Version: s.seq, Props: props}
		e.replaced = e.before != nil
		return nil
	}
	if o.Kind == KindEvent && o.Type != OpCheck {
		return fmt.Errorf("%w: an event is never changed or deleted (the database prunes the oldest)", ErrInvalid)
	}
	if cur == nil {
		if o.Type == OpCheck && o.Cond == CondAbsent {
			return nil
		}
		return ErrNotFound
	}
	switch o.Type {
	case OpSet:
		e := s.entry(o.Kind, o.Name)
		for _, n := range sortedKeys(o.Props) {
			v := o.Props[n]
			if old, ok := e.after.Props[n]; ok && old.Equal(v) {
				continue
			}
			w := s.writable(e)
			w.Props[n] = v
			w.Version = s.seq
		}
	case OpDeleteProps:
		e := s.entry(o.Kind, o.Name)
		for _, n := range o.Remove {
			if _, ok := e.after.Props[n]; !ok {
				continue
			}
			w := s.writable(e)
			delete(w.Props, n)
			w.Version = s.seq
		}
	case OpDelete:
		s.entry(o.Kind, o.Name).after = nil
	}
	return nil
}

// commit moves the staged objects into the DB and records the changes, in
// the order the transaction first touched each object.
func (s *stage) commit() {
	d := s.d
	for _, k := range s.order {
		e := s.touch[k]
		b, a := e.before, e.after
		if a == b {
			continue
		}
		if b != nil && a != nil && a.Version == b.Version {
			// Copied but nothing changed (a property set to its value).
			continue
		}
		if b != nil {
			d.unindex(b)
			delete(d.objs[k.kind], k.name)
			d.count--
		}
		if a != nil {
			d.objs[k.kind][k.name] = a
			d.index(a)
			d.count++
		}
		d.kindSeq[k.kind] = s.seq
		switch {
		case b == nil && a == nil:
		case b == nil:
			d.changes = append(d.changes, Change{Seq: s.seq, Kind: k.kind, Name: k.name, Op: Created, Version: a.Version})
		case a == nil:
			d.changes = append(d.changes, Change{Seq: s.seq, Kind: k.kind, Name: k.name, Op: Deleted, Version: b.Version})
		case e.replaced || a.Created != b.Created:
			d.changes = append(d.changes,
				Change{Seq: s.seq, Kind: k.kind, Name: k.name, Op: Deleted, Version: b.Version},
				Change{Seq: s.seq, Kind: k.kind, Name: k.name, Op: Created, Version: a.Version})
		default:
			d.changes = append(d.changes, Change{Seq: s.seq, Kind: k.kind, Name: k.name, Op: Updated, Version: a.Version})
		}
	}
	if s.eventSeq > d.eventSeq {
		d.eventSeq = s.eventSeq
		d.pruneEvents(s.seq)
	}
}

func (d *DB) index(o *object) {
	if o.Kind != KindResource {
		return
	}
	g := o.Props["group"].Str
	m := d.members[g]
	if m == nil {
		m = map[string]struct{}{}
		d.members[g] = m
	}
	m[o.Name] = struct{}{}
}

func (d *DB) unindex(o *object) {
	if o.Kind != KindResource {
		return
	}
	g := o.Props["group"].Str
	delete(d.members[g], o.Name)
	if len(d.members[g]) == 0 {
		delete(d.members, g)
	}
}

// membersOf returns the resources of group g as the transaction sees
// them, sorted.
func (s *stage) membersOf(g string) []string {
	set := map[string]bool{}
	for n := range s.d.members[g] {
		set[n] = true
	}
	for _, k := range s.order {
		if k.kind != KindResource {
			continue
		}
		e := s.touch[k]
		if e.before != nil && e.before.Props["group"].Str == g {
			delete(set, k.name)
		}
		if e.after != nil && e.after.Props["group"].Str == g {
			set[k.name] = true
		}
	}
	return sortedKeys(set)
}

// each calls fn for every object of kind k as the transaction sees it, in
// no particular order: callers sort what they report.
func (s *stage) each(k Kind, fn func(*object)) {
	for n, o := range s.d.objs[k] {
		if _, ok := s.touch[key{k, n}]; !ok {
			fn(o)
		}
	}
	for _, kk := range s.order {
		if e := s.touch[kk]; kk.kind == k && e.after != nil {
			fn(e.after)
		}
	}
}

// resourcesOfType returns the resources whose type is t as the
// transaction sees them, sorted.
func (s *stage) resourcesOfType(t string) []string {
	var names []string
	s.each(KindResource, func(r *object) {
		if r.Props["type"].Str == t {
			names = append(names, r.Name)
		}
	})
	slices.Sort(names)
	return names
}

// Snapshot encodes the whole database (the format is in wire.go).
func (d *DB) Snapshot() []byte {
	b := make([]byte, snapHeader, max(snapHeader+4+d.count*512, d.lastSnap+d.lastSnap/8))
	copy(b, snapMagic[:])
	b[4] = WireVersion
	be.PutUint64(b[8:], d.seq)
	be.PutUint32(b[16:], uint32(d.count))
	var keys []string
	for _, k := range Kinds {
		for _, n := range sortedKeys(d.objs[k]) {
			o := d.objs[k][n]
			b = append(b, byte(k))
			b = appendName(b, n)
			b = be.AppendUint64(b, o.Created)
			b = be.AppendUint64(b, o.Version)
			b, keys = appendProps(b, o.Props, keys)
		}
	}
	b = be.AppendUint32(b, crc32Checksum(b))
	d.lastSnap = len(b)
	return b
}

// Restore replaces the database with a snapshot. It decodes and checks
// everything first (the CRC32C, the structure, the bounds and every
// invariant Apply keeps); on any problem it returns an error wrapping
// ErrMalformed, ErrInvalid or ErrReference and leaves the database as it
// was. On success the pending changes are replaced by one Reset.
func (d *DB) Restore(snapshot []byte) error {
	n, err := decodeSnapshot(snapshot)
	if err != nil {
		return err
	}
	d.seq, d.objs, d.members, d.count = n.seq, n.objs, n.members, n.count
	d.eventSeq = lastEventSeq(d)
	for k := range d.kindSeq {
		d.kindSeq[k] = d.seq
	}
	d.changes = []Change{{Seq: d.seq, Op: Reset}}
	return nil
}

func decodeSnapshot(b []byte) (*DB, error) {
	if len(b) > MaxSnapshotLen {
		return nil, fmt.Errorf("%w: snapshot of %d bytes (max %d)", ErrMalformed, len(b), MaxSnapshotLen)
	}
	if len(b) < snapHeader+4 {
		return nil, fmt.Errorf("%w: snapshot of %d bytes, want at least %d", ErrMalformed, len(b), snapHeader+4)
	}
	if [4]byte(b[:4]) != snapMagic {
		return nil, fmt.Errorf("%w: snapshot magic % x, want %q", ErrMalformed, b[:4], snapMagic[:])
	}
	if b[4] != WireVersion {
		return nil, fmt.Errorf("%w: snapshot version %d, want %d", ErrMalformed, b[4], WireVersion)
	}
	body := b[:len(b)-4]
	if got, want := crc32Checksum(body), be.Uint32(b[len(b)-4:]); got != want {
		return nil, fmt.Errorf("%w: snapshot CRC32C %08x, stored %08x (%d bytes)", ErrMalformed, got, want, len(b))
	}
	if b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return nil, fmt.Errorf("%w: snapshot reserved bytes set", ErrMalformed)
	}
	d := New()
	d.seq = be.Uint64(b[8:])
	count := int(be.Uint32(b[16:]))
	r := &reader{b: body[snapHeader:]}
	prev := key{}
	for i := 0; i < count && r.err == nil; i++ {
		k := Kind(r.u8())
		name := r.name()
		created, version := r.u64(), r.u64()
		props := r.props()
		if r.err != nil {
			break
		}
		kk := key{k, name}
		switch {
		case !k.Valid():
			r.fail("object %d: unknown kind %d", i, k)
		case i > 0 && (k < prev.kind || k == prev.kind && name <= prev.name):
			r.fail("object %d (%s %q): not in ascending order after %s %q", i, k, name, prev.kind, prev.name)
		case created == 0 || created > version || version > d.seq:
			r.fail("%s %q: created %d, version %d at sequence %d (want 1 <= created <= version <= sequence)", k, name, created, version, d.seq)
		}
		if r.err != nil {
			break
		}
		if props == nil {
			props = map[string]Value{}
		}
		o := &object{Kind: k, Name: name, Created: created, Version: version, Props: props}
		d.objs[k][name] = o
		d.count++
		prev = kk
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: snapshot: %v", ErrMalformed, r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: snapshot: %d bytes after object %d", ErrMalformed, len(r.b), count)
	}
	// The invariants, as Apply keeps them: every object valid on its own,
	// every reference resolved, every group's dependencies acyclic.
	s := newStage(d, d.seq)
	for _, k := range Kinds {
		for _, n := range sortedKeys(d.objs[k]) {
			o := d.objs[k][n]
			if err := checkObject(s, o); err != nil {
				return nil, fmt.Errorf("snapshot: %w", err)
			}
			d.index(o)
		}
	}
	for _, g := range sortedKeys(d.objs[KindGroup]) {
		if err := checkGroup(s, g); err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
	}
	return d, nil
}
