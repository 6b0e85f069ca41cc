package gup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// Wire formats (docs/gup.md, "Encodings"), big-endian:
//
//	message:  version(1) type(1) from(4) to(4) term(8) hist(8) seq(8) inc(8) req(8)
//	          readid(8) datalen(4) data count(4) update*
//	update:   seq(8) origin(4) inc(8) req(8) refusedlen(2) refused datalen(4) data
//	batch:    "WPGB" version(1) count(4) update*      (a log record's payload)
//	state:    "WPGS" version(1) hist(8) seq(8) n(2) {node(4) inc(8) req(8)}*n
//	          smlen(4) sm crc32c(4)                    (checkpoints, MsgSnapshot)

// Version is the wire version this package writes and reads.
const Version = 1

// Bounds on decoded fields.
const (
	MaxData       = 64 << 20 // one update, or one snapshot
	MaxRefused    = 1024
	maxUpdatesMsg = 1 << 20
	msgFixedLen   = 2 + 4 + 4 + 8*6 + 4
	updFixedLen   = 8 + 4 + 8 + 8 + 2 + 4
)

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("gup: malformed")

var be = binary.BigEndian

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func appendUpdate(b []byte, u Update) []byte {
	b = be.AppendUint64(b, u.Seq)
	b = be.AppendUint32(b, uint32(u.Origin))
	b = be.AppendUint64(b, u.Inc)
	b = be.AppendUint64(b, u.Req)
	b = be.AppendUint16(b, uint16(len(u.Refused)))
	b = append(b, u.Refused...)
	b = be.AppendUint32(b, uint32(len(u.Data)))
	return append(b, u.Data...)
}

func updateSize(u Update) int { return updFixedLen + len(u.Refused) + len(u.Data) }

// decoder reads fields off a buffer and remembers the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.fail("%s: %d bytes left, %d needed", what, len(d.b), n)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8(what string) uint8 {
	if v := d.take(1, what); v != nil {
		return v[0]
	}
	return 0
}
func (d *decoder) u16(what string) uint16 {
	if v := d.take(2, what); v != nil {
		return be.Uint16(v)
	}
	return 0
}
func (d *decoder) u32(what string) uint32 {
	if v := d.take(4, what); v != nil {
		return be.Uint32(v)
	}
	return 0
}
func (d *decoder) u64(what string) uint64 {
	if v := d.take(8, what); v != nil {
		return be.Uint64(v)
	}
	return 0
}

func (d *decoder) node(what string, zeroOK bool) nodes.ID {
	id := nodes.ID(d.u32(what))
	if d.err == nil && !id.Valid() && !(zeroOK && id == 0) {
		d.fail("%s: node id %d out of 1..%d", what, id, nodes.Max)
	}
	return id
}

func (d *decoder) update() Update {
	var u Update
	u.Seq = d.u64("update seq")
	u.Origin = d.node("update origin", false)
	u.Inc = d.u64("update incarnation")
	u.Req = d.u64("update request")
	rl := int(d.u16("refused length"))
	if rl > MaxRefused {
		d.fail("refusal of %d bytes (max %d)", rl, MaxRefused)
	}
	u.Refused = string(d.take(rl, "refusal"))
	dl := d.u32("update data length")
	if dl > MaxData {
		d.fail("update of %d bytes (max %d)", dl, MaxData)
	}
	if v := d.take(int(dl), "update data"); len(v) > 0 {
		u.Data = slices.Clone(v)
	}
	if d.err == nil && u.Seq == 0 {
		d.fail("update with sequence number 0")
	}
	return u
}

// updates reads n updates, which must have consecutive sequence numbers.
func (d *decoder) updates(n uint32) []Update {
	if n > maxUpdatesMsg || int(n) > len(d.b)/updFixedLen {
		d.fail("%d updates in %d bytes", n, len(d.b))
		return nil
	}
	us := make([]Update, 0, n)
	for i := uint32(0); i < n && d.err == nil; i++ {
		u := d.update()
		if i > 0 && d.err == nil && u.Seq != us[i-1].Seq+1 {
			d.fail("update #%d follows #%d", u.Seq, us[i-1].Seq)
		}
		us = append(us, u)
	}
	return us
}

// MarshalBinary encodes m.
func (m Message) MarshalBinary() ([]byte, error) {
	n := msgFixedLen + len(m.Data) + 4
	for _, u := range m.Updates {
		n += updateSize(u)
	}
	b := make([]byte, 0, n)
	b = append(b, Version, byte(m.Type))
	b = be.AppendUint32(b, uint32(m.From))
	b = be.AppendUint32(b, uint32(m.To))
	b = be.AppendUint64(b, m.Term)
	b = be.AppendUint64(b, m.Hist)
	b = be.AppendUint64(b, m.Seq)
	b = be.AppendUint64(b, m.Inc)
	b = be.AppendUint64(b, m.Req)
	b = be.AppendUint64(b, m.ReadID)
	b = be.AppendUint32(b, uint32(len(m.Data)))
	b = append(b, m.Data...)
	b = be.AppendUint32(b, uint32(len(m.Updates)))
	for _, u := range m.Updates {
		b = appendUpdate(b, u)
	}
	return b, nil
}

// UnmarshalBinary decodes a message, checking every field it can.
func (m *Message) UnmarshalBinary(b []byte) error {
	d := &decoder{b: b}
	var out Message
	if v := d.u8("version"); d.err == nil && v != Version {
		return fmt.Errorf("%w: version %d (this node speaks %d)", ErrMalformed, v, Version)
	}
	out.Type = MsgType(d.u8("type"))
	if d.err == nil && (out.Type < MsgRequest || out.Type > MsgReadIndex) {
		d.fail("unknown message type %d", out.Type)
	}
	out.From = d.node("from", false)
	out.To = d.node("to", false)
	out.Term = d.u64("term")
	out.Hist = d.u64("history")
	out.Seq = d.u64("seq")
	out.Inc = d.u64("incarnation")
	out.Req = d.u64("request")
	out.ReadID = d.u64("read id")
	dl := d.u32("data length")
	if dl > MaxData {
		d.fail("data of %d bytes (max %d)", dl, MaxData)
	}
	if v := d.take(int(dl), "data"); len(v) > 0 {
		out.Data = slices.Clone(v)
	}
	out.Updates = d.updates(d.u32("update count"))
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err == nil && out.Type == MsgRequest && (out.Inc == 0 || out.Req == 0) {
		d.fail("request without incarnation or request number")
	}
	if d.err == nil && len(out.Updates) > 0 && out.Type != MsgUpdates {
		d.fail("%v carries updates", out.Type)
	}
	if d.err != nil {
		return d.err
	}
	*m = out
	return nil
}

const (
	batchMagic = "WPGB"
	stateMagic = "WPGS"
)

// EncodeBatch encodes updates with consecutive sequence numbers as one log
// record's payload.
func EncodeBatch(us []Update) []byte {
	n := 9
	for _, u := range us {
		n += updateSize(u)
	}
	b := make([]byte, 0, n)
	b = append(b, batchMagic...)
	b = append(b, Version)
	b = be.AppendUint32(b, uint32(len(us)))
	for _, u := range us {
		b = appendUpdate(b, u)
	}
	return b
}

// DecodeBatch decodes a log record's payload (the record's own CRC has
// already been checked by the log).
func DecodeBatch(b []byte) ([]Update, error) {
	d := &decoder{b: b}
	if string(d.take(4, "batch magic")) != batchMagic && d.err == nil {
		d.fail("not a batch of updates")
	}
	if v := d.u8("batch version"); d.err == nil && v != Version {
		d.fail("batch version %d (this node reads %d)", v, Version)
	}
	n := d.u32("batch count")
	if d.err == nil && n == 0 {
		d.fail("empty batch")
	}
	us := d.updates(n)
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes after the batch", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return us, nil
}

// reqMark is the last request of an origin: its incarnation and number.
type reqMark struct{ inc, req uint64 }

// covers reports whether the request {inc, req} is at or before m.
func (m reqMark) covers(inc, req uint64) bool {
	return inc < m.inc || inc == m.inc && req <= m.req
}

// state is what a checkpoint or MsgSnapshot carries: the sequence number,
// the last applied request of each origin (for duplicate detection), and
// the state machine's snapshot.
type state struct {
	hist  uint64
	seq   uint64
	marks [nodes.Max + 1]reqMark
	sm    []byte
}

func (s *state) encode() []byte {
	n := 0
	for _, m := range s.marks {
		if m.inc != 0 {
			n++
		}
	}
	b := make([]byte, 0, 4+1+16+2+n*20+4+len(s.sm)+4)
	b = append(b, stateMagic...)
	b = append(b, Version)
	b = be.AppendUint64(b, s.hist)
	b = be.AppendUint64(b, s.seq)
	b = be.AppendUint16(b, uint16(n))
	for id, m := range s.marks {
		if m.inc != 0 {
			b = be.AppendUint32(b, uint32(id))
			b = be.AppendUint64(b, m.inc)
			b = be.AppendUint64(b, m.req)
		}
	}
	b = be.AppendUint32(b, uint32(len(s.sm)))
	b = append(b, s.sm...)
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeState(b []byte) (state, error) {
	var s state
	if len(b) < 4 {
		return s, fmt.Errorf("%w: state of %d bytes", ErrMalformed, len(b))
	}
	if crc32.Checksum(b[:len(b)-4], castagnoli) != be.Uint32(b[len(b)-4:]) {
		return s, fmt.Errorf("%w: state: CRC32C mismatch", ErrMalformed)
	}
	d := &decoder{b: b[:len(b)-4]}
	if string(d.take(4, "state magic")) != stateMagic && d.err == nil {
		d.fail("not a GUP state")
	}
	if v := d.u8("state version"); d.err == nil && v != Version {
		d.fail("state version %d (this node reads %d)", v, Version)
	}
	s.hist = d.u64("state history")
	s.seq = d.u64("state seq")
	if d.err == nil && s.hist == 0 && s.seq != 0 {
		d.fail("state at #%d without a history", s.seq)
	}
	n := d.u16("state origins")
	prev := nodes.ID(0)
	for i := uint16(0); i < n && d.err == nil; i++ {
		id := d.node("origin", false)
		m := reqMark{inc: d.u64("origin incarnation"), req: d.u64("origin request")}
		if d.err == nil && (id <= prev || m.inc == 0) {
			d.fail("origin %d out of order or without incarnation", id)
		}
		if d.err == nil {
			s.marks[id], prev = m, id
		}
	}
	sl := d.u32("state machine length")
	if sl > MaxData {
		d.fail("state machine snapshot of %d bytes (max %d)", sl, MaxData)
	}
	s.sm = slices.Clone(d.take(int(sl), "state machine snapshot"))
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes after the state", len(d.b))
	}
	return s, d.err
}

// Replay rebuilds the state a recovery log holds into sm: the checkpoint
// (nil for none), then the update records after it. It returns the
// sequence number reached. Tools and tests use it to read a log.
func Replay(checkpoint []byte, records []LogRecord, sm StateMachine) (uint64, error) {
	var st state
	if len(checkpoint) > 0 {
		var err error
		if st, err = decodeState(checkpoint); err != nil {
			return 0, fmt.Errorf("replay: checkpoint: %w", err)
		}
	}
	if err := sm.Restore(st.sm); err != nil {
		return 0, fmt.Errorf("replay: restore the checkpoint at #%d: %w", st.seq, err)
	}
	seq, marks := st.seq, st.marks
	for _, rec := range records {
		if !rec.Update {
			continue
		}
		us, err := DecodeBatch(rec.Payload)
		if err != nil {
			return seq, fmt.Errorf("replay: record LSN %d: %w", rec.LSN, err)
		}
		for _, u := range us {
			if u.Seq != seq+1 {
				return seq, fmt.Errorf("replay: record LSN %d holds #%d where #%d was due", rec.LSN, u.Seq, seq+1)
			}
			applyUpdate(sm, &marks, u) // its outcome was reported when it was committed
			seq = u.Seq
		}
	}
	return seq, nil
}
