package regroup

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/heartbeat"
)

func sampleMessages() []Message {
	return []Message{
		{Type: MsgJoinRequest, From: 3, To: 1, Incarnation: 77, Nonce: 0x1234},
		{Type: MsgChallenge, From: 1, To: 3, Nonce: 1, Nonce2: 2, Proof: bytes.Repeat([]byte{0xab}, 32)},
		{Type: MsgJoinRefused, From: 1, To: 3, Reason: "cluster secret differs", Fatal: true},
		{Type: MsgJoinState, From: 1, To: 3, Epoch: MakeEpoch(4, 1), Members: heartbeat.SetOf(1, 2), Snapshot: []byte("db")},
		{Type: MsgRegroup, From: 2, To: 64, Round: 9, Stage: StagePruning, Class: ClassContested,
			Hears: heartbeat.SetOf(1, 2, 64), Evict: heartbeat.SetOf(5), Members: heartbeat.SetOf(1, 2)},
		{Type: MsgAbandon, From: 1, To: 2, Round: 3, Reason: "lost arbitration"},
		{Type: MsgAnnounceAck, From: 2, To: 1, Joiner: 3},
		{Type: MsgJoinCommit, From: 1, To: 2, Joiner: 3, Leader: 1, Epoch: MakeEpoch(5, 1), Members: heartbeat.SetOf(1, 2, 3)},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal %v: %v", m, err)
		}
		var got Message
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("unmarshal %v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, m)
		}
	}
}

func TestMessageRejects(t *testing.T) {
	good, _ := sampleMessages()[1].MarshalBinary()
	cases := map[string]func(b []byte) []byte{
		"short":           func(b []byte) []byte { return b[:MessageFixedLen-1] },
		"magic":           func(b []byte) []byte { b[0] = 'X'; return b },
		"version":         func(b []byte) []byte { b[4] = 2; return b },
		"type 0":          func(b []byte) []byte { b[5] = 0; return b },
		"type high":       func(b []byte) []byte { b[5] = byte(MsgAnnounceAck) + 1; return b },
		"stage":           func(b []byte) []byte { b[6] = 6; return b },
		"class":           func(b []byte) []byte { b[7] = 5; return b },
		"flags":           func(b []byte) []byte { b[8] = 2; return b },
		"from 0":          func(b []byte) []byte { b[12], b[13], b[14], b[15] = 0, 0, 0, 0; return b },
		"to 65":           func(b []byte) []byte { b[19] = 65; return b },
		"trailing byte":   func(b []byte) []byte { return append(b, 0) },
		"truncated proof": func(b []byte) []byte { return b[:len(b)-1] },
		"proof too long":  func(b []byte) []byte { b[92], b[93] = 0, MaxProof+1; return b },
	}
	for name, mut := range cases {
		var m Message
		err := m.UnmarshalBinary(mut(bytes.Clone(good)))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := (Message{Type: MsgExit, From: 1, To: 2, Reason: strings.Repeat("x", MaxReason+1)}).MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Errorf("marshal of an over-long reason: %v", err)
	}
}

func TestSealOpen(t *testing.T) {
	s := NewSealer([]byte("0123456789abcdef0123456789abcdef"))
	h := Header{Cluster: 0x574c4650, Incarnation: 5, Seq: 9}
	m := sampleMessages()[4]
	d, err := s.Seal(h, m)
	if err != nil {
		t.Fatal(err)
	}
	if !IsFrame(d) {
		t.Fatal("IsFrame false for a sealed frame")
	}
	gh, gm, err := s.Open(d)
	if err != nil || gh != h || !reflect.DeepEqual(gm, m) {
		t.Fatalf("Open = %+v %v %v", gh, gm, err)
	}
	// Every single bit flip is caught by the MAC.
	for i := range d {
		c := bytes.Clone(d)
		c[i] ^= 0x10
		if _, _, err := s.Open(c); err == nil {
			t.Fatalf("bit flip at %d accepted", i)
		}
	}
	other := NewSealer([]byte("another key, another cluster...."))
	if _, _, err := other.Open(d); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("other key: %v, want ErrBadMAC", err)
	}
	if _, _, err := s.Open(d[:40]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short frame: %v, want ErrMalformed", err)
	}
}

// FuzzMessageUnmarshal: any message that decodes re-encodes to the same
// bytes, and nothing panics.
func FuzzMessageUnmarshal(f *testing.F) {
	for _, m := range sampleMessages() {
		b, _ := m.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(make([]byte, MessageFixedLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		out, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %v does not encode: %v", m, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip:\n in % x\nout % x", b, out)
		}
	})
}

// FuzzOpen: Open never panics and never accepts a datagram that is not
// sealed under the key.
func FuzzOpen(f *testing.F) {
	key := []byte("fuzz key fuzz key fuzz key fuzz!")
	s := NewSealer(key)
	for i, m := range sampleMessages() {
		d, _ := s.Seal(Header{Cluster: 1, Incarnation: 2, Seq: uint64(i)}, m)
		f.Add(d)
	}
	f.Add([]byte("WPRG"))
	f.Fuzz(func(t *testing.T, d []byte) {
		h, m, err := s.Open(d)
		if err != nil {
			return
		}
		again, err := s.Seal(h, m)
		if err != nil || !bytes.Equal(again, d) {
			t.Fatalf("accepted a datagram that does not re-seal to itself: %v", err)
		}
	})
}
