package iscsi

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi/iscsitest"
)

// benchLatency runs cmd b.N times sequentially and reports ns/op and the
// p50/p99 latencies.
func benchLatency(b *testing.B, s *Session, cmd func() *scsi.Command) {
	ctx := context.Background()
	// The first command of a new nexus gets UNIT ATTENTION (power on reset).
	if _, err := scsi.Run(ctx, s, "warm-up", cmd()); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	c := cmd()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		resp, err := s.Execute(ctx, c)
		if err != nil || resp.Status != scsi.StatusGood {
			b.Fatalf("%+v %v", resp, err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkTgtWrite4KFUA: one 4 KiB WRITE(16) with FUA through the
// initiator to tgt on loopback (immediate data, no R2T).
func BenchmarkTgtWrite4KFUA(b *testing.B) {
	tg := iscsitest.Start(b, iscsitest.Options{})
	s := openTgt(b, tg, node1, nil)
	data := make([]byte, 4096)
	benchLatency(b, s, func() *scsi.Command {
		return &scsi.Command{CDB: scsi.Write16CDB(64, 8, true), Dir: scsi.DirToDevice, Data: data}
	})
	b.SetBytes(4096)
}

// BenchmarkTgtReadKeys: PERSISTENT RESERVE IN (READ KEYS), the quorum
// owner's periodic check.
func BenchmarkTgtReadKeys(b *testing.B) {
	tg := iscsitest.Start(b, iscsitest.Options{})
	s := openTgt(b, tg, node1, nil)
	if err := scsi.Register(context.Background(), s, 0, key1); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 8192)
	benchLatency(b, s, func() *scsi.Command {
		return &scsi.Command{CDB: scsi.PRINCDB(scsi.PRINReadKeys, uint16(len(buf))), Dir: scsi.DirFromDevice, Data: buf}
	})
}

// BenchmarkTgtWrite4KFUAParallel: the same write from 16 goroutines on one
// session (tagged commands in flight together).
func BenchmarkTgtWrite4KFUAParallel(b *testing.B) {
	tg := iscsitest.Start(b, iscsitest.Options{})
	s := openTgt(b, tg, node1, nil)
	ctx := context.Background()
	if _, err := scsi.Run(ctx, s, "warm-up", &scsi.Command{CDB: scsi.TestUnitReadyCDB()}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4096)
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		data := make([]byte, 4096)
		c := &scsi.Command{CDB: scsi.Write16CDB(64, 8, true), Dir: scsi.DirToDevice, Data: data}
		for pb.Next() {
			if _, err := s.Execute(ctx, c); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
