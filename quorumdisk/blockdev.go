package quorumdisk

import (
	"context"
	"fmt"
	"sync"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

// BlockDevice is the block-level view of the quorum LUN the layout and the
// log are written on. WriteBlocks returns only once the blocks are on the
// medium (WRITE(16) with FUA on a SCSI device). A write that fails may have
// landed in part, any subset of its blocks.
type BlockDevice interface {
	BlockSize() int
	Blocks() uint64
	// ReadBlocks fills buf (a multiple of the block size) from lba on.
	ReadBlocks(ctx context.Context, lba uint64, buf []byte) error
	// WriteBlocks writes data (a multiple of the block size) at lba, durably.
	WriteBlocks(ctx context.Context, lba uint64, data []byte) error
}

// DefaultMaxTransfer bounds one READ(16)/WRITE(16) of SCSIBlocks.
const DefaultMaxTransfer = 128 << 10

// SCSIBlocks is a BlockDevice on a scsi.Device: READ(16), and WRITE(16)
// with FUA so that an acknowledged write is on the medium and fencing (a
// RESERVATION CONFLICT) applies to every write (docs/quorum-disk.md
// "Recovery log").
type SCSIBlocks struct {
	dev         scsi.Device
	bs          int
	blocks      uint64
	maxTransfer int
}

// NewSCSIBlocks reads the block size and capacity with READ CAPACITY(16).
func NewSCSIBlocks(ctx context.Context, dev scsi.Device) (*SCSIBlocks, error) {
	c, err := scsi.ReadCapacity16(ctx, dev)
	if err != nil {
		return nil, fmt.Errorf("read capacity of the quorum LUN: %w", err)
	}
	if c.BlockSize == 0 || c.Blocks() == 0 {
		return nil, fmt.Errorf("quorum LUN reports %d blocks of %d bytes", c.Blocks(), c.BlockSize)
	}
	mt := DefaultMaxTransfer
	if mt < int(c.BlockSize) {
		mt = int(c.BlockSize)
	}
	return &SCSIBlocks{dev: dev, bs: int(c.BlockSize), blocks: c.Blocks(), maxTransfer: mt}, nil
}

// Device returns the underlying SCSI device.
func (s *SCSIBlocks) Device() scsi.Device { return s.dev }

// BlockSize is the logical block length READ CAPACITY(16) reported.
func (s *SCSIBlocks) BlockSize() int { return s.bs }

// Blocks is the number of logical blocks.
func (s *SCSIBlocks) Blocks() uint64 { return s.blocks }

// ReadBlocks reads with READ(16), DefaultMaxTransfer bytes at a time.
func (s *SCSIBlocks) ReadBlocks(ctx context.Context, lba uint64, buf []byte) error {
	if err := s.check(lba, buf); err != nil {
		return err
	}
	for off := 0; off < len(buf); {
		n := min(len(buf)-off, s.maxTransfer/s.bs*s.bs)
		l := lba + uint64(off/s.bs)
		if err := scsi.Read16(ctx, s.dev, l, uint32(n/s.bs), buf[off:off+n]); err != nil {
			return fmt.Errorf("read %d blocks at %d: %w", n/s.bs, l, err)
		}
		off += n
	}
	return nil
}

// WriteBlocks writes with WRITE(16) FUA, DefaultMaxTransfer bytes at a time.
func (s *SCSIBlocks) WriteBlocks(ctx context.Context, lba uint64, data []byte) error {
	if err := s.check(lba, data); err != nil {
		return err
	}
	for off := 0; off < len(data); {
		n := min(len(data)-off, s.maxTransfer/s.bs*s.bs)
		l := lba + uint64(off/s.bs)
		if err := scsi.Write16(ctx, s.dev, l, uint32(n/s.bs), data[off:off+n], true); err != nil {
			return fmt.Errorf("write %d blocks at %d (FUA): %w", n/s.bs, l, err)
		}
		off += n
	}
	return nil
}

func (s *SCSIBlocks) check(lba uint64, b []byte) error {
	return checkRange(s.bs, s.blocks, lba, b)
}

func checkRange(bs int, blocks, lba uint64, b []byte) error {
	if len(b)%bs != 0 || len(b) == 0 {
		return fmt.Errorf("transfer of %d bytes is not a positive multiple of the block size %d", len(b), bs)
	}
	if n := uint64(len(b) / bs); lba >= blocks || n > blocks-lba {
		return fmt.Errorf("blocks %d..%d are past the end of the LUN (%d blocks)", lba, lba+n-1, blocks)
	}
	return nil
}

// MemBlocks is a BlockDevice in memory, for tests and the simulator. It is
// safe for concurrent use.
type MemBlocks struct {
	mu   sync.Mutex
	bs   int
	data []byte
}

// NewMemBlocks returns a zeroed device of blocks blocks of bs bytes.
func NewMemBlocks(bs int, blocks uint64) *MemBlocks {
	return &MemBlocks{bs: bs, data: make([]byte, uint64(bs)*blocks)}
}

// BlockSize is the block length.
func (m *MemBlocks) BlockSize() int { return m.bs }

// Blocks is the number of blocks.
func (m *MemBlocks) Blocks() uint64 { return uint64(len(m.data) / m.bs) }

// ReadBlocks copies blocks out.
func (m *MemBlocks) ReadBlocks(_ context.Context, lba uint64, buf []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := checkRange(m.bs, m.Blocks(), lba, buf); err != nil {
		return err
	}
	copy(buf, m.data[lba*uint64(m.bs):])
	return nil
}

// WriteBlocks copies blocks in.
func (m *MemBlocks) WriteBlocks(_ context.Context, lba uint64, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := checkRange(m.bs, m.Blocks(), lba, data); err != nil {
		return err
	}
	copy(m.data[lba*uint64(m.bs):], data)
	return nil
}
