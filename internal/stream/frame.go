package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// Wire format of a frame, big endian, inside the TLS stream:
//
//	0  magic "WPST"      4
//	4  version           1   (the version the hello exchange agreed; 1 in a hello)
//	5  type              1   (TypeHello, TypePing, or an application's ≥ FirstAppType)
//	6  reserved (0)      2
//	8  payload length    4   (≤ the receiver's maximum frame size)
//	12 payload
//
// Wire format of a hello's payload (HelloLen bytes):
//
//	0  lowest version    1
//	1  highest version   1
//	2  reserved (0)      2
//	4  cluster tag       4
//	8  node id           4
//	12 incarnation       8
const (
	// HeaderLen is the length of a frame header.
	HeaderLen = 12
	// HelloLen is the length of a hello's payload.
	HelloLen = 20
	// MinVersion and MaxVersion are the protocol versions this code speaks.
	MinVersion = 1
	MaxVersion = 1
	// DefaultMaxFrame is the default largest payload a Mesh accepts.
	DefaultMaxFrame = 64 << 20
)

// Frame types 0..FirstAppType-1 belong to this package; the rest are the
// application's.
const (
	// TypeHello opens a connection, each side's first frame.
	TypeHello uint8 = 0
	// TypePing carries nothing; the receiver discards it. A write that
	// fails tells the sender the connection is dead.
	TypePing uint8 = 1
	// FirstAppType is the lowest frame type Send accepts.
	FirstAppType uint8 = 16
)

var magic = [4]byte{'W', 'P', 'S', 'T'}

// ErrMalformed wraps every decoding error; the message names the problem.
var ErrMalformed = errors.New("stream: malformed")

// Header is a frame's header.
type Header struct {
	Version uint8
	Type    uint8
	Len     uint32
}

// AppendBinary appends h's HeaderLen bytes to b.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, magic[:]...)
	b = append(b, h.Version, h.Type, 0, 0)
	return binary.BigEndian.AppendUint32(b, h.Len), nil
}

// ParseHeader decodes a header: the magic, a version in
// MinVersion..MaxVersion, zero reserved bytes and a length of at most max.
func ParseHeader(b []byte, max uint32) (Header, error) {
	if len(b) != HeaderLen {
		return Header{}, fmt.Errorf("%w: header of %d bytes, want %d", ErrMalformed, len(b), HeaderLen)
	}
	if [4]byte(b[:4]) != magic {
		return Header{}, fmt.Errorf("%w: magic % x, want %q", ErrMalformed, b[:4], magic[:])
	}
	h := Header{Version: b[4], Type: b[5], Len: binary.BigEndian.Uint32(b[8:])}
	if h.Version < MinVersion || h.Version > MaxVersion {
		return Header{}, fmt.Errorf("%w: version %d, this node speaks %d..%d", ErrMalformed, h.Version, MinVersion, MaxVersion)
	}
	if b[6] != 0 || b[7] != 0 {
		return Header{}, fmt.Errorf("%w: reserved bytes % x are not zero", ErrMalformed, b[6:8])
	}
	if h.Len > max {
		return Header{}, fmt.Errorf("%w: payload of %d bytes, over the maximum %d", ErrMalformed, h.Len, max)
	}
	return h, nil
}

// ReadFrame reads one frame of at most max payload bytes from r. The
// payload is a new slice. An io.EOF before the first byte is returned as
// is; a frame cut short is io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, max uint32) (Header, []byte, error) {
	var hb [HeaderLen]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return Header{}, nil, err
	}
	h, err := ParseHeader(hb[:], max)
	if err != nil {
		return Header{}, nil, err
	}
	p := make([]byte, h.Len)
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, nil, err
	}
	return h, p, nil
}

// Hello is each side's first frame on a connection.
type Hello struct {
	// MinVersion..MaxVersion are the versions the sender speaks; the
	// connection runs at the highest both speak.
	MinVersion, MaxVersion uint8
	// Cluster is the cluster tag (config's cluster_tag).
	Cluster uint32
	// Node is the sender's id; it must match its certificate.
	Node nodes.ID
	// Incarnation is the sender's boot id; it grows across restarts.
	Incarnation uint64
}

// MarshalBinary encodes h (HelloLen bytes).
func (h *Hello) MarshalBinary() ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("stream: marshal hello: %w", err)
	}
	b := make([]byte, HelloLen)
	b[0], b[1] = h.MinVersion, h.MaxVersion
	binary.BigEndian.PutUint32(b[4:], h.Cluster)
	binary.BigEndian.PutUint32(b[8:], uint32(h.Node))
	binary.BigEndian.PutUint64(b[12:], h.Incarnation)
	return b, nil
}

func (h *Hello) check() error {
	switch {
	case h.MinVersion == 0 || h.MinVersion > h.MaxVersion:
		return fmt.Errorf("versions %d..%d", h.MinVersion, h.MaxVersion)
	case !h.Node.Valid():
		return fmt.Errorf("node id %d out of range 1..%d", h.Node, nodes.Max)
	case h.Cluster == 0:
		return errors.New("cluster tag 0")
	}
	return nil
}

// UnmarshalBinary decodes a hello's payload: exactly HelloLen bytes, zero
// reserved bytes, a version range, a node id 1..64 and a non-zero cluster
// tag. It does not check the versions against this code's.
func (h *Hello) UnmarshalBinary(b []byte) error {
	if len(b) != HelloLen {
		return fmt.Errorf("%w: hello of %d bytes, want %d", ErrMalformed, len(b), HelloLen)
	}
	if b[2] != 0 || b[3] != 0 {
		return fmt.Errorf("%w: hello reserved bytes % x are not zero", ErrMalformed, b[2:4])
	}
	v := Hello{
		MinVersion:  b[0],
		MaxVersion:  b[1],
		Cluster:     binary.BigEndian.Uint32(b[4:]),
		Node:        nodes.ID(binary.BigEndian.Uint32(b[8:])),
		Incarnation: binary.BigEndian.Uint64(b[12:]),
	}
	if err := v.check(); err != nil {
		return fmt.Errorf("%w: hello: %v", ErrMalformed, err)
	}
	*h = v
	return nil
}

// negotiate returns the highest version both ranges hold, or false.
func negotiate(aMin, aMax, bMin, bMax uint8) (uint8, bool) {
	v := min(aMax, bMax)
	return v, v >= max(aMin, bMin)
}
