package db

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// Transaction encoding (Tx.MarshalBinary), big endian; the data GUP
// carries and logs:
//
//	0   magic "WPTX"              4
//	4   version (1)               1
//	5   reserved (0)              1
//	6   operation count           2
//	8   operations
//
// An operation:
//
//	type                          1
//	kind                          1
//	precondition                  1
//	reserved (0)                  1
//	version (0 unless CondVersion) 8
//	name length, name             1 + n
//	property count                2
//	properties, ascending by name
//	removed count                 2
//	removed names, ascending: length 1, name
//
// A property: name length 1, name, type 1, value. A string is a length
// (4) and its bytes, an int 8 bytes (two's complement), a bool 1 byte (0 or
// 1), a list an item count (2) and each item as a string.
//
// The encoding is canonical: a transaction has exactly one, and the decoder
// refuses any other (unsorted or repeated names, reserved bytes set, a
// bool that is not 0 or 1, trailing data), so decode then encode gives back
// the same bytes.
//
// Snapshot encoding (DB.Snapshot), big endian:
//
//	0   magic "WPDB"              4
//	4   version (1)               1
//	5   reserved (0)              3
//	8   sequence number           8
//	16  object count              4
//	20  objects, ascending by kind, then name
//	..  CRC32C of every byte before it  4
//
// An object: kind 1, name length 1, name, created 8, version 8, property
// count 2, properties as in a transaction.
const (
	WireVersion = 1
	txHeaderLen = 8
	snapHeader  = 20
)

var (
	txMagic   = [4]byte{'W', 'P', 'T', 'X'}
	snapMagic = [4]byte{'W', 'P', 'D', 'B'}
)

func crc32Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	be         = binary.BigEndian
)

// MarshalBinary validates the transaction and encodes it.
func (t *Tx) MarshalBinary() ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, txHeaderLen, 256)
	copy(b, txMagic[:])
	b[4] = WireVersion
	be.PutUint16(b[6:], uint16(len(t.Ops)))
	for i := range t.Ops {
		o := &t.Ops[i]
		b = append(b, byte(o.Type), byte(o.Kind), byte(o.Cond), 0)
		b = be.AppendUint64(b, o.Version)
		b = appendName(b, o.Name)
		b, _ = appendProps(b, o.Props, nil)
		rm := slices.Clone(o.Remove)
		slices.Sort(rm)
		b = be.AppendUint16(b, uint16(len(rm)))
		for _, n := range rm {
			b = appendName(b, n)
		}
	}
	if len(b) > MaxTxLen {
		return nil, fmt.Errorf("%w: transaction encodes to %d bytes (max %d)", ErrInvalid, len(b), MaxTxLen)
	}
	return b, nil
}

// UnmarshalBinary decodes exactly one transaction and validates it. Errors
// wrap ErrMalformed (the encoding) or ErrInvalid (the content).
func (t *Tx) UnmarshalBinary(b []byte) error {
	if len(b) > MaxTxLen {
		return fmt.Errorf("%w: transaction of %d bytes (max %d)", ErrMalformed, len(b), MaxTxLen)
	}
	if len(b) < txHeaderLen {
		return fmt.Errorf("%w: transaction of %d bytes, want at least %d", ErrMalformed, len(b), txHeaderLen)
	}
	if [4]byte(b[:4]) != txMagic {
		return fmt.Errorf("%w: transaction magic % x, want %q", ErrMalformed, b[:4], txMagic[:])
	}
	if b[4] != WireVersion {
		return fmt.Errorf("%w: transaction version %d, want %d", ErrMalformed, b[4], WireVersion)
	}
	if b[5] != 0 {
		return fmt.Errorf("%w: transaction reserved byte set", ErrMalformed)
	}
	n := int(be.Uint16(b[6:]))
	if n > MaxOps {
		return fmt.Errorf("%w: %d operations (max %d)", ErrMalformed, n, MaxOps)
	}
	r := &reader{b: b[txHeaderLen:]}
	out := Tx{Ops: make([]Op, 0, min(n, len(r.b)/14))}
	for i := 0; i < n; i++ {
		var o Op
		o.Type, o.Kind, o.Cond = OpType(r.u8()), Kind(r.u8()), Cond(r.u8())
		if r.u8() != 0 && r.err == nil {
			r.fail("reserved byte set")
		}
		o.Version = r.u64()
		o.Name = r.name()
		o.Props = r.props()
		if k := int(r.u16()); k > 0 && r.err == nil {
			if k > MaxProps {
				r.fail("%d properties to delete (max %d)", k, MaxProps)
			}
			for j := 0; j < k && r.err == nil; j++ {
				p := r.name()
				if j > 0 && p <= o.Remove[j-1] {
					r.fail("property names to delete not in ascending order at %q", p)
				}
				o.Remove = append(o.Remove, p)
			}
		}
		if r.err != nil {
			return fmt.Errorf("%w: op %d: %v", ErrMalformed, i, r.err)
		}
		out.Ops = append(out.Ops, o)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d bytes after the last operation", ErrMalformed, len(r.b))
	}
	if err := out.Validate(); err != nil {
		return err
	}
	*t = out
	return nil
}

func appendName(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func appendString(b []byte, s string) []byte {
	b = be.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendProps appends props in name order; keys is scratch space for the
// sorted names (it may be nil) and is returned for reuse.
func appendProps(b []byte, props map[string]Value, keys []string) ([]byte, []string) {
	keys = keys[:0]
	for n := range props {
		keys = append(keys, n)
	}
	slices.Sort(keys)
	b = be.AppendUint16(b, uint16(len(props)))
	for _, n := range keys {
		v := props[n]
		b = appendName(b, n)
		b = append(b, byte(v.Type))
		switch v.Type {
		case TypeString:
			b = appendString(b, v.Str)
		case TypeInt:
			b = be.AppendUint64(b, uint64(v.Int))
		case TypeBool:
			if v.Bool {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		case TypeList:
			b = be.AppendUint16(b, uint16(len(v.List)))
			for _, s := range v.List {
				b = appendString(b, s)
			}
		}
	}
	return b, keys
}

// reader decodes with a sticky error: after the first problem every read
// returns zero and r.err names the problem.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
	r.b = nil
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.fail("truncated: %s of %d bytes, %d left", what, n, len(r.b))
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() uint8 {
	if p := r.take(1, "byte"); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if p := r.take(2, "count"); p != nil {
		return be.Uint16(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4, "length"); p != nil {
		return be.Uint32(p)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if p := r.take(8, "integer"); p != nil {
		return be.Uint64(p)
	}
	return 0
}

// name reads a length-prefixed (1 byte) name; its content is validated by
// the caller.
func (r *reader) name() string {
	n := int(r.u8())
	return string(r.take(n, "name"))
}

func (r *reader) str() string {
	n := r.u32()
	if n > MaxStringLen {
		r.fail("string of %d bytes (max %d)", n, MaxStringLen)
		return ""
	}
	return string(r.take(int(n), "string"))
}

// props reads a property count and the properties, in strictly ascending
// name order; the values' content is validated by the caller.
func (r *reader) props() map[string]Value {
	n := int(r.u16())
	if n == 0 || r.err != nil {
		return nil
	}
	if n > MaxProps {
		r.fail("%d properties (max %d)", n, MaxProps)
		return nil
	}
	m := make(map[string]Value, n)
	prev := ""
	for i := 0; i < n && r.err == nil; i++ {
		name := r.name()
		if i > 0 && name <= prev {
			r.fail("property names not in ascending order at %q", name)
			return nil
		}
		prev = name
		v := Value{Type: Type(r.u8())}
		switch v.Type {
		case TypeString:
			v.Str = r.str()
		case TypeInt:
			v.Int = int64(r.u64())
		case TypeBool:
			switch r.u8() {
			case 0:
			case 1:
				v.Bool = true
			default:
				r.fail("property %s: bool byte not 0 or 1", name)
			}
		case TypeList:
			k := int(r.u16())
			if k > MaxListLen {
				r.fail("property %s: list of %d items (max %d)", name, k, MaxListLen)
				break
			}
			v.List = make([]string, 0, min(k, len(r.b)/4))
			for j := 0; j < k && r.err == nil; j++ {
				v.List = append(v.List, r.str())
			}
		default:
			if r.err == nil {
				r.fail("property %s: unknown type %d", name, v.Type)
			}
		}
		m[name] = v
	}
	return m
}
