package quorumdisk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Errors returned by the decoders and the log.
var (
	// ErrCorrupt means a structure failed its magic, version, length or
	// CRC32C check.
	ErrCorrupt = errors.New("quorumdisk: corrupt structure")
	// ErrEmpty means the block holds no structure (all zero).
	ErrEmpty = errors.New("quorumdisk: empty block")
	// ErrForeign means the structure is intact but belongs to another format
	// of the LUN (its format id differs from the superblock's).
	ErrForeign = errors.New("quorumdisk: structure from another format")
	// ErrNotFormatted means the LUN holds no Wolfpack superblock.
	ErrNotFormatted = errors.New("quorumdisk: no Wolfpack superblock")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b ...[]byte) uint32 {
	var c uint32
	for _, p := range b {
		c = crc32.Update(c, castagnoli, p)
	}
	return c
}

var be = binary.BigEndian

// Version is the on-disk format version this package writes and reads.
const Version = 1

// MaxNodes is the number of node slots; node ids are 1..MaxNodes.
const MaxNodes = 64

// Magic numbers of the structures (ASCII, big-endian on disk).
const (
	superMagic      = "WOLFPACK"
	heartbeatMagic  = "WPHB"
	poisonMagic     = "WPPP"
	checkpointMagic = "WPCP"
	recordMagic     = "WPLR"
)

// Encoded sizes: each structure starts a block; the rest of the block is zero.
const (
	SuperblockSize       = 128
	HeartbeatSize        = 64
	PoisonSize           = 128
	CheckpointHeaderSize = 128
	RecordHeaderSize     = 64
	// MinBlockSize is the smallest logical block the layout supports.
	MinBlockSize = 512
)

// Layout says where each area lives, in logical blocks of BlockSize bytes.
type Layout struct {
	BlockSize uint32
	// DeviceBlocks is the capacity of the LUN when it was formatted.
	DeviceBlocks uint64
	// SlotsLBA is the first block of the slot area: node n's heartbeat is at
	// SlotsLBA+2(n-1), its poison-pill mailbox at SlotsLBA+2(n-1)+1.
	SlotsLBA  uint64
	SlotCount uint32
	// CheckpointLBA are the two checkpoint areas, each CheckpointBlocks long
	// (one header block, then the snapshot).
	CheckpointLBA    [2]uint64
	CheckpointBlocks uint32
	// LogLBA and LogBlocks are the ring of log records.
	LogLBA    uint64
	LogBlocks uint64
}

// HeartbeatLBA is node's heartbeat slot.
func (l Layout) HeartbeatLBA(node uint32) uint64 { return l.SlotsLBA + 2*uint64(node-1) }

// MailboxLBA is node's poison-pill mailbox.
func (l Layout) MailboxLBA(node uint32) uint64 { return l.SlotsLBA + 2*uint64(node-1) + 1 }

func (l Layout) validate() error {
	switch {
	case l.BlockSize < MinBlockSize || l.BlockSize&(l.BlockSize-1) != 0 || l.BlockSize > 1<<16:
		return fmt.Errorf("block size %d: want a power of two from %d to 65536", l.BlockSize, MinBlockSize)
	case l.SlotCount < MaxNodes || l.SlotCount > 1<<16:
		return fmt.Errorf("slot count %d: want %d to 65536", l.SlotCount, MaxNodes)
	case l.SlotsLBA < 1:
		return errors.New("slot area overlaps the superblock")
	case l.CheckpointBlocks < 2:
		return fmt.Errorf("checkpoint area of %d blocks: want at least 2", l.CheckpointBlocks)
	case l.LogBlocks < 8:
		return fmt.Errorf("log ring of %d blocks: want at least 8", l.LogBlocks)
	}
	// The areas must be in order and fit: superblock, slots, ckpt A, ckpt B, log.
	end := l.SlotsLBA + 2*uint64(l.SlotCount)
	if l.CheckpointLBA[0] < end {
		return errors.New("checkpoint area A overlaps the slots")
	}
	end = l.CheckpointLBA[0] + uint64(l.CheckpointBlocks)
	if l.CheckpointLBA[1] < end {
		return errors.New("checkpoint area B overlaps area A")
	}
	end = l.CheckpointLBA[1] + uint64(l.CheckpointBlocks)
	if l.LogLBA < end {
		return errors.New("log ring overlaps checkpoint area B")
	}
	if l.LogLBA+l.LogBlocks < l.LogLBA || l.LogLBA+l.LogBlocks > l.DeviceBlocks {
		return fmt.Errorf("log ring ends past the device (%d blocks)", l.DeviceBlocks)
	}
	return nil
}

// DefaultLayout lays out a LUN of blocks blocks of blockSize bytes: the
// superblock in block 0, MaxNodes slots of two blocks each, two checkpoint
// areas of checkpointBytes each (8 MiB when zero, fewer on a small LUN), and
// the rest as the log ring.
func DefaultLayout(blockSize uint32, blocks uint64, checkpointBytes uint32) (Layout, error) {
	l := Layout{BlockSize: blockSize, DeviceBlocks: blocks, SlotsLBA: 1, SlotCount: MaxNodes}
	if blockSize < MinBlockSize || blockSize&(blockSize-1) != 0 {
		return l, fmt.Errorf("block size %d: want a power of two of at least %d", blockSize, MinBlockSize)
	}
	if checkpointBytes == 0 {
		checkpointBytes = 8 << 20
	}
	l.CheckpointBlocks = max(2, checkpointBytes/blockSize)
	meta := 1 + 2*uint64(l.SlotCount)
	// Keep at least half of what is left for the log.
	if rest := int64(blocks) - int64(meta); rest > 0 && uint64(l.CheckpointBlocks)*4 > uint64(rest) {
		l.CheckpointBlocks = max(2, uint32(uint64(rest)/4))
	}
	l.CheckpointLBA[0] = meta
	l.CheckpointLBA[1] = meta + uint64(l.CheckpointBlocks)
	l.LogLBA = l.CheckpointLBA[1] + uint64(l.CheckpointBlocks)
	if blocks > l.LogLBA {
		l.LogBlocks = blocks - l.LogLBA
	}
	if err := l.validate(); err != nil {
		return l, fmt.Errorf("lay out %d blocks of %d bytes: %w", blocks, blockSize, err)
	}
	return l, nil
}

// Superblock is block 0 of the quorum LUN.
//
// Reference: docs/quorum-disk.md "Superblock (block 0, 128 bytes)".
type Superblock struct {
	Version uint16
	// ClusterID names the cluster (random at format unless given).
	ClusterID [16]byte
	// ClusterTag is the first half of every reservation key (docs/design.md,
	// "Quorum arbitration").
	ClusterTag uint32
	// FormatID stamps every other structure of this format, so that
	// leftovers of an earlier format of the LUN are never taken for current.
	FormatID uint64
	// FormatTime is when the LUN was formatted (Unix nanoseconds).
	FormatTime int64
	Layout     Layout
}

// MarshalBinary encodes the superblock in SuperblockSize bytes.
func (s Superblock) MarshalBinary() ([]byte, error) {
	b := make([]byte, SuperblockSize)
	copy(b[0:8], superMagic)
	be.PutUint16(b[8:], s.Version)
	be.PutUint32(b[12:], s.Layout.BlockSize)
	copy(b[16:32], s.ClusterID[:])
	be.PutUint32(b[32:], s.ClusterTag)
	be.PutUint32(b[36:], s.Layout.SlotCount)
	be.PutUint64(b[40:], s.Layout.DeviceBlocks)
	be.PutUint64(b[48:], s.Layout.SlotsLBA)
	be.PutUint64(b[56:], s.Layout.CheckpointLBA[0])
	be.PutUint64(b[64:], s.Layout.CheckpointLBA[1])
	be.PutUint32(b[72:], s.Layout.CheckpointBlocks)
	be.PutUint64(b[80:], s.Layout.LogLBA)
	be.PutUint64(b[88:], s.Layout.LogBlocks)
	be.PutUint64(b[96:], s.FormatID)
	be.PutUint64(b[104:], uint64(s.FormatTime))
	be.PutUint32(b[124:], crc32c(b[:124]))
	return b, nil
}

// UnmarshalBinary decodes a superblock; b may be a whole block. It returns
// ErrNotFormatted without the magic, ErrCorrupt for a bad CRC, version or
// layout.
func (s *Superblock) UnmarshalBinary(b []byte) error {
	if len(b) < SuperblockSize || string(b[0:8]) != superMagic {
		return ErrNotFormatted
	}
	if crc32c(b[:124]) != be.Uint32(b[124:]) {
		return fmt.Errorf("superblock: %w: CRC32C mismatch", ErrCorrupt)
	}
	v := be.Uint16(b[8:])
	if v != Version {
		return fmt.Errorf("superblock: %w: format version %d, this build reads %d", ErrCorrupt, v, Version)
	}
	var n Superblock
	n.Version = v
	n.Layout.BlockSize = be.Uint32(b[12:])
	copy(n.ClusterID[:], b[16:32])
	n.ClusterTag = be.Uint32(b[32:])
	n.Layout.SlotCount = be.Uint32(b[36:])
	n.Layout.DeviceBlocks = be.Uint64(b[40:])
	n.Layout.SlotsLBA = be.Uint64(b[48:])
	n.Layout.CheckpointLBA[0] = be.Uint64(b[56:])
	n.Layout.CheckpointLBA[1] = be.Uint64(b[64:])
	n.Layout.CheckpointBlocks = be.Uint32(b[72:])
	n.Layout.LogLBA = be.Uint64(b[80:])
	n.Layout.LogBlocks = be.Uint64(b[88:])
	n.FormatID = be.Uint64(b[96:])
	n.FormatTime = int64(be.Uint64(b[104:]))
	if err := n.Layout.validate(); err != nil {
		return fmt.Errorf("superblock: %w: %v", ErrCorrupt, err)
	}
	*s = n
	return nil
}

// Heartbeat is one node's disk heartbeat slot (docs/design.md, "The disk
// as the last heartbeat path"; docs/quorum-disk.md "Heartbeat slot (64
// bytes)"): the node rewrites it every beat; the others read it to tell
// "partitioned" from "dead".
type Heartbeat struct {
	FormatID    uint64
	Node        uint32
	Counter     uint64
	Incarnation uint64
	Time        int64 // Unix nanoseconds, the writer's clock
	Epoch       uint64
}

// MarshalBinary encodes the slot in HeartbeatSize bytes.
func (h Heartbeat) MarshalBinary() ([]byte, error) {
	b := make([]byte, HeartbeatSize)
	copy(b[0:4], heartbeatMagic)
	be.PutUint16(b[4:], Version)
	be.PutUint64(b[8:], h.FormatID)
	be.PutUint32(b[16:], h.Node)
	be.PutUint64(b[24:], h.Counter)
	be.PutUint64(b[32:], h.Incarnation)
	be.PutUint64(b[40:], uint64(h.Time))
	be.PutUint64(b[48:], h.Epoch)
	be.PutUint32(b[60:], crc32c(b[:60]))
	return b, nil
}

// UnmarshalBinary decodes a slot: ErrEmpty for a zero block, ErrCorrupt
// otherwise when it does not check.
func (h *Heartbeat) UnmarshalBinary(b []byte) error {
	if err := checkFixed(b, HeartbeatSize, heartbeatMagic, 60, "heartbeat slot"); err != nil {
		return err
	}
	*h = Heartbeat{
		FormatID: be.Uint64(b[8:]), Node: be.Uint32(b[16:]), Counter: be.Uint64(b[24:]),
		Incarnation: be.Uint64(b[32:]), Time: int64(be.Uint64(b[40:])), Epoch: be.Uint64(b[48:]),
	}
	return nil
}

// MaxReason is the longest poison-pill reason, in bytes.
const MaxReason = 64

// PoisonPill is a message in a node's mailbox telling it to halt: the
// quorum owner writes it for a node it has fenced, so that a node that can
// still read the LUN stops even before its own quorum check fails.
type PoisonPill struct {
	FormatID uint64
	Target   uint32 // the node that must halt
	Sender   uint32
	// Incarnation is the target's incarnation the pill is meant for; 0 means
	// any incarnation.
	Incarnation uint64
	Epoch       uint64 // the sender's membership epoch
	Time        int64
	Seq         uint64
	Reason      string // at most MaxReason bytes
}

// MarshalBinary encodes the pill in PoisonSize bytes.
func (p PoisonPill) MarshalBinary() ([]byte, error) {
	if len(p.Reason) > MaxReason {
		return nil, fmt.Errorf("poison pill reason of %d bytes: at most %d", len(p.Reason), MaxReason)
	}
	b := make([]byte, PoisonSize)
	copy(b[0:4], poisonMagic)
	be.PutUint16(b[4:], Version)
	be.PutUint64(b[8:], p.FormatID)
	be.PutUint32(b[16:], p.Target)
	be.PutUint32(b[20:], p.Sender)
	be.PutUint64(b[24:], p.Incarnation)
	be.PutUint64(b[32:], p.Epoch)
	be.PutUint64(b[40:], uint64(p.Time))
	be.PutUint64(b[48:], p.Seq)
	copy(b[56:56+MaxReason], p.Reason)
	be.PutUint32(b[124:], crc32c(b[:124]))
	return b, nil
}

// UnmarshalBinary decodes a pill: ErrEmpty for an empty mailbox.
func (p *PoisonPill) UnmarshalBinary(b []byte) error {
	if err := checkFixed(b, PoisonSize, poisonMagic, 124, "poison pill"); err != nil {
		return err
	}
	reason := b[56 : 56+MaxReason]
	if i := bytes.IndexByte(reason, 0); i >= 0 {
		reason = reason[:i]
	}
	*p = PoisonPill{
		FormatID: be.Uint64(b[8:]), Target: be.Uint32(b[16:]), Sender: be.Uint32(b[20:]),
		Incarnation: be.Uint64(b[24:]), Epoch: be.Uint64(b[32:]), Time: int64(be.Uint64(b[40:])),
		Seq: be.Uint64(b[48:]), Reason: string(reason),
	}
	return nil
}

// Checkpoint is the header block of a checkpoint area. The snapshot
// (PayloadLen bytes, CRC32C PayloadCRC) follows in the next blocks.
type Checkpoint struct {
	FormatID uint64
	// Seq orders checkpoints: replay takes the valid one with the higher Seq.
	Seq uint64
	// LSN is the last log record the snapshot includes; Epoch and GUPSeq
	// are that record's.
	LSN    uint64
	Epoch  uint64
	GUPSeq uint64
	// NextPos is the ring offset (in blocks) where record LSN+1 starts,
	// or 0 if it did not fit there.
	NextPos    uint64
	PayloadLen uint32
	PayloadCRC uint32
	Time       int64
}

// MarshalBinary encodes the header in CheckpointHeaderSize bytes.
func (c Checkpoint) MarshalBinary() ([]byte, error) {
	b := make([]byte, CheckpointHeaderSize)
	copy(b[0:4], checkpointMagic)
	be.PutUint16(b[4:], Version)
	be.PutUint64(b[8:], c.FormatID)
	be.PutUint64(b[16:], c.Seq)
	be.PutUint64(b[24:], c.LSN)
	be.PutUint64(b[32:], c.Epoch)
	be.PutUint64(b[40:], c.GUPSeq)
	be.PutUint64(b[48:], c.NextPos)
	be.PutUint32(b[56:], c.PayloadLen)
	be.PutUint32(b[60:], c.PayloadCRC)
	be.PutUint64(b[64:], uint64(c.Time))
	be.PutUint32(b[124:], crc32c(b[:124]))
	return b, nil
}

// UnmarshalBinary decodes a checkpoint header.
func (c *Checkpoint) UnmarshalBinary(b []byte) error {
	if err := checkFixed(b, CheckpointHeaderSize, checkpointMagic, 124, "checkpoint"); err != nil {
		return err
	}
	*c = Checkpoint{
		FormatID: be.Uint64(b[8:]), Seq: be.Uint64(b[16:]), LSN: be.Uint64(b[24:]),
		Epoch: be.Uint64(b[32:]), GUPSeq: be.Uint64(b[40:]), NextPos: be.Uint64(b[48:]),
		PayloadLen: be.Uint32(b[56:]), PayloadCRC: be.Uint32(b[60:]), Time: int64(be.Uint64(b[64:])),
	}
	return nil
}

// checkFixed checks a fixed-size structure: length, magic, version, CRC32C
// of b[:crcAt] stored at b[crcAt:].
func checkFixed(b []byte, size int, magic string, crcAt int, what string) error {
	if len(b) < size {
		return fmt.Errorf("%s: %w: %d bytes, want %d", what, ErrCorrupt, len(b), size)
	}
	if string(b[0:4]) != magic {
		if allZero(b[:size]) {
			return fmt.Errorf("%s: %w", what, ErrEmpty)
		}
		return fmt.Errorf("%s: %w: bad magic %q", what, ErrCorrupt, b[0:4])
	}
	if crc32c(b[:crcAt]) != be.Uint32(b[crcAt:]) {
		return fmt.Errorf("%s: %w: CRC32C mismatch", what, ErrCorrupt)
	}
	if v := be.Uint16(b[4:]); v != Version {
		return fmt.Errorf("%s: %w: version %d, want %d", what, ErrCorrupt, v, Version)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// RecordType says what a log record carries.
type RecordType uint16

// Record types. Others are free for the layers above (GUP, regroup).
const (
	RecordUpdate     RecordType = 1 // a committed cluster database update (GUP)
	RecordMembership RecordType = 2 // a new membership and epoch
	RecordOwner      RecordType = 3 // a node took the quorum reservation
	RecordNote       RecordType = 4 // free text (tests, benchmarks, operators)
)

// Record is one recovery log record.
type Record struct {
	FormatID uint64
	LSN      uint64
	Epoch    uint64
	GUPSeq   uint64
	Type     RecordType
	Payload  []byte
}

// blocks returns how many blocks of size bs the encoded record spans.
func (r Record) blocks(bs int) int { return (RecordHeaderSize + len(r.Payload) + bs - 1) / bs }

// MarshalBinary encodes the record: a RecordHeaderSize header and the
// payload, not padded.
func (r Record) MarshalBinary() ([]byte, error) {
	return r.appendTo(nil, 1), nil
}

// appendTo encodes the record padded to whole blocks of bs bytes (bs 1: not
// padded) and appends it to dst.
func (r Record) appendTo(dst []byte, bs int) []byte {
	n := RecordHeaderSize + len(r.Payload)
	blocks := (n + bs - 1) / bs
	start := len(dst)
	dst = append(dst, make([]byte, blocks*bs)...)
	b := dst[start:]
	copy(b[0:4], recordMagic)
	be.PutUint16(b[4:], Version)
	be.PutUint16(b[6:], uint16(r.Type))
	be.PutUint64(b[8:], r.FormatID)
	be.PutUint64(b[16:], r.LSN)
	be.PutUint64(b[24:], r.Epoch)
	be.PutUint64(b[32:], r.GUPSeq)
	be.PutUint32(b[40:], uint32(len(r.Payload)))
	if bs > 1 {
		be.PutUint32(b[44:], uint32(blocks))
	}
	copy(b[RecordHeaderSize:], r.Payload)
	be.PutUint32(b[60:], crc32c(b[:60], r.Payload))
	return dst
}

// UnmarshalBinary decodes a record; b holds the header and at least the
// payload (padding after it is ignored). The payload is copied.
func (r *Record) UnmarshalBinary(b []byte) error {
	_, err := r.decode(b, 0)
	return err
}

// decode decodes a record and returns the number of blocks it says it spans
// (bs 0: not checked).
func (r *Record) decode(b []byte, bs int) (int, error) {
	if len(b) < RecordHeaderSize {
		return 0, fmt.Errorf("log record: %w: %d bytes", ErrCorrupt, len(b))
	}
	if string(b[0:4]) != recordMagic {
		if allZero(b[:RecordHeaderSize]) {
			return 0, fmt.Errorf("log record: %w", ErrEmpty)
		}
		return 0, fmt.Errorf("log record: %w: bad magic %q", ErrCorrupt, b[0:4])
	}
	if v := be.Uint16(b[4:]); v != Version {
		return 0, fmt.Errorf("log record: %w: version %d", ErrCorrupt, v)
	}
	plen := int(be.Uint32(b[40:]))
	if plen < 0 || plen > len(b)-RecordHeaderSize {
		return 0, fmt.Errorf("log record: %w: payload of %d bytes past the end", ErrCorrupt, plen)
	}
	payload := b[RecordHeaderSize : RecordHeaderSize+plen]
	if crc32c(b[:60], payload) != be.Uint32(b[60:]) {
		return 0, fmt.Errorf("log record: %w: CRC32C mismatch", ErrCorrupt)
	}
	blocks := int(be.Uint32(b[44:]))
	if bs > 0 && blocks != (RecordHeaderSize+plen+bs-1)/bs {
		return 0, fmt.Errorf("log record: %w: spans %d blocks, payload says otherwise", ErrCorrupt, blocks)
	}
	*r = Record{
		Type: RecordType(be.Uint16(b[6:])), FormatID: be.Uint64(b[8:]), LSN: be.Uint64(b[16:]),
		Epoch: be.Uint64(b[24:]), GUPSeq: be.Uint64(b[32:]), Payload: append([]byte{}, payload...),
	}
	return blocks, nil
}
