package heartbeat

import (
	"bytes"
	"testing"
)

// FuzzUnmarshal: any body that decodes re-encodes to the same bytes, and
// nothing panics.
func FuzzUnmarshal(f *testing.F) {
	b, _ := (&Packet{Cluster: 1, Network: 1, From: 2, Incarnation: 3, Seq: 4, Epoch: 5, Hears: 6}).MarshalBinary()
	f.Add(b)
	f.Add([]byte{})
	f.Add(make([]byte, BodyLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		if err := p.UnmarshalBinary(b); err != nil {
			return
		}
		out, err := p.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", p, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip:\n in % x\nout % x", b, out)
		}
	})
}

// FuzzReceive: a detector fed arbitrary datagrams never panics, counts every
// one exactly once, and never accepts one that does not carry a valid MAC.
func FuzzReceive(f *testing.F) {
	key := []byte("fuzz key")
	s := NewSealer(key)
	good, _ := s.Seal(&Packet{Cluster: 1, From: 2, Incarnation: 1, Seq: 1})
	f.Add(good, 0)
	f.Add(good[:10], 1)
	f.Add(make([]byte, DatagramLen), 0)
	f.Fuzz(func(t *testing.T, d []byte, net int) {
		det, err := New(Config{Cluster: 1, Self: 1, Incarnation: 1, Key: key, Peers: []NodeID{2, 3}, Networks: 2})
		if err != nil {
			t.Fatal(err)
		}
		err = det.Receive(net, d)
		c := det.Counters()
		var dropped uint64
		for _, n := range c.Dropped {
			dropped += n
		}
		if c.Accepted+dropped != 1 {
			t.Fatalf("counted %d accepted + %d dropped for one datagram", c.Accepted, dropped)
		}
		if err == nil {
			if _, oerr := s.Open(d); oerr != nil {
				t.Fatalf("accepted a datagram that does not open: %v", oerr)
			}
		}
	})
}
