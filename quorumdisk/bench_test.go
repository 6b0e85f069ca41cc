package quorumdisk

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

// BenchmarkLogAppend appends 128-byte records through SCSIBlocks (WRITE(16)
// FUA) to the in-memory target and reports p50/p99 latency as metrics.
func BenchmarkLogAppend(b *testing.B) {
	ctx := context.Background()
	lu := memtarget.New(memtarget.Config{Blocks: 16 << 20 / 512, Compat: memtarget.CompatTgt})
	dev, err := NewSCSIBlocks(ctx, lu.Nexus("bench"))
	if err != nil {
		b.Fatal(err)
	}
	d, err := Format(ctx, dev, FormatOptions{})
	if err != nil {
		b.Fatal(err)
	}
	log, _, err := d.OpenLog(ctx)
	if err != nil {
		b.Fatal(err)
	}
	p := make([]byte, 128)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		_, err := log.Append(ctx, Record{Type: RecordNote, Payload: p})
		if errors.Is(err, ErrLogFull) {
			b.StopTimer()
			if err := log.Checkpoint(ctx, nil); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start = time.Now()
			_, err = log.Append(ctx, Record{Type: RecordNote, Payload: p})
		}
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}
