package quorumdisk

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Disk is a formatted quorum LUN: its superblock and the device.
type Disk struct {
	dev BlockDevice
	sb  Superblock
}

// Superblock returns the superblock the disk was opened with.
func (d *Disk) Superblock() Superblock { return d.sb }

// Device returns the block device.
func (d *Disk) Device() BlockDevice { return d.dev }

// Open reads and checks the superblock. The block size must match the
// device's: a LUN formatted with another block size is refused.
func Open(ctx context.Context, dev BlockDevice) (*Disk, error) {
	b := make([]byte, dev.BlockSize())
	if err := dev.ReadBlocks(ctx, 0, b); err != nil {
		return nil, fmt.Errorf("read superblock: %w", err)
	}
	var sb Superblock
	if err := sb.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	if int(sb.Layout.BlockSize) != dev.BlockSize() {
		return nil, fmt.Errorf("superblock: %w: formatted with %d-byte blocks, the LUN has %d", ErrCorrupt, sb.Layout.BlockSize, dev.BlockSize())
	}
	if sb.Layout.LogLBA+sb.Layout.LogBlocks > dev.Blocks() {
		return nil, fmt.Errorf("superblock: %w: the layout ends past the LUN (%d blocks)", ErrCorrupt, dev.Blocks())
	}
	return &Disk{dev: dev, sb: sb}, nil
}

// FormatOptions tune Format; zero fields take defaults.
type FormatOptions struct {
	// ClusterID is random when zero.
	ClusterID [16]byte
	// ClusterTag, the first half of every reservation key, is taken from
	// the cluster id when zero.
	ClusterTag uint32
	// CheckpointBytes is the size of each checkpoint area (default 8 MiB: the cluster database, several MB, fits).
	CheckpointBytes uint32
	// Force formats over whatever Detect finds.
	Force bool
	// Now is the format time (time.Now when zero).
	Now time.Time
}

// ErrInUse is returned by Format when the LUN holds something and
// FormatOptions.Force is not set. The wrapping error names what was found.
var ErrInUse = errors.New("quorumdisk: LUN is in use")

// Format writes a new quorum disk layout: superblock, empty slots and
// mailboxes, an empty checkpoint (sequence 1, LSN 0) in area A, a zeroed
// area B and the first log block zeroed. It refuses a LUN on which Detect
// finds a signature unless opts.Force.
func Format(ctx context.Context, dev BlockDevice, opts FormatOptions) (*Disk, error) {
	if !opts.Force {
		sigs, err := Detect(ctx, dev)
		if err != nil {
			return nil, err
		}
		if len(sigs) > 0 {
			names := make([]string, len(sigs))
			for i, s := range sigs {
				names[i] = s.String()
			}
			return nil, fmt.Errorf("%w: found %s", ErrInUse, strings.Join(names, ", "))
		}
	}
	l, err := DefaultLayout(uint32(dev.BlockSize()), dev.Blocks(), opts.CheckpointBytes)
	if err != nil {
		return nil, err
	}
	sb := Superblock{Version: Version, ClusterID: opts.ClusterID, ClusterTag: opts.ClusterTag, Layout: l}
	if sb.ClusterID == ([16]byte{}) {
		if _, err := rand.Read(sb.ClusterID[:]); err != nil {
			return nil, fmt.Errorf("make a cluster id: %w", err)
		}
	}
	if sb.ClusterTag == 0 {
		sb.ClusterTag = binary.BigEndian.Uint32(sb.ClusterID[:4]) | 1
	}
	var fid [8]byte
	for sb.FormatID == 0 {
		if _, err := rand.Read(fid[:]); err != nil {
			return nil, fmt.Errorf("make a format id: %w", err)
		}
		sb.FormatID = binary.BigEndian.Uint64(fid[:])
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	sb.FormatTime = now.UnixNano()
	bs := dev.BlockSize()

	// Everything but the superblock first, so that an interrupted format
	// leaves no superblock pointing at garbage.
	zero := make([]byte, 2*int(l.SlotCount)*bs)
	if err := dev.WriteBlocks(ctx, l.SlotsLBA, zero); err != nil {
		return nil, fmt.Errorf("format: clear slots: %w", err)
	}
	d := &Disk{dev: dev, sb: sb}
	if err := dev.WriteBlocks(ctx, l.CheckpointLBA[1], make([]byte, bs)); err != nil {
		return nil, fmt.Errorf("format: clear checkpoint area B: %w", err)
	}
	if err := dev.WriteBlocks(ctx, l.LogLBA, make([]byte, bs)); err != nil {
		return nil, fmt.Errorf("format: clear the log: %w", err)
	}
	if err := d.writeCheckpoint(ctx, 0, Checkpoint{FormatID: sb.FormatID, Seq: 1, Time: sb.FormatTime}, nil); err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	b := make([]byte, bs)
	enc, _ := sb.MarshalBinary()
	copy(b, enc)
	if err := dev.WriteBlocks(ctx, 0, b); err != nil {
		return nil, fmt.Errorf("format: write superblock: %w", err)
	}
	return d, nil
}

// Signature is something Detect recognised on a LUN.
type Signature struct {
	// Kind is "wolfpack", "partition table" or "filesystem".
	Kind string
	// Name says which: "Wolfpack quorum disk", "GPT", "ext2/3/4", ...
	Name string
	// Offset is the byte offset of the signature.
	Offset int64
	// Detail adds what is known (cluster id, damaged superblock).
	Detail string
}

func (s Signature) String() string {
	str := fmt.Sprintf("%s %s at byte %d", s.Name, s.Kind, s.Offset)
	if s.Kind == "wolfpack" {
		str = s.Name
	}
	if s.Detail != "" {
		str += " (" + s.Detail + ")"
	}
	return str
}

// detectBytes is how much of the LUN Detect reads: enough for btrfs's
// superblock at 64 KiB.
const detectBytes = 72 << 10

// fsSignatures are byte signatures at fixed offsets (as blkid knows them).
var fsSignatures = []struct {
	name  string
	off   int64
	magic string
}{
	{"XFS", 0, "XFSB"},
	{"LUKS", 0, "LUKS\xba\xbe"},
	{"squashfs", 0, "hsqs"},
	{"NTFS", 3, "NTFS    "},
	{"FAT12", 54, "FAT12   "},
	{"FAT16", 54, "FAT16   "},
	{"FAT32", 82, "FAT32   "},
	{"LVM2 physical volume", 512 + 24, "LVM2 001"},
	{"ext2/3/4", 1080, "\x53\xef"},
	{"Linux swap", 4086, "SWAPSPACE2"},
	{"Linux swap", 4086, "SWAP-SPACE"},
	{"Linux RAID (md 1.1)", 0, "\xfc\x4e\x2b\xa9"},
	{"Linux RAID (md 1.2)", 4096, "\xfc\x4e\x2b\xa9"},
	{"ISO 9660", 32769, "CD001"},
	{"btrfs", 0x10040, "_BHRfS_M"},
}

// Detect reads the start of the LUN and reports a Wolfpack superblock (intact
// or damaged), filesystem signatures and partition tables (GPT, MBR), in that
// order. An empty result means the LUN looks unused.
func Detect(ctx context.Context, dev BlockDevice) ([]Signature, error) {
	bs := dev.BlockSize()
	n := min(uint64(detectBytes/bs+1), dev.Blocks())
	b := make([]byte, int(n)*bs)
	if err := dev.ReadBlocks(ctx, 0, b); err != nil {
		return nil, fmt.Errorf("read the start of the LUN: %w", err)
	}
	return detect(b, bs), nil
}

func detect(b []byte, bs int) []Signature {
	var sigs []Signature
	at := func(off int64, magic string) bool {
		return off+int64(len(magic)) <= int64(len(b)) && string(b[off:off+int64(len(magic))]) == magic
	}
	if at(0, superMagic) {
		var sb Superblock
		s := Signature{Kind: "wolfpack", Name: "Wolfpack quorum disk superblock"}
		if err := sb.UnmarshalBinary(b); err != nil {
			s.Detail = "damaged: " + err.Error()
		} else {
			s.Detail = fmt.Sprintf("cluster id %x, tag 0x%08x, formatted %s", sb.ClusterID, sb.ClusterTag,
				time.Unix(0, sb.FormatTime).UTC().Format(time.RFC3339))
		}
		sigs = append(sigs, s)
	}
	for _, f := range fsSignatures {
		if at(f.off, f.magic) {
			sigs = append(sigs, Signature{Kind: "filesystem", Name: f.name, Offset: f.off})
		}
	}
	if at(int64(bs), "EFI PART") {
		sigs = append(sigs, Signature{Kind: "partition table", Name: "GPT", Offset: int64(bs)})
	} else if len(b) >= 512 && b[510] == 0x55 && b[511] == 0xaa && !bytes.Equal(b[446:510], make([]byte, 64)) {
		sigs = append(sigs, Signature{Kind: "partition table", Name: "MBR (DOS)", Offset: 510})
	}
	return sigs
}

// ReadHeartbeats reads every slot in one command. Slots that are empty,
// corrupt or from another format come back zero (Node 0).
func (d *Disk) ReadHeartbeats(ctx context.Context) ([]Heartbeat, error) {
	b := make([]byte, 2*int(d.sb.Layout.SlotCount)*d.dev.BlockSize())
	if err := d.dev.ReadBlocks(ctx, d.sb.Layout.SlotsLBA, b); err != nil {
		return nil, fmt.Errorf("read heartbeat slots: %w", err)
	}
	return d.decodeSlots(b, MaxNodes), nil
}

// decodeSlots decodes the heartbeat slots of nodes 1..n from b, the slot
// area read from its start.
func (d *Disk) decodeSlots(b []byte, n int) []Heartbeat {
	bs := d.dev.BlockSize()
	hs := make([]Heartbeat, n)
	for i := range hs {
		var h Heartbeat
		if h.UnmarshalBinary(b[2*i*bs:(2*i+1)*bs]) == nil && h.FormatID == d.sb.FormatID && h.Node == uint32(i+1) {
			hs[i] = h
		}
	}
	return hs
}

// slotBufs holds ReadSlots' buffers: a node reads the slot area every
// disk beat, and nothing it decodes from the buffer keeps a reference.
var slotBufs sync.Pool // *[]byte

// slotBuf returns a zeroed buffer of n bytes, as make would.
func slotBuf(n int) *[]byte {
	b, _ := slotBufs.Get().(*[]byte)
	if b == nil || cap(*b) < n {
		nb := make([]byte, n)
		return &nb
	}
	*b = (*b)[:n]
	clear(*b)
	return b
}

// ReadSlots reads the heartbeat slots and mailboxes of nodes 1..upTo (and
// of self) in one command: the slots as ReadHeartbeats returns them, and
// the pill in self's mailbox, if it holds one of this format.
func (d *Disk) ReadSlots(ctx context.Context, self, upTo uint32) (hs []Heartbeat, pill PoisonPill, ok bool, err error) {
	if self < 1 || self > MaxNodes {
		return nil, pill, false, fmt.Errorf("read slots: node id %d out of 1..%d", self, MaxNodes)
	}
	upTo = min(max(upTo, self), MaxNodes)
	l := d.sb.Layout
	bs := d.dev.BlockSize()
	b := slotBuf(2 * int(upTo) * bs)
	if err := d.dev.ReadBlocks(ctx, l.SlotsLBA, *b); err != nil {
		// Not reused: a device whose command timed out may still write
		// into it.
		return nil, pill, false, fmt.Errorf("read heartbeat slots and mailboxes: %w", err)
	}
	defer slotBufs.Put(b)
	hs = d.decodeSlots(*b, int(upTo))
	mb := (*b)[(2*int(self-1)+1)*bs : (2*int(self-1)+2)*bs]
	if pill.UnmarshalBinary(mb) == nil && pill.FormatID == d.sb.FormatID && pill.Target == self {
		return hs, pill, true, nil
	}
	return hs, PoisonPill{}, false, nil
}

// WriteHeartbeat writes h into slot h.Node (its FormatID is set).
func (d *Disk) WriteHeartbeat(ctx context.Context, h Heartbeat) error {
	if h.Node < 1 || h.Node > MaxNodes {
		return fmt.Errorf("write heartbeat: node id %d out of 1..%d", h.Node, MaxNodes)
	}
	h.FormatID = d.sb.FormatID
	enc, _ := h.MarshalBinary()
	b := make([]byte, d.dev.BlockSize())
	copy(b, enc)
	if err := d.dev.WriteBlocks(ctx, d.sb.Layout.HeartbeatLBA(h.Node), b); err != nil {
		return fmt.Errorf("write heartbeat slot of node %d: %w", h.Node, err)
	}
	return nil
}

// WritePoison puts p into the mailbox of p.Target.
func (d *Disk) WritePoison(ctx context.Context, p PoisonPill) error {
	if p.Target < 1 || p.Target > MaxNodes {
		return fmt.Errorf("write poison pill: node id %d out of 1..%d", p.Target, MaxNodes)
	}
	p.FormatID = d.sb.FormatID
	enc, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	b := make([]byte, d.dev.BlockSize())
	copy(b, enc)
	if err := d.dev.WriteBlocks(ctx, d.sb.Layout.MailboxLBA(p.Target), b); err != nil {
		return fmt.Errorf("write poison pill for node %d: %w", p.Target, err)
	}
	return nil
}

// ClearPoison empties node's mailbox (a node does it when it rejoins).
func (d *Disk) ClearPoison(ctx context.Context, node uint32) error {
	if node < 1 || node > MaxNodes {
		return fmt.Errorf("clear poison pill: node id %d out of 1..%d", node, MaxNodes)
	}
	if err := d.dev.WriteBlocks(ctx, d.sb.Layout.MailboxLBA(node), make([]byte, d.dev.BlockSize())); err != nil {
		return fmt.Errorf("clear mailbox of node %d: %w", node, err)
	}
	return nil
}

// ReadPoison reads node's mailbox; ok is false when it holds no pill of this
// format.
func (d *Disk) ReadPoison(ctx context.Context, node uint32) (p PoisonPill, ok bool, err error) {
	if node < 1 || node > MaxNodes {
		return p, false, fmt.Errorf("read poison pill: node id %d out of 1..%d", node, MaxNodes)
	}
	b := make([]byte, d.dev.BlockSize())
	if err := d.dev.ReadBlocks(ctx, d.sb.Layout.MailboxLBA(node), b); err != nil {
		return p, false, fmt.Errorf("read mailbox of node %d: %w", node, err)
	}
	if p.UnmarshalBinary(b) != nil || p.FormatID != d.sb.FormatID || p.Target != node {
		return PoisonPill{}, false, nil
	}
	return p, true, nil
}

// Poisoned reports whether pill p tells a node of incarnation inc to halt.
func (p PoisonPill) Poisoned(inc uint64) bool {
	return p.Incarnation == 0 || p.Incarnation == inc
}
