package quorumdisk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors of the log.
var (
	// ErrLogFull means the ring has no room for the record until the next
	// checkpoint.
	ErrLogFull = errors.New("quorumdisk: log ring full, checkpoint first")
	// ErrTooLarge means a record or snapshot exceeds what the layout holds.
	ErrTooLarge = errors.New("quorumdisk: too large for the layout")
	// ErrNoCheckpoint means neither checkpoint area holds a valid
	// checkpoint: the LUN is damaged (Format writes one).
	ErrNoCheckpoint = errors.New("quorumdisk: no valid checkpoint")
)

// readAhead is how many ring blocks replay reads per command.
const readAhead = 256

// Replay is what the log holds: the newest valid checkpoint, its snapshot,
// and the records after it in LSN order.
//
// Reference: docs/quorum-disk.md "Recovery log" (replay: newest valid
// checkpoint, then records in
// LSN order until the first bad CRC or gap).
type Replay struct {
	Checkpoint Checkpoint
	// Area is the checkpoint area (0 or 1) the checkpoint came from.
	Area     int
	Snapshot []byte
	Records  []Record
	// End says why replay stopped after the last record (for diagnostics):
	// an empty block, a bad CRC, a record of another format or an LSN gap.
	End string
}

// LastLSN is the LSN of the last record, or the checkpoint's when there are
// no records after it.
func (r *Replay) LastLSN() uint64 {
	if n := len(r.Records); n > 0 {
		return r.Records[n-1].LSN
	}
	return r.Checkpoint.LSN
}

// Log appends records to the ring and writes checkpoints. It is safe for
// concurrent use. After a failed write it refuses further writes (the write
// may have landed in part): open the log again, which replays it.
type Log struct {
	mu   sync.Mutex
	d    *Disk
	n    uint64 // ring blocks
	bs   int
	ckpt Checkpoint
	area int
	// tail is the ring offset where the next record goes if it fits before
	// the end of the ring; used counts the blocks from the checkpoint's
	// NextPos to tail, wasted ends of the ring included.
	tail, used uint64
	last       Record // LSN, Epoch and GUPSeq of the last record
	err        error
	// Now stamps checkpoints; time.Now unless set before use.
	Now func() time.Time
}

// ReadLog replays the log without opening it for writing.
func (d *Disk) ReadLog(ctx context.Context) (*Replay, error) {
	r, _, _, err := d.replay(ctx)
	return r, err
}

// OpenLog replays the log and returns a Log positioned after its last valid
// record, with what it replayed.
func (d *Disk) OpenLog(ctx context.Context) (*Log, *Replay, error) {
	r, tail, used, err := d.replay(ctx)
	if err != nil {
		return nil, nil, err
	}
	l := &Log{d: d, n: d.sb.Layout.LogBlocks, bs: d.dev.BlockSize(), ckpt: r.Checkpoint, area: r.Area,
		tail: tail, used: used, Now: time.Now}
	l.last = Record{LSN: r.Checkpoint.LSN, Epoch: r.Checkpoint.Epoch, GUPSeq: r.Checkpoint.GUPSeq}
	if n := len(r.Records); n > 0 {
		l.last = r.Records[n-1]
		l.last.Payload = nil
	}
	return l, r, nil
}

func (d *Disk) readCheckpoint(ctx context.Context, area int) (Checkpoint, []byte, error) {
	l := d.sb.Layout
	bs := d.dev.BlockSize()
	h := make([]byte, bs)
	if err := d.dev.ReadBlocks(ctx, l.CheckpointLBA[area], h); err != nil {
		return Checkpoint{}, nil, fmt.Errorf("read checkpoint area %d: %w", area, err)
	}
	var c Checkpoint
	if err := c.UnmarshalBinary(h); err != nil {
		return c, nil, err
	}
	if c.FormatID != d.sb.FormatID {
		return c, nil, fmt.Errorf("checkpoint: %w", ErrForeign)
	}
	maxPayload := uint64(l.CheckpointBlocks-1) * uint64(bs)
	if uint64(c.PayloadLen) > maxPayload || c.NextPos > l.LogBlocks {
		return c, nil, fmt.Errorf("checkpoint: %w: payload or position out of range", ErrCorrupt)
	}
	var p []byte
	if c.PayloadLen > 0 {
		nb := (int(c.PayloadLen) + bs - 1) / bs
		buf := make([]byte, nb*bs)
		if err := d.dev.ReadBlocks(ctx, l.CheckpointLBA[area]+1, buf); err != nil {
			return c, nil, fmt.Errorf("read checkpoint area %d snapshot: %w", area, err)
		}
		p = buf[:c.PayloadLen]
	}
	if crc32c(p) != c.PayloadCRC {
		return c, nil, fmt.Errorf("checkpoint snapshot: %w: CRC32C mismatch", ErrCorrupt)
	}
	if p == nil {
		p = []byte{}
	}
	return c, p, nil
}

// writeCheckpoint writes header and snapshot to area in one write.
func (d *Disk) writeCheckpoint(ctx context.Context, area int, c Checkpoint, snapshot []byte) error {
	l := d.sb.Layout
	bs := d.dev.BlockSize()
	if uint64(len(snapshot)) > uint64(l.CheckpointBlocks-1)*uint64(bs) {
		return fmt.Errorf("checkpoint snapshot of %d bytes: %w (area holds %d)", len(snapshot), ErrTooLarge, (l.CheckpointBlocks-1)*uint32(bs))
	}
	c.PayloadLen = uint32(len(snapshot))
	c.PayloadCRC = crc32c(snapshot)
	nb := 1 + (len(snapshot)+bs-1)/bs
	buf := make([]byte, nb*bs)
	enc, _ := c.MarshalBinary()
	copy(buf, enc)
	copy(buf[bs:], snapshot)
	if err := d.dev.WriteBlocks(ctx, l.CheckpointLBA[area], buf); err != nil {
		return fmt.Errorf("write checkpoint %d (LSN %d) to area %d: %w", c.Seq, c.LSN, area, err)
	}
	return nil
}

// ringReader reads ring blocks through a window of readAhead blocks.
type ringReader struct {
	d          *Disk
	ctx        context.Context
	n          uint64
	bs         int
	start, end uint64 // window [start, end)
	buf        []byte
}

// get returns blocks [pos, pos+k) of the ring (pos+k <= n).
func (r *ringReader) get(pos, k uint64) ([]byte, error) {
	if pos < r.start || pos+k > r.end {
		r.start = pos
		r.end = min(r.n, pos+max(k, readAhead))
		r.buf = make([]byte, (r.end-r.start)*uint64(r.bs))
		if err := r.d.dev.ReadBlocks(r.ctx, r.d.sb.Layout.LogLBA+r.start, r.buf); err != nil {
			r.start, r.end = 0, 0
			return nil, fmt.Errorf("read log blocks %d..%d: %w", pos, r.end-1, err)
		}
	}
	off := (pos - r.start) * uint64(r.bs)
	return r.buf[off : off+k*uint64(r.bs)], nil
}

// recordAt decodes the record with LSN lsn at ring offset pos. A record that
// is not there is reported as a reason string, an I/O failure as an error.
func (d *Disk) recordAt(rr *ringReader, pos, lsn uint64) (Record, uint64, string, error) {
	if pos >= rr.n {
		return Record{}, 0, "end of ring", nil
	}
	h, err := rr.get(pos, 1)
	if err != nil {
		return Record{}, 0, "", err
	}
	if len(h) < RecordHeaderSize || string(h[0:4]) != recordMagic {
		if allZero(h) {
			return Record{}, 0, fmt.Sprintf("empty block at ring offset %d", pos), nil
		}
		return Record{}, 0, fmt.Sprintf("no record at ring offset %d", pos), nil
	}
	plen := uint64(be.Uint32(h[40:]))
	k := (RecordHeaderSize + plen + uint64(rr.bs) - 1) / uint64(rr.bs)
	if k > rr.n-pos {
		return Record{}, 0, fmt.Sprintf("record at ring offset %d runs past the ring", pos), nil
	}
	b, err := rr.get(pos, k)
	if err != nil {
		return Record{}, 0, "", err
	}
	var r Record
	if _, err := r.decode(b, rr.bs); err != nil {
		return Record{}, 0, fmt.Sprintf("ring offset %d: %v", pos, err), nil
	}
	if r.FormatID != d.sb.FormatID {
		return Record{}, 0, fmt.Sprintf("ring offset %d: record of another format", pos), nil
	}
	if r.LSN != lsn {
		return Record{}, 0, fmt.Sprintf("ring offset %d: LSN %d where %d was due", pos, r.LSN, lsn), nil
	}
	return r, k, "", nil
}

// replay reads the newest valid checkpoint and the records after it.
func (d *Disk) replay(ctx context.Context) (*Replay, uint64, uint64, error) {
	r := &Replay{Area: -1}
	var reasons [2]string
	for area := 0; area < 2; area++ {
		c, p, err := d.readCheckpoint(ctx, area)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrForeign) {
				return nil, 0, 0, err
			}
			reasons[area] = err.Error()
			continue
		}
		if r.Area < 0 || c.Seq > r.Checkpoint.Seq {
			r.Checkpoint, r.Snapshot, r.Area = c, p, area
		}
	}
	if r.Area < 0 {
		return nil, 0, 0, fmt.Errorf("%w: area A: %s; area B: %s", ErrNoCheckpoint, reasons[0], reasons[1])
	}
	n := d.sb.Layout.LogBlocks
	rr := &ringReader{d: d, ctx: ctx, n: n, bs: d.dev.BlockSize()}
	pos, used, lsn := r.Checkpoint.NextPos, uint64(0), r.Checkpoint.LSN+1
	for {
		rec, k, why, err := d.recordAt(rr, pos, lsn)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("replay LSN %d: %w", lsn, err)
		}
		var waste uint64
		if why != "" && pos != 0 {
			// The writer starts a record that does not fit before the end
			// of the ring at offset 0.
			var why0 string
			rec, k, why0, err = d.recordAt(rr, 0, lsn)
			if err != nil {
				return nil, 0, 0, fmt.Errorf("replay LSN %d: %w", lsn, err)
			}
			if why0 == "" {
				waste, pos = n-pos, 0
				why = ""
			} else {
				why += "; " + why0
			}
		}
		if why == "" && used+waste+k > n {
			why = fmt.Sprintf("LSN %d would overrun the ring", lsn)
		}
		if why != "" {
			r.End = why
			break
		}
		r.Records = append(r.Records, rec)
		used += waste + k
		pos += k
		if pos == n {
			pos = 0
		}
		lsn++
	}
	return r, pos, used, nil
}

// LastLSN is the LSN of the last record appended or replayed.
func (l *Log) LastLSN() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last.LSN
}

// Free is the number of ring blocks left before the next checkpoint is due.
func (l *Log) Free() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n - l.used
}

// Err is the write error that stopped the log, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// MaxRecordPayload is the largest payload Append takes: a record spans at
// most a quarter of the ring.
func (l *Log) MaxRecordPayload() int {
	return int(l.n/4)*l.bs - RecordHeaderSize
}

// Append writes r as the next record with one WRITE(16) FUA (on a SCSI
// device) and returns its LSN once it is on the medium. r.LSN and
// r.FormatID are set by the log. A record that does not fit before the end
// of the ring starts at offset 0; a ring with no room returns ErrLogFull.
func (l *Log) Append(ctx context.Context, r Record) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return 0, fmt.Errorf("append: log stopped by an earlier write error: %w", l.err)
	}
	r.FormatID = l.d.sb.FormatID
	r.LSN = l.last.LSN + 1
	k := uint64(r.blocks(l.bs))
	if k > l.n/4 {
		return 0, fmt.Errorf("append a %d-byte record: %w (at most %d bytes)", len(r.Payload), ErrTooLarge, l.n/4*uint64(l.bs)-RecordHeaderSize)
	}
	pos, waste := l.tail, uint64(0)
	if pos+k > l.n {
		pos, waste = 0, l.n-pos
	}
	if l.used+waste+k > l.n {
		return 0, ErrLogFull
	}
	buf := r.appendTo(make([]byte, 0, k*uint64(l.bs)), l.bs)
	if err := l.d.dev.WriteBlocks(ctx, l.d.sb.Layout.LogLBA+pos, buf); err != nil {
		l.err = fmt.Errorf("append LSN %d at ring offset %d: %w", r.LSN, pos, err)
		return 0, l.err
	}
	l.tail = pos + k
	if l.tail == l.n {
		l.tail = 0
	}
	l.used += waste + k
	l.last = Record{LSN: r.LSN, Epoch: r.Epoch, GUPSeq: r.GUPSeq}
	return r.LSN, nil
}

// Checkpoint writes snapshot, which must reflect every record up to
// LastLSN, to the checkpoint area not holding the newest checkpoint, with
// one write. Once it is on the medium the ring space before it is free.
// A torn checkpoint leaves the previous one (and the records after it)
// intact.
func (l *Log) Checkpoint(ctx context.Context, snapshot []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return fmt.Errorf("checkpoint: log stopped by an earlier write error: %w", l.err)
	}
	c := Checkpoint{FormatID: l.d.sb.FormatID, Seq: l.ckpt.Seq + 1, LSN: l.last.LSN, Epoch: l.last.Epoch,
		GUPSeq: l.last.GUPSeq, NextPos: l.tail, Time: l.Now().UnixNano()}
	area := 1 - l.area
	if err := l.d.writeCheckpoint(ctx, area, c, snapshot); err != nil {
		if !errors.Is(err, ErrTooLarge) {
			l.err = err
		}
		return err
	}
	c.PayloadLen, c.PayloadCRC = uint32(len(snapshot)), crc32c(snapshot)
	l.ckpt, l.area, l.used = c, area, 0
	return nil
}

// LastCheckpoint is the newest checkpoint written or replayed.
func (l *Log) LastCheckpoint() Checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ckpt
}
