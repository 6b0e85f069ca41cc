package heartbeat

import (
	"math/rand/v2"
	"testing"
)

// checkTick ticks d once and fails the test if d broke the promise of
// NextTick: a tick before it must produce nothing and must not bring it
// forward (a driver that sleeps until NextTick runs the ticks before it
// at once, without asking again). d's Ready must be empty.
func checkTick(t *testing.T, d *Detector) {
	t.Helper()
	due := d.NextTick()
	if due <= d.Now() {
		t.Fatalf("node %d at tick %d: NextTick %d is not after now", d.cfg.Self, d.Now(), due)
	}
	d.Tick()
	if d.Now() >= due {
		return
	}
	if d.HasReady() {
		t.Fatalf("node %d: NextTick was %d, but tick %d had work: %+v", d.cfg.Self, due, d.Now(), d.Ready())
	}
	if next := d.NextTick(); next < due {
		t.Fatalf("node %d: a quiet tick %d moved NextTick from %d to %d", d.cfg.Self, d.Now(), due, next)
	}
}

// TestNextTick: detectors with different phases, thresholds and member
// sets, on two networks that lose datagrams in bursts and cut a node off
// now and then, keep NextTick's promise on every tick: no send and no
// event comes before the tick it names.
func TestNextTick(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		ids := []NodeID{1, 2, 3}
		ds := map[NodeID]*Detector{}
		for _, id := range ids {
			d, err := New(Config{Cluster: 7, Self: id, Incarnation: 1, Key: testKey, Peers: ids, Networks: 2,
				IntervalTicks: 3 + rng.IntN(8), Threshold: 2 + rng.IntN(4), Phase: rng.IntN(10)})
			if err != nil {
				t.Fatal(err)
			}
			ds[id] = d
		}
		var loss float64
		var cut NodeID
		for range 3000 {
			if rng.IntN(200) == 0 {
				loss = []float64{0, 0.3, 1}[rng.IntN(3)]
			}
			if rng.IntN(300) == 0 {
				cut = NodeID(rng.IntN(4)) // 0: none
			}
			for _, id := range ids {
				d := ds[id]
				if rng.IntN(500) == 0 {
					var m NodeSet
					for _, o := range ids {
						if rng.IntN(2) == 0 {
							m = m.Add(o)
						}
					}
					d.SetMembers(m)
				}
				checkTick(t, d)
				for _, s := range d.Ready().Sends {
					if s.To == cut || id == cut || rng.Float64() < loss {
						continue
					}
					_ = ds[s.To].Receive(s.Network, s.Datagram)
					ds[s.To].Ready() // events of a receive: the driver asks NextTick again after it
				}
			}
		}
	}
}
