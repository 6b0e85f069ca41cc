package quorumdisk

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

// TestSuperblockOffsets pins the byte offsets docs/quorum-disk.md documents.
func TestSuperblockOffsets(t *testing.T) {
	l, err := DefaultLayout(512, 131072, 0)
	if err != nil {
		t.Fatal(err)
	}
	sb := Superblock{Version: Version, ClusterTag: 0x574c4650, FormatID: 0x0102030405060708, FormatTime: 1, Layout: l}
	sb.ClusterID[0] = 0xaa
	b, _ := sb.MarshalBinary()
	for _, c := range []struct {
		off  int
		want []byte
	}{
		{0, []byte("WOLFPACK")}, {8, []byte{0, 1}}, {12, []byte{0, 0, 2, 0}}, {16, []byte{0xaa}},
		{32, []byte{0x57, 0x4c, 0x46, 0x50}}, {36, []byte{0, 0, 0, 64}}, {48, []byte{0, 0, 0, 0, 0, 0, 0, 1}},
		{56, []byte{0, 0, 0, 0, 0, 0, 0, 129}}, {72, []byte{0, 0, 0x40, 0}}, {96, []byte{1, 2, 3, 4, 5, 6, 7, 8}},
	} {
		if !bytes.Equal(b[c.off:c.off+len(c.want)], c.want) {
			t.Errorf("offset %d: % x, want % x", c.off, b[c.off:c.off+len(c.want)], c.want)
		}
	}
	if l.CheckpointLBA != [2]uint64{129, 129 + 16384} || l.LogLBA != 129+32768 || l.LogBlocks != 131072-129-32768 {
		t.Errorf("default layout of 64 MiB in 512-byte blocks: %+v", l)
	}
	var back Superblock
	if err := back.UnmarshalBinary(b); err != nil || back != sb {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, back, sb)
	}
}

func memDisk(t *testing.T, cfg memtarget.Config) (*SCSIBlocks, *memtarget.Target) {
	t.Helper()
	tg := memtarget.New(cfg)
	dev, err := NewSCSIBlocks(context.Background(), tg.Nexus("iqn.2024-01.test:node1"))
	if err != nil {
		t.Fatal(err)
	}
	return dev, tg
}

// TestFormatRefuses: Format refuses a LUN holding a superblock, a partition
// table or a filesystem, names what it found, and formats it when forced.
func TestFormatRefuses(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		off  int
		data string
		want string
	}{
		{"ext4", 1080, "\x53\xef", "ext2/3/4 filesystem"},
		{"xfs", 0, "XFSB", "XFS filesystem"},
		{"gpt", 512, "EFI PART", "GPT partition table"},
		{"mbr", 446, "\x80\x00\x01", "MBR (DOS) partition table"},
		{"btrfs", 0x10040, "_BHRfS_M", "btrfs filesystem"},
		{"swap", 4086, "SWAPSPACE2", "Linux swap"},
		{"lvm", 536, "LVM2 001", "LVM2 physical volume"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dev := NewMemBlocks(512, 4096)
			b := make([]byte, 72<<10)
			copy(b[c.off:], c.data)
			if c.name == "mbr" {
				b[510], b[511] = 0x55, 0xaa
			}
			if err := dev.WriteBlocks(ctx, 0, b); err != nil {
				t.Fatal(err)
			}
			_, err := Format(ctx, dev, FormatOptions{})
			if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("format over %s: %v, want ErrInUse naming %q", c.name, err, c.want)
			}
			if _, err := Format(ctx, dev, FormatOptions{Force: true}); err != nil {
				t.Fatalf("forced format: %v", err)
			}
		})
	}
	dev := NewMemBlocks(4096, 1024)
	if _, err := Format(ctx, dev, FormatOptions{ClusterTag: 0x1234}); err != nil {
		t.Fatalf("format a blank LUN: %v", err)
	}
	_, err := Format(ctx, dev, FormatOptions{})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "Wolfpack quorum disk superblock (cluster id") {
		t.Fatalf("format over a quorum disk: %v", err)
	}
	d, err := Open(ctx, dev)
	if err != nil || d.Superblock().ClusterTag != 0x1234 || d.Superblock().Layout.BlockSize != 4096 {
		t.Fatalf("open: %v %+v", err, d)
	}
}

// TestFormatOnMemtarget formats through SCSI (READ CAPACITY(16), WRITE(16)
// FUA) and reads the log and slots back.
func TestFormatOnMemtarget(t *testing.T) {
	ctx := context.Background()
	dev, _ := memDisk(t, memtarget.Config{BlockSize: 512, Blocks: 16384})
	d, err := Format(ctx, dev, FormatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Superblock().Layout.DeviceBlocks != 16384 {
		t.Fatalf("layout from READ CAPACITY(16): %+v", d.Superblock().Layout)
	}
	log, r, err := d.OpenLog(ctx)
	if err != nil || len(r.Records) != 0 || r.Checkpoint.Seq != 1 {
		t.Fatalf("fresh log: %v %+v", err, r)
	}
	for i := 1; i <= 10; i++ {
		if lsn, err := log.Append(ctx, Record{Type: RecordUpdate, Epoch: 3, GUPSeq: uint64(i), Payload: []byte{byte(i)}}); err != nil || lsn != uint64(i) {
			t.Fatalf("append %d: %d %v", i, lsn, err)
		}
	}
	if err := log.Checkpoint(ctx, []byte("db at 10")); err != nil {
		t.Fatal(err)
	}
	if _, err := log.Append(ctx, Record{Type: RecordUpdate, Payload: []byte("eleven")}); err != nil {
		t.Fatal(err)
	}
	r, err = d.ReadLog(ctx)
	if err != nil || string(r.Snapshot) != "db at 10" || r.Checkpoint.LSN != 10 || r.Checkpoint.GUPSeq != 10 ||
		len(r.Records) != 1 || string(r.Records[0].Payload) != "eleven" || r.Area != 1 {
		t.Fatalf("replay: %v %+v", err, r)
	}

	if err := d.WriteHeartbeat(ctx, Heartbeat{Node: 3, Counter: 7, Incarnation: 9, Epoch: 2}); err != nil {
		t.Fatal(err)
	}
	hs, err := d.ReadHeartbeats(ctx)
	if err != nil || hs[2].Counter != 7 || hs[2].Node != 3 || hs[0].Node != 0 {
		t.Fatalf("heartbeats: %v %+v", err, hs[:4])
	}
	if _, ok, _ := d.ReadPoison(ctx, 3); ok {
		t.Fatal("a fresh mailbox holds a pill")
	}
	if err := d.WritePoison(ctx, PoisonPill{Target: 3, Sender: 1, Epoch: 5, Reason: "pruned by regroup"}); err != nil {
		t.Fatal(err)
	}
	p, ok, err := d.ReadPoison(ctx, 3)
	if err != nil || !ok || p.Reason != "pruned by regroup" || !p.Poisoned(9) {
		t.Fatalf("pill: %v %v %+v", err, ok, p)
	}
	if err := d.ClearPoison(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d.ReadPoison(ctx, 3); ok {
		t.Fatal("cleared mailbox holds a pill")
	}
}

// TestLogRingReuse: a checkpoint frees the ring; appends wrap around it
// indefinitely, and a full ring says ErrLogFull.
func TestLogRingReuse(t *testing.T) {
	ctx := context.Background()
	dev := crashDevice(512)
	d, err := Format(ctx, dev, FormatOptions{CheckpointBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	log, _, err := d.OpenLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	full := 0
	for i := 0; i < 2000; i++ {
		_, err := log.Append(ctx, Record{Type: RecordNote, Payload: make([]byte, 600)})
		if errors.Is(err, ErrLogFull) {
			full++
			if err := log.Checkpoint(ctx, []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := d.ReadLog(ctx)
	if err != nil || r.LastLSN() != log.LastLSN() {
		t.Fatalf("replay ends at %d, log at %d: %v", r.LastLSN(), log.LastLSN(), err)
	}
	if full < 10 {
		t.Fatalf("ring filled only %d times", full)
	}
	if _, err := log.Append(ctx, Record{Payload: make([]byte, 64*512)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge record: %v", err)
	}
}
