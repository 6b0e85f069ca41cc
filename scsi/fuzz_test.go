package scsi

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
)

// The fuzz targets check that no parser panics on any input and that what a
// parser accepts survives a round trip through the matching encoder.

func FuzzDecodeSense(f *testing.F) {
	for _, s := range []string{
		"7000060000000000a0000000029000000000", "f00005000012340a00000000240000c00002",
		"7302040400000014000a8000010203040506070802060000804000", "720311000000000c000a80000102", "70", "",
	} {
		f.Add(mustHex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSense(b)
		if err != nil {
			return
		}
		_ = s.String()
		if s.Key > 0xf || s.Descriptor != (s.ResponseCode >= 0x72) || s.Deferred != (s.ResponseCode&1 == 1) {
			t.Fatalf("inconsistent %+v", s)
		}
		if s.Information > 0xffffffff && !s.Descriptor {
			return
		}
		enc, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		s2, err := DecodeSense(enc)
		if err != nil || s2 != s {
			t.Fatalf("round trip: %+v -> % x -> %+v, %v", s, enc, s2, err)
		}
	})
}

// fuzzRoundTrip parses b, and if that works, encodes and parses again
// expecting the same value.
func fuzzRoundTrip[T interface{ MarshalBinary() ([]byte, error) }](t *testing.T, b []byte, parse func([]byte) (T, error)) {
	v, err := parse(b)
	if err != nil {
		return
	}
	enc, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	v2, err := parse(enc)
	if err != nil || !reflect.DeepEqual(v, v2) {
		t.Fatalf("round trip: %+v -> % x -> %+v, %v", v, enc, v2, err)
	}
}

func FuzzParseKeys(f *testing.F) {
	f.Add(mustHex(f, "00000102000000101122334455667788000000010000000200"))
	f.Add(mustHex(f, "0000000100000004"))
	f.Fuzz(func(t *testing.T, b []byte) { fuzzRoundTrip(t, b, ParseKeys) })
}

func FuzzParseReservation(f *testing.F) {
	f.Add(mustHex(f, "00000004000000101122334455667788000000000005000000"))
	f.Add(mustHex(f, "0000000300000000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReservation(b)
		if err != nil {
			return
		}
		if !r.Held && (r.Key != 0 || r.Type != 0) {
			t.Fatalf("no reservation but %+v", r)
		}
		// The encoder writes 16 descriptor bytes; a longer one from the
		// device (not allowed by SPC-4, tolerated here) re-encodes shorter.
		fuzzRoundTrip(t, b, ParseReservation)
	})
}

func FuzzParseCapabilities(f *testing.F) {
	f.Add(mustHex(f, "00080580ea010000"))
	f.Add(mustHex(f, "00089df120000000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCapabilities(b)
		if err != nil {
			return
		}
		for _, typ := range c.Types() {
			if !c.Supports(typ) || !typ.Valid() {
				t.Fatalf("Types() lists %v", typ)
			}
		}
		fuzzRoundTrip(t, b, ParseCapabilities)
	})
}

func FuzzParseFullStatus(f *testing.F) {
	f.Add(mustHex(f, "000000090000002c1122334455667788000000000105000000000001000000044500001099aabbccddeeff000000000002000000000000000000000000"))
	f.Add(mustHex(f, "00000001000000181122334455667788000000000105000000000001000000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := ParseFullStatus(b)
		if err != nil {
			return
		}
		n := 0
		for _, d := range fs.Descriptors {
			n += 24 + len(d.TransportID)
		}
		if n != int(binary.BigEndian.Uint32(b[4:8])) {
			t.Fatalf("descriptors cover %d bytes, additional length is %d", n, binary.BigEndian.Uint32(b[4:8]))
		}
		fuzzRoundTrip(t, b, ParseFullStatus)
	})
}

func FuzzParseInquiry(f *testing.F) {
	f.Add(mustHex(f, "000005123b10000249455420202020205649525455414c2d4449534b2020202030303031"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseInquiry(b)
		if err == nil && (len(d.Vendor) > 8 || len(d.Product) > 16 || len(d.Revision) > 4 || d.PeripheralType > 0x1f) {
			t.Fatalf("out of range: %+v", d)
		}
	})
}

func FuzzParseVPD(f *testing.F) {
	f.Add(mustHex(f, "008000082020626561663131"))
	f.Add(mustHex(f, "00830014010300106000000000000000000e0000000001000102"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if sn, err := ParseUnitSerialNumber(b); err == nil && len(sn) > len(b) {
			t.Fatalf("serial %q longer than the page", sn)
		}
		ds, err := ParseDeviceIdentification(b)
		if err != nil {
			return
		}
		// Re-encode the page and parse it again.
		page := []byte{b[0], 0x83, 0, 0}
		for _, d := range ds {
			_ = d.String()
			a := byte(0)
			if d.PIV {
				a = 0x80
			}
			page = append(page, d.ProtocolID<<4|d.CodeSet, a|d.Association<<4|d.Type, 0, byte(len(d.Value)))
			page = append(page, d.Value...)
		}
		binary.BigEndian.PutUint16(page[2:4], uint16(len(page)-4))
		ds2, err := ParseDeviceIdentification(page)
		if err != nil || !reflect.DeepEqual(ds, ds2) {
			t.Fatalf("round trip: %+v -> %+v, %v", ds, ds2, err)
		}
	})
}

func FuzzParseReadCapacity16(f *testing.F) {
	f.Add(mustHex(f, "00000000001fffff0000020005"+"03c001"+"0000000000000000000000000000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseReadCapacity16(b)
		if err != nil {
			return
		}
		if c.LastLBA != binary.BigEndian.Uint64(b) || c.Blocks() != c.LastLBA+1 || c.LowestAlignedLBA > 0x3fff {
			t.Fatalf("inconsistent %+v", c)
		}
	})
}

func FuzzParseReservationType(f *testing.F) {
	for _, s := range []string{"we-ro", "EA-AR", "5", "0x8", "2", "", "weird"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		typ, err := ParseReservationType(s)
		if err != nil {
			return
		}
		if !typ.Valid() {
			t.Fatalf("%q parsed to invalid %d", s, typ)
		}
		if back, err := ParseReservationType(typ.ShortName()); err != nil || back != typ {
			t.Fatalf("%v: short name %q parses to %v, %v", typ, typ.ShortName(), back, err)
		}
	})
}

// FuzzRun feeds arbitrary status and sense bytes through Run: it must
// return GOOD as success, anything else as a *SenseError, and never panic.
func FuzzRun(f *testing.F) {
	f.Add(uint8(0x02), mustHex(f, "7000060000000000a0000000029000000000"))
	f.Add(uint8(0x18), []byte(nil))
	f.Fuzz(func(t *testing.T, status uint8, sense []byte) {
		d := &fakeDevice{answer: func(*Command) fakeReply {
			return fakeReply{resp: Response{Status: Status(status), Sense: sense}}
		}}
		_, err := Run(t.Context(), d, "TEST UNIT READY", &Command{CDB: TestUnitReadyCDB()})
		if (err == nil) != (status == 0) {
			t.Fatalf("status %#x: err = %v", status, err)
		}
		if d.execute > MaxUnitAttentionRetries+1 {
			t.Fatalf("%d attempts", d.execute)
		}
		if se, ok := err.(*SenseError); ok && !bytes.Equal(se.Sense, sense) && len(sense) > 0 {
			t.Fatalf("sense not kept")
		}
	})
}
