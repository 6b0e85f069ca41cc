package heartbeat

import (
	"bytes"
	"errors"
	"testing"
)

func TestPacketRoundTrip(t *testing.T) {
	p := Packet{Cluster: 0xC1C1, Network: 1, From: 7, Incarnation: 42, Seq: 9, Epoch: 3<<8 | 1, Hears: SetOf(1, 2, 64)}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != BodyLen {
		t.Fatalf("body %d bytes, want %d", len(b), BodyLen)
	}
	var q Packet
	if err := q.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if q != p {
		t.Fatalf("round trip: got %+v, want %+v", q, p)
	}
}

// The layout is part of the protocol: pin it byte for byte.
func TestPacketLayout(t *testing.T) {
	p := Packet{Cluster: 0x01020304, Network: 1, From: 2, Incarnation: 3, Seq: 4, Epoch: 5, Hears: SetOf(1)}
	b, _ := p.MarshalBinary()
	want := []byte{
		'W', 'P', 'H', 'B', 1, 1, 0, 0,
		1, 2, 3, 4, 0, 0, 0, 2,
		0, 0, 0, 0, 0, 0, 0, 3,
		0, 0, 0, 0, 0, 0, 0, 4,
		0, 0, 0, 0, 0, 0, 0, 5,
		0, 0, 0, 0, 0, 0, 0, 1,
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("layout:\n got % x\nwant % x", b, want)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	good, _ := (&Packet{Cluster: 1, From: 1}).MarshalBinary()
	mut := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	for name, b := range map[string][]byte{
		"short":        good[:BodyLen-1],
		"long":         append(bytes.Clone(good), 0),
		"magic":        mut(0, 'X'),
		"version":      mut(4, 2),
		"network":      mut(5, MaxNetworks),
		"flags":        mut(7, 1),
		"node zero":    mut(15, 0),
		"node too big": mut(15, MaxNodes+1),
	} {
		var p Packet
		if err := p.UnmarshalBinary(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
}

func TestSealOpen(t *testing.T) {
	s := NewSealer([]byte("cluster key"))
	p := Packet{Cluster: 9, From: 3, Incarnation: 1, Seq: 1}
	d, err := s.Seal(&p)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != DatagramLen {
		t.Fatalf("datagram %d bytes, want %d", len(d), DatagramLen)
	}
	q, err := s.Open(d)
	if err != nil || q != p {
		t.Fatalf("Open: %+v, %v", q, err)
	}
	if _, err := NewSealer([]byte("other key")).Open(d); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("wrong key: %v, want ErrBadMAC", err)
	}
	for i := range d {
		f := bytes.Clone(d)
		f[i] ^= 0x80
		if _, err := s.Open(f); !errors.Is(err, ErrBadMAC) {
			t.Fatalf("bit flip at %d: %v, want ErrBadMAC", i, err)
		}
	}
}

func TestNodeSet(t *testing.T) {
	s := SetOf(5, 1, 64, 0, 65)
	if got := s.String(); got != "{1,5,64}" {
		t.Fatalf("String = %s", got)
	}
	if s.Len() != 3 || s.Min() != 1 || !s.Has(64) || s.Has(2) || s.Remove(1).Min() != 5 {
		t.Fatalf("set ops wrong on %v", s)
	}
	if NodeSet(0).Min() != 0 {
		t.Fatal("Min of empty set")
	}
}
