package heartbeat

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// NodeID, NodeSet and MaxNodes are the nodes package's.
type (
	NodeID  = nodes.ID
	NodeSet = nodes.Set
)

// MaxNodes is the largest node id.
const MaxNodes = nodes.Max

// SetOf returns the set holding ids.
func SetOf(ids ...NodeID) NodeSet { return nodes.SetOf(ids...) }

// MaxNetworks is the number of private networks a packet can name.
const MaxNetworks = 8

// Wire format of a heartbeat datagram, big endian:
//
//	0  magic "WPHB"          4
//	4  version (1)           1
//	5  network               1
//	6  flags (0)             2
//	8  cluster id            4
//	12 node id               4
//	16 incarnation (boot id) 8
//	24 sequence              8
//	32 membership epoch      8
//	40 hears (NodeSet)       8
//	48 HMAC-SHA256           32   (Seal/Open only)
const (
	// BodyLen is the length of MarshalBinary's output.
	BodyLen = 48
	// MACLen is the length of the HMAC-SHA256 tag.
	MACLen = sha256.Size
	// DatagramLen is the length of a sealed heartbeat datagram.
	DatagramLen = BodyLen + MACLen
	// Version is the wire format version.
	Version = 1
)

var magic = [4]byte{'W', 'P', 'H', 'B'}

// Errors returned by UnmarshalBinary and Open.
var (
	ErrMalformed = errors.New("heartbeat: malformed datagram")
	ErrBadMAC    = errors.New("heartbeat: bad MAC")
)

// Packet is one heartbeat. Every field is covered by the MAC.
type Packet struct {
	Cluster     uint32
	Network     uint8
	From        NodeID
	Incarnation uint64
	Seq         uint64
	Epoch       uint64
	// Hears is the set of peers the sender currently considers alive: a
	// row of regroup's connectivity matrix.
	Hears NodeSet
}

// MarshalBinary encodes p without the MAC (BodyLen bytes).
func (p *Packet) MarshalBinary() ([]byte, error) {
	if !p.From.Valid() {
		return nil, fmt.Errorf("heartbeat: marshal: node id %d out of range 1..%d", p.From, MaxNodes)
	}
	if p.Network >= MaxNetworks {
		return nil, fmt.Errorf("heartbeat: marshal: network %d out of range 0..%d", p.Network, MaxNetworks-1)
	}
	return p.appendBody(make([]byte, 0, DatagramLen)), nil
}

func (p *Packet) appendBody(b []byte) []byte {
	b = append(b, magic[:]...)
	b = append(b, Version, p.Network, 0, 0)
	b = binary.BigEndian.AppendUint32(b, p.Cluster)
	b = binary.BigEndian.AppendUint32(b, uint32(p.From))
	b = binary.BigEndian.AppendUint64(b, p.Incarnation)
	b = binary.BigEndian.AppendUint64(b, p.Seq)
	b = binary.BigEndian.AppendUint64(b, p.Epoch)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Hears))
	return b
}

// UnmarshalBinary decodes a body of exactly BodyLen bytes (no MAC). Errors
// wrap ErrMalformed.
func (p *Packet) UnmarshalBinary(b []byte) error {
	if len(b) != BodyLen {
		return fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, len(b), BodyLen)
	}
	if [4]byte(b[0:4]) != magic {
		return fmt.Errorf("%w: bad magic % x", ErrMalformed, b[0:4])
	}
	if b[4] != Version {
		return fmt.Errorf("%w: version %d, want %d", ErrMalformed, b[4], Version)
	}
	if b[5] >= MaxNetworks {
		return fmt.Errorf("%w: network %d out of range", ErrMalformed, b[5])
	}
	if b[6] != 0 || b[7] != 0 {
		return fmt.Errorf("%w: reserved flags %02x%02x set", ErrMalformed, b[6], b[7])
	}
	from := NodeID(binary.BigEndian.Uint32(b[12:16]))
	if !from.Valid() {
		return fmt.Errorf("%w: node id %d out of range 1..%d", ErrMalformed, from, MaxNodes)
	}
	*p = Packet{
		Network:     b[5],
		Cluster:     binary.BigEndian.Uint32(b[8:12]),
		From:        from,
		Incarnation: binary.BigEndian.Uint64(b[16:24]),
		Seq:         binary.BigEndian.Uint64(b[24:32]),
		Epoch:       binary.BigEndian.Uint64(b[32:40]),
		Hears:       NodeSet(binary.BigEndian.Uint64(b[40:48])),
	}
	return nil
}

// A Sealer computes and checks heartbeat MACs under one cluster key. It
// keeps its HMAC state between calls, so it is not safe for concurrent use.
type Sealer struct {
	mac hash.Hash
	sum [MACLen]byte
}

// NewSealer returns a Sealer for key.
func NewSealer(key []byte) *Sealer {
	return &Sealer{mac: hmac.New(sha256.New, key)}
}

// Seal returns p encoded and followed by its HMAC-SHA256 (DatagramLen bytes).
func (s *Sealer) Seal(p *Packet) ([]byte, error) {
	b, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	s.mac.Reset()
	s.mac.Write(b)
	return s.mac.Sum(b), nil
}

// Open checks the MAC of a sealed datagram and decodes it. A datagram of the
// wrong length or layout yields an error wrapping ErrMalformed; a MAC that
// does not verify, ErrBadMAC. The MAC is checked before the body is parsed.
func (s *Sealer) Open(d []byte) (Packet, error) {
	var p Packet
	if len(d) != DatagramLen {
		return p, fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, len(d), DatagramLen)
	}
	s.mac.Reset()
	s.mac.Write(d[:BodyLen])
	if !hmac.Equal(s.mac.Sum(s.sum[:0]), d[BodyLen:]) {
		return p, ErrBadMAC
	}
	err := p.UnmarshalBinary(d[:BodyLen])
	return p, err
}
