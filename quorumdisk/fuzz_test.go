package quorumdisk

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// fieldsFrom reads n uint64 values from raw (zero-padded), to build valid
// structures out of fuzz input.
func fieldsFrom(raw []byte, n int) []uint64 {
	b := make([]byte, 8*n)
	copy(b, raw)
	v := make([]uint64, n)
	for i := range v {
		v[i] = binary.BigEndian.Uint64(b[8*i:])
	}
	return v
}

// flipBit flips bit (flip mod 8*covered) of b.
func flipBit(b []byte, covered int, flip uint32) {
	i := int(flip % uint32(8*covered))
	b[i/8] ^= 1 << (i % 8)
}

// FuzzSuperblock: arbitrary bytes never panic the decoder, what decodes
// re-encodes to the same superblock, and a single flipped bit in a valid one
// is rejected.
func FuzzSuperblock(f *testing.F) {
	l, _ := DefaultLayout(512, 131072, 0)
	good, _ := Superblock{Version: Version, ClusterTag: 7, FormatID: 9, Layout: l}.MarshalBinary()
	f.Add(good, uint32(0))
	f.Add(make([]byte, 512), uint32(5))
	f.Fuzz(func(t *testing.T, raw []byte, flip uint32) {
		var s Superblock
		if s.UnmarshalBinary(raw) == nil {
			enc, _ := s.MarshalBinary()
			var s2 Superblock
			if err := s2.UnmarshalBinary(enc); err != nil || s2 != s {
				t.Fatalf("round trip: %v\n%+v\n%+v", err, s, s2)
			}
		}
		v := fieldsFrom(raw, 4)
		l, err := DefaultLayout(512<<(v[0]%4), 1024+v[1]%(1<<30), uint32(v[2]%(4<<20)))
		if err != nil {
			return
		}
		sb := Superblock{Version: Version, ClusterTag: uint32(v[3]), FormatID: v[3] ^ v[1], Layout: l}
		enc, _ := sb.MarshalBinary()
		flipBit(enc, SuperblockSize, flip)
		if err := s.UnmarshalBinary(enc); err == nil {
			t.Fatalf("superblock with bit %d flipped accepted", flip%(8*SuperblockSize))
		}
	})
}

// FuzzHeartbeat: the same for a heartbeat slot.
func FuzzHeartbeat(f *testing.F) {
	good, _ := Heartbeat{FormatID: 1, Node: 2, Counter: 3, Incarnation: 4, Time: 5, Epoch: 6}.MarshalBinary()
	f.Add(good, uint32(100))
	f.Add([]byte("WPHB"), uint32(1))
	f.Fuzz(func(t *testing.T, raw []byte, flip uint32) {
		var h Heartbeat
		if h.UnmarshalBinary(raw) == nil {
			enc, _ := h.MarshalBinary()
			var h2 Heartbeat
			if err := h2.UnmarshalBinary(enc); err != nil || h2 != h {
				t.Fatalf("round trip: %v", err)
			}
		}
		v := fieldsFrom(raw, 6)
		enc, _ := Heartbeat{FormatID: v[0], Node: uint32(v[1]), Counter: v[2], Incarnation: v[3], Time: int64(v[4]), Epoch: v[5]}.MarshalBinary()
		flipBit(enc, HeartbeatSize, flip)
		if err := h.UnmarshalBinary(enc); err == nil {
			t.Fatalf("heartbeat with bit %d flipped accepted", flip%(8*HeartbeatSize))
		}
	})
}

// FuzzPoisonPill: the same for a mailbox.
func FuzzPoisonPill(f *testing.F) {
	good, _ := PoisonPill{FormatID: 1, Target: 2, Sender: 3, Epoch: 4, Reason: "fenced"}.MarshalBinary()
	f.Add(good, uint32(3))
	f.Fuzz(func(t *testing.T, raw []byte, flip uint32) {
		var p PoisonPill
		if p.UnmarshalBinary(raw) == nil {
			enc, err := p.MarshalBinary()
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			var p2 PoisonPill
			if err := p2.UnmarshalBinary(enc); err != nil || p2 != p {
				t.Fatalf("round trip: %v", err)
			}
		}
		v := fieldsFrom(raw, 6)
		reason := string(raw[min(len(raw), 48):min(len(raw), 48+MaxReason)])
		enc, err := PoisonPill{FormatID: v[0], Target: uint32(v[1]), Sender: uint32(v[2]), Incarnation: v[3], Epoch: v[4], Seq: v[5], Reason: reason}.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		flipBit(enc, PoisonSize, flip)
		if err := p.UnmarshalBinary(enc); err == nil {
			t.Fatalf("poison pill with bit %d flipped accepted", flip%(8*PoisonSize))
		}
	})
}

// FuzzCheckpoint: the same for a checkpoint header.
func FuzzCheckpoint(f *testing.F) {
	good, _ := Checkpoint{FormatID: 1, Seq: 2, LSN: 3, NextPos: 4, PayloadLen: 5, PayloadCRC: 6}.MarshalBinary()
	f.Add(good, uint32(77))
	f.Fuzz(func(t *testing.T, raw []byte, flip uint32) {
		var c Checkpoint
		if c.UnmarshalBinary(raw) == nil {
			enc, _ := c.MarshalBinary()
			var c2 Checkpoint
			if err := c2.UnmarshalBinary(enc); err != nil || c2 != c {
				t.Fatalf("round trip: %v", err)
			}
		}
		v := fieldsFrom(raw, 7)
		enc, _ := Checkpoint{FormatID: v[0], Seq: v[1], LSN: v[2], Epoch: v[3], GUPSeq: v[4], NextPos: v[5], PayloadLen: uint32(v[6])}.MarshalBinary()
		flipBit(enc, CheckpointHeaderSize, flip)
		if err := c.UnmarshalBinary(enc); err == nil {
			t.Fatalf("checkpoint with bit %d flipped accepted", flip%(8*CheckpointHeaderSize))
		}
	})
}

// FuzzRecord: the same for a log record (header and payload), padded to
// blocks as the log writes it.
func FuzzRecord(f *testing.F) {
	f.Add(Record{FormatID: 1, LSN: 2, Type: RecordUpdate, Payload: []byte("x")}.appendTo(nil, 512), uint32(9))
	f.Add([]byte("WPLR\x00\x01"), uint32(0))
	f.Fuzz(func(t *testing.T, raw []byte, flip uint32) {
		var r Record
		if _, err := r.decode(raw, 512); err == nil {
			var r2 Record
			if _, err := r2.decode(r.appendTo(nil, 512), 512); err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("round trip: %v", err)
			}
		}
		_ = r.UnmarshalBinary(raw)
		v := fieldsFrom(raw, 4)
		rec := Record{FormatID: v[0], LSN: v[1], Epoch: v[2], GUPSeq: v[3], Type: RecordType(v[0]), Payload: raw}
		enc := rec.appendTo(nil, 512)
		flipBit(enc, RecordHeaderSize+len(raw), flip)
		if _, err := r.decode(enc, 512); err == nil {
			t.Fatalf("record with bit %d flipped accepted", flip%uint32(8*(RecordHeaderSize+len(raw))))
		}
	})
}
