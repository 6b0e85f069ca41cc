package stream

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// BenchmarkMeshRoundTrip: a 200-byte frame from node 1 to node 2 and back
// on loopback over a settled connection; ns/op is the round trip.
func BenchmarkMeshRoundTrip(b *testing.B) {
	var echo atomic.Pointer[Mesh]
	back := make(chan struct{}, 1)
	ns := startCluster(b, 2, func(c *Config) {
		h := c.Handler
		c.Handler = func(from nodes.ID, typ uint8, p []byte) {
			switch typ {
			case 20:
				echo.Load().Send(from, 21, p)
			case 21:
				back <- struct{}{}
			default:
				h(from, typ, p)
			}
		}
	})
	echo.Store(ns[1].Mesh)
	connect(b, ns)
	p := make([]byte, 200)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ns[0].Send(2, 20, p)
		select {
		case <-back:
		case <-time.After(5 * time.Second):
			b.Fatal("no reply")
		}
	}
}
