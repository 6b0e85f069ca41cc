package scsi

import (
	"encoding/hex"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Reference: SPC-4 4.5.2 descriptor format, 4.5.3 fixed format sense data.
func TestDecodeSense(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Sense
	}{
		{"fixed UA power on", "70 00 06 00000000 0a 00000000 29 00 00 000000",
			Sense{ResponseCode: 0x70, Key: SenseUnitAttention, ASC: 0x29}},
		{"fixed with information and field pointer", "f0 00 05 00001234 0a 00000000 24 00 00 c00002",
			Sense{ResponseCode: 0x70, Key: SenseIllegalRequest, ASC: 0x24, InfoValid: true, Information: 0x1234,
				SKSValid: true, SKS: [3]byte{0x40, 0x00, 0x02}}},
		{"fixed deferred medium error", "71 00 03 00000000 0a 00000000 0c 00 00 000000",
			Sense{ResponseCode: 0x71, Deferred: true, Key: SenseMediumError, ASC: 0x0c}},
		{"fixed, key only", "70 00 02",
			Sense{ResponseCode: 0x70, Key: SenseNotReady}},
		{"fixed, additional length cuts ASCQ", "70 00 06 00000000 05 00000000 2a 03 00 000000",
			Sense{ResponseCode: 0x70, Key: SenseUnitAttention, ASC: 0x2a}},
		{"fixed, buffer shorter than additional length", "70 00 06 00000000 0a 00000000 2a 03",
			Sense{ResponseCode: 0x70, Key: SenseUnitAttention, ASC: 0x2a, ASCQ: 0x03}},
		{"descriptor, no descriptors", "72 06 2a 05 000000 00",
			Sense{ResponseCode: 0x72, Descriptor: true, Key: SenseUnitAttention, ASC: 0x2a, ASCQ: 0x05}},
		{"descriptor header only", "72 02 04 01",
			Sense{ResponseCode: 0x72, Descriptor: true, Key: SenseNotReady, ASC: 0x04, ASCQ: 0x01}},
		{"descriptor with information and progress", "73 02 04 04 000000 14  00 0a 80 00 0102030405060708  02 06 00 00 80 4000 00",
			Sense{ResponseCode: 0x73, Descriptor: true, Deferred: true, Key: SenseNotReady, ASC: 0x04, ASCQ: 0x04,
				InfoValid: true, Information: 0x0102030405060708, SKSValid: true, SKS: [3]byte{0, 0x40, 0}}},
		{"descriptor, truncated descriptor ignored", "72 03 11 00 000000 0c  00 0a 80 00 0102",
			Sense{ResponseCode: 0x72, Descriptor: true, Key: SenseMediumError, ASC: 0x11}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeSense(mustHex(t, tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeSenseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "no sense data"},
		{"70 00", "need at least 3"},
		{"72 06 29", "need at least 4"},
		{"7f 00 06 00", "unsupported response code 0x7f"},
		{"00 00 00 00", "unsupported response code 0x00"},
	} {
		_, err := DecodeSense(mustHex(t, tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeSense(%s) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestSenseMarshalRoundTrip(t *testing.T) {
	for _, s := range []Sense{
		{ResponseCode: 0x70, Key: SenseUnitAttention, ASC: 0x2a, ASCQ: 0x03},
		{ResponseCode: 0x71, Deferred: true, Key: SenseMediumError, ASC: 0x0c, InfoValid: true, Information: 77},
		{ResponseCode: 0x72, Descriptor: true, Key: SenseIllegalRequest, ASC: 0x24, SKSValid: true, SKS: [3]byte{0x40, 0, 2}},
		{ResponseCode: 0x73, Descriptor: true, Deferred: true, Key: SenseNotReady, ASC: 4, ASCQ: 4, InfoValid: true, Information: 1 << 40},
	} {
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeSense(b)
		if err != nil || got != s {
			t.Errorf("round trip of %+v: got %+v, %v", s, got, err)
		}
	}
	if _, err := (Sense{InfoValid: true, Information: 1 << 32}).MarshalBinary(); err == nil {
		t.Error("fixed format accepted a 64-bit information field")
	}
}

func TestASCDescription(t *testing.T) {
	for _, tc := range []struct {
		asc, ascq uint8
		want      string
	}{
		{0x29, 0x00, "power on, reset, or bus device reset occurred"},
		{0x2a, 0x03, "reservations preempted"},
		{0x2a, 0x04, "reservations released"},
		{0x2a, 0x05, "registrations preempted"},
		{0x24, 0x00, "invalid field in cdb"},
		{0x26, 0x00, "invalid field in parameter list"},
		{0x20, 0x00, "invalid command operation code"},
		{0x04, 0x02, "logical unit not ready, initializing command required"},
		{0x04, 0x7e, "logical unit not ready, cause 0x7e"},
		{0x3a, 0x00, "medium not present"},
		{0x21, 0x00, "logical block address out of range"},
		{0x1a, 0x00, "parameter list length error"},
		{0x99, 0x99, ""},
	} {
		if got := ASCDescription(tc.asc, tc.ascq); got != tc.want {
			t.Errorf("ASCDescription(%02x, %02x) = %q, want %q", tc.asc, tc.ascq, got, tc.want)
		}
	}
}
