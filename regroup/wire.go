package regroup

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
)

// Wire format of a regroup message (Message.MarshalBinary), big endian:
//
//	0   magic "WPRM"              4
//	4   version (1)               1
//	5   type                      1
//	6   stage                     1
//	7   class                     1
//	8   flags (bit 0: Fatal)      1
//	9   reserved (0)              3
//	12  from                      4
//	16  to                        4
//	20  joiner                    4
//	24  leader                    4
//	28  round                     8
//	36  hears                     8
//	44  evict                     8
//	52  epoch                     8
//	60  members                   8
//	68  incarnation               8
//	76  nonce                     8
//	84  nonce2                    8
//	92  proof length              2
//	94  reason length             2
//	96  snapshot length           4
//	100 proof, reason, snapshot
//
// A sealed datagram (Sealer.Seal) is a FrameHeaderLen header, the message,
// and HMAC-SHA256 over both under the cluster key:
//
//	0   magic "WPRG"              4
//	4   version (1)               1
//	5   reserved (0)              3
//	8   cluster id                4
//	12  sender incarnation        8
//	20  sequence                  8
//	28  message                   MessageFixedLen + lengths
//	..  HMAC-SHA256               32
const (
	WireVersion     = 1
	MessageFixedLen = 100
	FrameHeaderLen  = 28
	FrameMACLen     = sha256.Size
	// MaxProof, MaxReason and MaxSnapshot bound the variable fields so that
	// a sealed message fits one UDP datagram (MaxFrameLen).
	MaxProof    = 64
	MaxReason   = 1024
	MaxSnapshot = 60000
	// MaxFrameLen is the longest sealed datagram.
	MaxFrameLen = FrameHeaderLen + MessageFixedLen + MaxProof + MaxReason + MaxSnapshot + FrameMACLen
)

var (
	messageMagic = [4]byte{'W', 'P', 'R', 'M'}
	frameMagic   = [4]byte{'W', 'P', 'R', 'G'}
)

// Errors returned by UnmarshalBinary and Sealer.Open.
var (
	ErrMalformed = errors.New("regroup: malformed message")
	ErrBadMAC    = errors.New("regroup: bad MAC")
)

// IsFrame reports whether d starts like a sealed regroup datagram (its magic),
// so that a driver can tell it from a heartbeat on a shared socket.
func IsFrame(d []byte) bool {
	return len(d) >= 4 && [4]byte(d[:4]) == frameMagic
}

// MarshalBinary encodes m (without MAC). It fails for fields that the wire
// cannot carry: ids outside 1..64 (To may be 0 only for no one), unknown
// types, stages or classes, over-long proof, reason or snapshot.
func (m Message) MarshalBinary() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := make([]byte, MessageFixedLen, MessageFixedLen+len(m.Proof)+len(m.Reason)+len(m.Snapshot))
	copy(b[0:4], messageMagic[:])
	b[4] = WireVersion
	b[5] = byte(m.Type)
	b[6] = byte(m.Stage)
	b[7] = byte(m.Class)
	if m.Fatal {
		b[8] = 1
	}
	be := binary.BigEndian
	be.PutUint32(b[12:], uint32(m.From))
	be.PutUint32(b[16:], uint32(m.To))
	be.PutUint32(b[20:], uint32(m.Joiner))
	be.PutUint32(b[24:], uint32(m.Leader))
	be.PutUint64(b[28:], m.Round)
	be.PutUint64(b[36:], uint64(m.Hears))
	be.PutUint64(b[44:], uint64(m.Evict))
	be.PutUint64(b[52:], uint64(m.Epoch))
	be.PutUint64(b[60:], uint64(m.Members))
	be.PutUint64(b[68:], m.Incarnation)
	be.PutUint64(b[76:], m.Nonce)
	be.PutUint64(b[84:], m.Nonce2)
	be.PutUint16(b[92:], uint16(len(m.Proof)))
	be.PutUint16(b[94:], uint16(len(m.Reason)))
	be.PutUint32(b[96:], uint32(len(m.Snapshot)))
	b = append(b, m.Proof...)
	b = append(b, m.Reason...)
	b = append(b, m.Snapshot...)
	return b, nil
}

func (m *Message) check() error {
	switch {
	case m.Type < MsgJoinRequest || m.Type > MsgAnnounceAck:
		return fmt.Errorf("%w: type %d", ErrMalformed, m.Type)
	case m.Stage > StageCleanup2:
		return fmt.Errorf("%w: stage %d", ErrMalformed, m.Stage)
	case m.Class > ClassForm:
		return fmt.Errorf("%w: class %d", ErrMalformed, m.Class)
	case !m.From.Valid():
		return fmt.Errorf("%w: from %d", ErrMalformed, m.From)
	case !m.To.Valid():
		return fmt.Errorf("%w: to %d", ErrMalformed, m.To)
	case m.Joiner != 0 && !m.Joiner.Valid():
		return fmt.Errorf("%w: joiner %d", ErrMalformed, m.Joiner)
	case m.Leader != 0 && !m.Leader.Valid():
		return fmt.Errorf("%w: leader %d", ErrMalformed, m.Leader)
	case len(m.Proof) > MaxProof:
		return fmt.Errorf("%w: proof of %d bytes (max %d)", ErrMalformed, len(m.Proof), MaxProof)
	case len(m.Reason) > MaxReason:
		return fmt.Errorf("%w: reason of %d bytes (max %d)", ErrMalformed, len(m.Reason), MaxReason)
	case len(m.Snapshot) > MaxSnapshot:
		return fmt.Errorf("%w: snapshot of %d bytes (max %d)", ErrMalformed, len(m.Snapshot), MaxSnapshot)
	}
	return nil
}

// UnmarshalBinary decodes exactly one message; every length is checked
// against the bounds and against len(b). Errors wrap ErrMalformed.
func (m *Message) UnmarshalBinary(b []byte) error {
	if len(b) < MessageFixedLen {
		return fmt.Errorf("%w: %d bytes, want at least %d", ErrMalformed, len(b), MessageFixedLen)
	}
	if [4]byte(b[:4]) != messageMagic {
		return fmt.Errorf("%w: bad magic % x", ErrMalformed, b[:4])
	}
	if b[4] != WireVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrMalformed, b[4], WireVersion)
	}
	if b[8]&^1 != 0 || b[9] != 0 || b[10] != 0 || b[11] != 0 {
		return fmt.Errorf("%w: reserved bits set", ErrMalformed)
	}
	be := binary.BigEndian
	pl, rl, sl := int(be.Uint16(b[92:])), int(be.Uint16(b[94:])), int(be.Uint32(b[96:]))
	if pl > MaxProof || rl > MaxReason || sl > MaxSnapshot {
		return fmt.Errorf("%w: variable fields too long (proof %d, reason %d, snapshot %d)", ErrMalformed, pl, rl, sl)
	}
	if want := MessageFixedLen + pl + rl + sl; len(b) != want {
		return fmt.Errorf("%w: %d bytes, lengths say %d", ErrMalformed, len(b), want)
	}
	out := Message{
		Type:        MsgType(b[5]),
		Stage:       Stage(b[6]),
		Class:       Class(b[7]),
		Fatal:       b[8]&1 != 0,
		From:        NodeID(be.Uint32(b[12:])),
		To:          NodeID(be.Uint32(b[16:])),
		Joiner:      NodeID(be.Uint32(b[20:])),
		Leader:      NodeID(be.Uint32(b[24:])),
		Round:       be.Uint64(b[28:]),
		Hears:       NodeSet(be.Uint64(b[36:])),
		Evict:       NodeSet(be.Uint64(b[44:])),
		Epoch:       Epoch(be.Uint64(b[52:])),
		Members:     NodeSet(be.Uint64(b[60:])),
		Incarnation: be.Uint64(b[68:]),
		Nonce:       be.Uint64(b[76:]),
		Nonce2:      be.Uint64(b[84:]),
	}
	v := b[MessageFixedLen:]
	if pl > 0 {
		out.Proof = append([]byte(nil), v[:pl]...)
	}
	out.Reason = string(v[pl : pl+rl])
	if sl > 0 {
		out.Snapshot = append([]byte(nil), v[pl+rl:]...)
	}
	if err := out.check(); err != nil {
		return err
	}
	*m = out
	return nil
}

// Header is the sealed envelope around a message: the cluster it belongs
// to and the sender's incarnation and per-incarnation sequence number, so
// that a receiver can drop replays (the MAC covers them).
type Header struct {
	Cluster     uint32
	Incarnation uint64
	Seq         uint64
}

// A Sealer seals and opens regroup datagrams under one cluster key with
// HMAC-SHA256, as heartbeat.Sealer does for heartbeats (a different magic
// keeps the two apart). It keeps its HMAC state, so it is not safe for
// concurrent use.
type Sealer struct {
	mac hash.Hash
}

// NewSealer returns a Sealer for key.
func NewSealer(key []byte) *Sealer { return &Sealer{mac: hmac.New(sha256.New, key)} }

// Seal returns h and m encoded and followed by their HMAC-SHA256.
func (s *Sealer) Seal(h Header, m Message) ([]byte, error) {
	body, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	d := make([]byte, FrameHeaderLen, FrameHeaderLen+len(body)+FrameMACLen)
	copy(d[0:4], frameMagic[:])
	d[4] = WireVersion
	binary.BigEndian.PutUint32(d[8:], h.Cluster)
	binary.BigEndian.PutUint64(d[12:], h.Incarnation)
	binary.BigEndian.PutUint64(d[20:], h.Seq)
	d = append(d, body...)
	s.mac.Reset()
	s.mac.Write(d)
	return s.mac.Sum(d), nil
}

// Open checks the MAC of a sealed datagram, then decodes it. A datagram of
// the wrong length or layout yields an error wrapping ErrMalformed; a MAC
// that does not verify, ErrBadMAC. The MAC is checked before the message is
// parsed.
func (s *Sealer) Open(d []byte) (Header, Message, error) {
	if len(d) < FrameHeaderLen+MessageFixedLen+FrameMACLen || len(d) > MaxFrameLen {
		return Header{}, Message{}, fmt.Errorf("%w: datagram of %d bytes", ErrMalformed, len(d))
	}
	if !IsFrame(d) {
		return Header{}, Message{}, fmt.Errorf("%w: bad frame magic % x", ErrMalformed, d[:4])
	}
	n := len(d) - FrameMACLen
	s.mac.Reset()
	s.mac.Write(d[:n])
	var sum [sha256.Size]byte
	if !hmac.Equal(s.mac.Sum(sum[:0]), d[n:]) {
		return Header{}, Message{}, ErrBadMAC
	}
	if d[4] != WireVersion {
		return Header{}, Message{}, fmt.Errorf("%w: frame version %d, want %d", ErrMalformed, d[4], WireVersion)
	}
	if d[5] != 0 || d[6] != 0 || d[7] != 0 {
		return Header{}, Message{}, fmt.Errorf("%w: reserved frame bytes set", ErrMalformed)
	}
	h := Header{
		Cluster:     binary.BigEndian.Uint32(d[8:]),
		Incarnation: binary.BigEndian.Uint64(d[12:]),
		Seq:         binary.BigEndian.Uint64(d[20:]),
	}
	var m Message
	if err := m.UnmarshalBinary(d[FrameHeaderLen:n]); err != nil {
		return Header{}, Message{}, err
	}
	return h, m, nil
}
