package quorumdisk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// errCrash is what crashDisk returns for the write it tears and everything
// after it.
var errCrash = errors.New("crashDisk: crashed")

// crashDisk is a BlockDevice over a byte slice that crashes on its crashAt-th
// write (counting from 1): that write lands in part, at block granularity
// (none, all, a prefix or any subset of its blocks, as a disk that reorders
// the blocks of one command may leave them), returns an error, and every
// later command fails. The medium (mem) survives for the next "boot".
type crashDisk struct {
	mem     []byte
	bs      int
	writes  int
	crashAt int
	rng     *rand.Rand
	crashed bool
	torn    string // how the crashing write landed
}

func (c *crashDisk) BlockSize() int { return c.bs }
func (c *crashDisk) Blocks() uint64 { return uint64(len(c.mem) / c.bs) }

func (c *crashDisk) ReadBlocks(_ context.Context, lba uint64, buf []byte) error {
	if c.crashed {
		return errCrash
	}
	if err := checkRange(c.bs, c.Blocks(), lba, buf); err != nil {
		return err
	}
	copy(buf, c.mem[lba*uint64(c.bs):])
	return nil
}

func (c *crashDisk) WriteBlocks(_ context.Context, lba uint64, data []byte) error {
	if c.crashed {
		return errCrash
	}
	if err := checkRange(c.bs, c.Blocks(), lba, data); err != nil {
		return err
	}
	c.writes++
	if c.writes != c.crashAt {
		copy(c.mem[lba*uint64(c.bs):], data)
		return nil
	}
	c.crashed = true
	n := len(data) / c.bs
	land := make([]bool, n)
	switch mode := c.rng.IntN(4); mode {
	case 0:
		c.torn = "dropped"
	case 1:
		c.torn = "landed, completion lost"
		for i := range land {
			land[i] = true
		}
	case 2:
		k := c.rng.IntN(n + 1)
		c.torn = fmt.Sprintf("prefix of %d/%d blocks", k, n)
		for i := 0; i < k; i++ {
			land[i] = true
		}
	default:
		c.torn = fmt.Sprintf("random subset of %d blocks", n)
		for i := range land {
			land[i] = c.rng.IntN(2) == 0
		}
	}
	for i, ok := range land {
		if ok {
			copy(c.mem[(lba+uint64(i))*uint64(c.bs):], data[i*c.bs:(i+1)*c.bs])
		}
	}
	return errCrash
}

// model is what a client of the log knows: the payloads of acknowledged
// records (index = LSN-1). A snapshot is the LSN and a hash chain over the
// payloads up to it.
type model struct {
	payloads [][]byte
	chain    [][32]byte // chain[i] covers payloads[:i]
}

func newModel() *model { return &model{chain: [][32]byte{{}}} }

func (m *model) add(p []byte) {
	m.payloads = append(m.payloads, p)
	h := sha256.New()
	last := m.chain[len(m.chain)-1]
	h.Write(last[:])
	h.Write(p)
	var next [32]byte
	copy(next[:], h.Sum(nil))
	m.chain = append(m.chain, next)
}

func (m *model) snapshot() []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(len(m.payloads)))
	c := m.chain[len(m.payloads)]
	return append(b, c[:]...)
}

// crashLayout: 512-byte or 4 KiB blocks, 4 KiB checkpoint areas and a ring
// of 64 blocks, so that the workload wraps the ring many times.
func crashDevice(bs int) *crashDisk {
	ck := max(2, 4096/bs)
	blocks := 1 + 2*MaxNodes + 2*ck + 64
	return &crashDisk{mem: make([]byte, blocks*bs), bs: bs}
}

// TestCrashReplay: for 1,000 random crash points during append and
// checkpoint, replay returns every acknowledged record and nothing beyond
// the one whose write was in flight; the log then goes on from there, and a
// second replay agrees.
//
// Reference: docs/quorum-disk.md "Recovery log" (a torn write ends the log;
// it never corrupts it).
func TestCrashReplay(t *testing.T) {
	iterations := 1000
	if testing.Short() {
		iterations = 300
	}
	var inAppend, inCheckpoint, withInflight int
	torn := map[string]int{}
	for it := 0; it < iterations; it++ {
		seed := uint64(it)
		rng := rand.New(rand.NewPCG(seed, 0x51ed))
		bs := 512
		if it%4 == 3 {
			bs = 4096
		}
		dev := crashDevice(bs)
		dev.rng = rng
		ctx := context.Background()
		d, err := Format(ctx, dev, FormatOptions{CheckpointBytes: 4096})
		if err != nil {
			t.Fatalf("seed %d: format: %v", seed, err)
		}
		dev.crashAt = dev.writes + 1 + rng.IntN(150)
		m := newModel()
		log, _, err := d.OpenLog(ctx)
		if err != nil {
			t.Fatalf("seed %d: open: %v", seed, err)
		}
		maxPayload := min(log.MaxRecordPayload(), 3*bs)
		var inflight []byte // payload of the append in flight at the crash
		for !dev.crashed {
			if rng.IntN(8) == 0 {
				if err := log.Checkpoint(ctx, m.snapshot()); err != nil {
					if errors.Is(err, errCrash) {
						inCheckpoint++
						break
					}
					t.Fatalf("seed %d: checkpoint: %v", seed, err)
				}
				continue
			}
			p := make([]byte, rng.IntN(maxPayload+1))
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			lsn, err := log.Append(ctx, Record{Type: RecordNote, Epoch: 1, GUPSeq: uint64(len(m.payloads) + 1), Payload: p})
			switch {
			case errors.Is(err, ErrLogFull):
				if err := log.Checkpoint(ctx, m.snapshot()); err != nil {
					if errors.Is(err, errCrash) {
						inCheckpoint++
						break
					}
					t.Fatalf("seed %d: checkpoint: %v", seed, err)
				}
			case errors.Is(err, errCrash):
				inAppend++
				inflight = p
			case err != nil:
				t.Fatalf("seed %d: append: %v", seed, err)
			default:
				if lsn != uint64(len(m.payloads)+1) {
					t.Fatalf("seed %d: append returned LSN %d, want %d", seed, lsn, len(m.payloads)+1)
				}
				m.add(p)
			}
		}
		torn[tornKind(dev.torn)]++

		// Boot again on the same medium.
		acked := len(m.payloads)
		dev2 := &crashDisk{mem: dev.mem, bs: bs}
		got := verifyReplay(t, seed, dev2, m, inflight)
		if got > acked {
			withInflight++
			m.add(inflight)
		}
		// The log goes on after the torn write, across more checkpoints and
		// wraps of the ring, and a second replay agrees.
		d2, err := Open(ctx, dev2)
		if err != nil {
			t.Fatalf("seed %d: open after crash: %v", seed, err)
		}
		log2, _, err := d2.OpenLog(ctx)
		if err != nil {
			t.Fatalf("seed %d: open log after crash: %v", seed, err)
		}
		for i := 0; i < 40; i++ {
			p := bytes.Repeat([]byte{byte(i)}, rng.IntN(maxPayload+1))
			if _, err := log2.Append(ctx, Record{Type: RecordNote, Payload: p}); errors.Is(err, ErrLogFull) {
				if err := log2.Checkpoint(ctx, m.snapshot()); err != nil {
					t.Fatalf("seed %d: checkpoint after crash: %v", seed, err)
				}
				continue
			} else if err != nil {
				t.Fatalf("seed %d: append after crash: %v", seed, err)
			}
			m.add(p)
		}
		if n := verifyReplay(t, seed, &crashDisk{mem: dev.mem, bs: bs}, m, nil); n != len(m.payloads) {
			t.Fatalf("seed %d: second replay ends at LSN %d, want %d", seed, n, len(m.payloads))
		}
	}
	t.Logf("%d crash points: %d during append (%d of which replay kept), %d during checkpoint; torn writes: %v",
		iterations, inAppend, withInflight, inCheckpoint, torn)
	if inAppend == 0 || inCheckpoint == 0 {
		t.Fatalf("the crash points missed append (%d) or checkpoint (%d)", inAppend, inCheckpoint)
	}
}

func tornKind(s string) string {
	if i := bytes.IndexAny([]byte(s), "0123456789"); i > 0 {
		return s[:i-1]
	}
	return s
}

// verifyReplay replays dev and checks it against m: the snapshot matches the
// model at its LSN, records follow it in LSN order with the acknowledged
// payloads, every acknowledged record is there, and at most one more, the
// in-flight one. It returns the last LSN.
func verifyReplay(t *testing.T, seed uint64, dev BlockDevice, m *model, inflight []byte) int {
	t.Helper()
	ctx := context.Background()
	d, err := Open(ctx, dev)
	if err != nil {
		t.Fatalf("seed %d: open: %v", seed, err)
	}
	r, err := d.ReadLog(ctx)
	if err != nil {
		t.Fatalf("seed %d: replay: %v", seed, err)
	}
	acked := len(m.payloads)
	snap := r.Snapshot
	if len(snap) == 0 { // the format's empty checkpoint
		snap = (&model{chain: [][32]byte{{}}}).snapshot()
	}
	if len(snap) != 40 {
		t.Fatalf("seed %d: snapshot of %d bytes", seed, len(snap))
	}
	lsnC := int(binary.BigEndian.Uint64(snap))
	if uint64(lsnC) != r.Checkpoint.LSN || lsnC > acked {
		t.Fatalf("seed %d: checkpoint LSN %d, snapshot LSN %d, acknowledged %d", seed, r.Checkpoint.LSN, lsnC, acked)
	}
	if !bytes.Equal(snap[8:], m.chain[lsnC][:]) {
		t.Fatalf("seed %d: snapshot at LSN %d does not match the acknowledged records", seed, lsnC)
	}
	last := lsnC
	for i, rec := range r.Records {
		want := uint64(lsnC + 1 + i)
		if rec.LSN != want {
			t.Fatalf("seed %d: record %d has LSN %d, want %d", seed, i, rec.LSN, want)
		}
		switch {
		case int(rec.LSN) <= acked:
			if !bytes.Equal(rec.Payload, m.payloads[rec.LSN-1]) {
				t.Fatalf("seed %d: LSN %d: payload differs from the acknowledged one", seed, rec.LSN)
			}
		case int(rec.LSN) == acked+1 && inflight != nil:
			if !bytes.Equal(rec.Payload, inflight) {
				t.Fatalf("seed %d: LSN %d: payload differs from the in-flight one", seed, rec.LSN)
			}
		default:
			t.Fatalf("seed %d: replay returned LSN %d beyond the acknowledged %d and the in-flight record", seed, rec.LSN, acked)
		}
		last = int(rec.LSN)
	}
	if last < acked {
		t.Fatalf("seed %d: replay ends at LSN %d (%s), but LSN %d was acknowledged", seed, last, r.End, acked)
	}
	return last
}
