package stream

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzParseHeader: a header that decodes re-encodes to the same bytes, and
// nothing panics.
func FuzzParseHeader(f *testing.F) {
	b, _ := Header{Version: 1, Type: 17, Len: 200}.AppendBinary(nil)
	f.Add(b)
	f.Add([]byte("WPST\x02\x10\x00\x00\x00\x00\x00\x01"))
	f.Add(make([]byte, HeaderLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b, 1<<20)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		out, _ := h.AppendBinary(nil)
		if !bytes.Equal(out, b) || h.Len > 1<<20 {
			t.Fatalf("round trip:\n in % x\nout % x", b, out)
		}
	})
}

// FuzzHello: a hello that decodes re-encodes to the same bytes.
func FuzzHello(f *testing.F) {
	b, _ := (&Hello{MinVersion: 1, MaxVersion: 1, Cluster: 7, Node: 2, Incarnation: 3}).MarshalBinary()
	f.Add(b)
	f.Add(make([]byte, HelloLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Hello
		if err := h.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		out, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", h, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip:\n in % x\nout % x", b, out)
		}
	})
}

// FuzzReadFrame: a byte stream read frame by frame never yields a payload
// over the maximum, never reads past the stream, and ends in EOF (clean or
// cut) or a malformed frame.
func FuzzReadFrame(f *testing.F) {
	h, _ := Header{Version: 1, Type: 16, Len: 3}.AppendBinary(nil)
	f.Add(append(h, 1, 2, 3))
	f.Add(append(h, 1))
	f.Add([]byte("WPST\x01\x10\x00\x00\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		read := 0
		for {
			h, p, err := ReadFrame(r, 64)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if int(h.Len) != len(p) || len(p) > 64 {
				t.Fatalf("header says %d bytes, payload %d", h.Len, len(p))
			}
			read += HeaderLen + len(p)
			if read > len(b) {
				t.Fatalf("read %d bytes of %d", read, len(b))
			}
		}
	})
}
