package stream

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestParseHeaderRefuses: every malformed header is refused with an error
// naming its problem.
func TestParseHeaderRefuses(t *testing.T) {
	good, _ := Header{Version: 1, Type: 17, Len: 100}.AppendBinary(nil)
	mod := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	for _, tc := range []struct {
		b    []byte
		want string
	}{
		{good[:11], "header of 11 bytes"},
		{mod(func(b []byte) { b[0] = 'X' }), "magic"},
		{mod(func(b []byte) { b[4] = 2 }), "version 2"},
		{mod(func(b []byte) { b[4] = 0 }), "version 0"},
		{mod(func(b []byte) { b[7] = 1 }), "reserved"},
		{mod(func(b []byte) { b[8] = 1 }), "over the maximum"},
	} {
		_, err := ParseHeader(tc.b, 1000)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseHeader(% x) = %v, want ErrMalformed naming %q", tc.b, err, tc.want)
		}
	}
	if h, err := ParseHeader(good, 100); err != nil || h != (Header{Version: 1, Type: 17, Len: 100}) {
		t.Errorf("good header: %+v, %v", h, err)
	}
}

// TestReadFrameCut: a frame cut in its payload is ErrUnexpectedEOF; an
// empty stream is io.EOF.
func TestReadFrameCut(t *testing.T) {
	h, _ := Header{Version: 1, Type: 17, Len: 10}.AppendBinary(nil)
	if _, _, err := ReadFrame(bytes.NewReader(append(h, 1, 2)), 100); err != io.ErrUnexpectedEOF {
		t.Errorf("cut frame: %v", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader(nil), 100); err != io.EOF {
		t.Errorf("empty stream: %v", err)
	}
}

// TestHello: round trip, and what a hello may not hold.
func TestHello(t *testing.T) {
	h := Hello{MinVersion: 1, MaxVersion: 3, Cluster: 0xabcd, Node: 64, Incarnation: 1 << 60}
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var g Hello
	if err := g.UnmarshalBinary(b); err != nil || g != h {
		t.Fatalf("round trip: %+v, %v", g, err)
	}
	for _, bad := range []Hello{
		{MinVersion: 0, MaxVersion: 1, Cluster: 1, Node: 1},
		{MinVersion: 2, MaxVersion: 1, Cluster: 1, Node: 1},
		{MinVersion: 1, MaxVersion: 1, Cluster: 0, Node: 1},
		{MinVersion: 1, MaxVersion: 1, Cluster: 1, Node: 65},
	} {
		if _, err := bad.MarshalBinary(); err == nil {
			t.Errorf("marshalled %+v", bad)
		}
	}
	b[3] = 1
	if err := g.UnmarshalBinary(b); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("reserved byte set: %v", err)
	}
	if err := g.UnmarshalBinary(b[:19]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short hello: %v", err)
	}
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		a0, a1, b0, b1, v uint8
		ok                bool
	}{
		{1, 1, 1, 1, 1, true},
		{1, 3, 2, 5, 3, true},
		{1, 1, 2, 3, 0, false},
		{2, 4, 1, 1, 0, false},
	} {
		v, ok := negotiate(tc.a0, tc.a1, tc.b0, tc.b1)
		if ok != tc.ok || ok && v != tc.v {
			t.Errorf("negotiate(%d..%d, %d..%d) = %d, %v", tc.a0, tc.a1, tc.b0, tc.b1, v, ok)
		}
	}
}
