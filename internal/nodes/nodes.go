// Package nodes names cluster nodes: a node's small integer id (1..64) and
// sets of them, shared by every protocol core.
package nodes

import (
	"math/bits"
	"strconv"
	"strings"
)

// ID is a node's small integer id, 1..Max.
type ID uint32

// Max is the largest node id: a cluster has at most 64 nodes.
const Max = 64

// Valid reports whether id is in 1..Max.
func (id ID) Valid() bool { return id >= 1 && id <= Max }

// Set is a set of node ids 1..64, bit id-1 for node id.
type Set uint64

// SetOf returns the set holding ids.
func SetOf(ids ...ID) Set {
	var s Set
	for _, id := range ids {
		s = s.Add(id)
	}
	return s
}

// Add returns s with id added; invalid ids are ignored.
func (s Set) Add(id ID) Set {
	if !id.Valid() {
		return s
	}
	return s | 1<<(id-1)
}

// Remove returns s without id.
func (s Set) Remove(id ID) Set {
	if !id.Valid() {
		return s
	}
	return s &^ (1 << (id - 1))
}

// Has reports whether id is in s.
func (s Set) Has(id ID) bool { return id.Valid() && s&(1<<(id-1)) != 0 }

// Len is the number of ids in s.
func (s Set) Len() int { return bits.OnesCount64(uint64(s)) }

// Min is the lowest id in s, or 0 for the empty set.
func (s Set) Min() ID {
	if s == 0 {
		return 0
	}
	return ID(bits.TrailingZeros64(uint64(s)) + 1)
}

// IDs lists the ids in s in increasing order.
func (s Set) IDs() []ID {
	out := make([]ID, 0, s.Len())
	for v := uint64(s); v != 0; v &= v - 1 {
		out = append(out, ID(bits.TrailingZeros64(v)+1))
	}
	return out
}

// String formats s as {1,2,5}.
func (s Set) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, id := range s.IDs() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(id)))
	}
	b.WriteByte('}')
	return b.String()
}
