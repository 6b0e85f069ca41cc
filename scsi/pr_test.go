package scsi

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Reference: SPC-4 6.15.2 READ KEYS, Table 169.
func TestParseKeys(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Keys
		err      string
	}{
		{name: "no keys", in: "00000007 00000000", want: Keys{Generation: 7, Keys: []uint64{}}},
		{name: "two keys", in: "00000102 00000010 1122334455667788 0000000100000002",
			want: Keys{Generation: 0x102, Keys: []uint64{0x1122334455667788, 0x0000000100000002}}},
		{name: "allocation padding ignored", in: "00000001 00000008 0000000000000001 0000000000000000",
			want: Keys{Generation: 1, Keys: []uint64{1}}},
		{name: "short header", in: "000000010000", err: "need 8 for the header"},
		{name: "truncated list", in: "00000001 00000010 0000000000000001", err: "additional length 16 but only 8 bytes"},
		{name: "odd length", in: "00000001 00000004 00000000", err: "not a multiple of 8"},
		{name: "huge length", in: "00000001 ffffffff", err: "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKeys(mustHex(t, tc.in))
			checkParse(t, got, err, tc.want, tc.err)
		})
	}
}

// checkParse compares a parser's result with want, or its error with errSub.
func checkParse[T any](t *testing.T, got T, err error, want T, errSub string) {
	t.Helper()
	if errSub != "" {
		if err == nil || !strings.Contains(err.Error(), errSub) {
			t.Fatalf("err = %v, want one containing %q", err, errSub)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// Reference: SPC-4 6.15.3 READ RESERVATION, Tables 170 and 171.
func TestParseReservation(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Reservation
		err      string
	}{
		{name: "none", in: "00000003 00000000", want: Reservation{Generation: 3}},
		{name: "we-ro held", in: "00000004 00000010 1122334455667788 00000000 00 05 0000",
			want: Reservation{Generation: 4, Held: true, Key: 0x1122334455667788, Type: WriteExclusiveRegistrantsOnly}},
		{name: "ea-ar", in: "00000004 00000010 0000000000000000 00000000 00 08 0000",
			want: Reservation{Generation: 4, Held: true, Type: ExclusiveAccessAllRegistrants}},
		{name: "bad length", in: "00000004 00000008 1122334455667788", err: "want 0 or 16"},
		{name: "truncated", in: "00000004 00000010 1122334455667788", err: "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseReservation(mustHex(t, tc.in))
			checkParse(t, got, err, tc.want, tc.err)
		})
	}
}

// Reference: SPC-4 6.15.4 REPORT CAPABILITIES, Table 172.
func TestParseCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Capabilities
		types    []ReservationType
		err      string
	}{
		// What tgt answers: ATP_C, PTPL_C, TMV, all six types.
		{name: "tgt", in: "0008 05 80 ea01 0000",
			want:  Capabilities{ATPC: true, PTPLC: true, TMV: true, TypeMask: 0xea01},
			types: ReservationTypes},
		{name: "every flag", in: "0008 9d f1 2000 0000",
			want: Capabilities{RLRC: true, CRH: true, SIPC: true, ATPC: true, PTPLC: true, TMV: true,
				AllowCommands: 7, PTPLA: true, TypeMask: 0x2000},
			types: []ReservationType{WriteExclusiveRegistrantsOnly}},
		{name: "mask not valid", in: "0008 00 00 ffff 0000", want: Capabilities{TypeMask: 0xffff}},
		{name: "short length field", in: "0004 00 00", err: "length 4, want 8"},
		{name: "truncated", in: "0008 00 00", err: "truncated"},
		{name: "empty", in: "", err: "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCapabilities(mustHex(t, tc.in))
			checkParse(t, got, err, tc.want, tc.err)
			if err == nil && !reflect.DeepEqual(got.Types(), tc.types) {
				t.Errorf("Types() = %v, want %v", got.Types(), tc.types)
			}
		})
	}
}

// Reference: SPC-4 6.15.5 READ FULL STATUS, Tables 174 and 175; iSCSI
// TransportID SPC-4 7.6.4.6.
func TestParseFullStatus(t *testing.T) {
	tid := "45000010" + "69716e2e313a6e3100000000" // iSCSI name "iqn.1:n1", padded
	for _, tc := range []struct {
		name, in string
		want     FullStatus
		err      string
	}{
		{name: "empty", in: "00000009 00000000", want: FullStatus{Generation: 9}},
		{name: "holder and registrant",
			in: "00000009 00000050" +
				"1122334455667788 00000000 01 05 00000000 0001 00000010" + tid +
				"99aabbccddeeff00 00000000 02 00 00000000 0000 00000010" + tid,
			want: FullStatus{Generation: 9, Descriptors: []FullStatusDescriptor{
				{Key: 0x1122334455667788, Holder: true, Type: WriteExclusiveRegistrantsOnly, RelativeTargetPort: 1,
					TransportID: mustHex(t, tid)},
				{Key: 0x99aabbccddeeff00, AllTgPt: true, TransportID: mustHex(t, tid)},
			}}},
		{name: "short descriptor", in: "00000001 00000010 1122334455667788 0000000000000000",
			err: "descriptor at offset 8 has 16 bytes, need 24"},
		{name: "transport ID past the end", in: "00000001 00000018 1122334455667788 00000000 01 05 00000000 0001 00000004",
			err: "transport ID length 4 exceeds the 0 bytes left"},
		{name: "truncated", in: "00000001 00000100 1122334455667788", err: "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFullStatus(mustHex(t, tc.in))
			checkParse(t, got, err, tc.want, tc.err)
		})
	}
}

func TestPRINMarshalRoundTrip(t *testing.T) {
	k := Keys{Generation: 5, Keys: []uint64{1, 2, 3}}
	b, _ := k.MarshalBinary()
	if got, err := ParseKeys(b); err != nil || !reflect.DeepEqual(got, k) {
		t.Errorf("keys: %+v, %v", got, err)
	}
	r := Reservation{Generation: 5, Held: true, Key: 9, Type: ExclusiveAccess}
	b, _ = r.MarshalBinary()
	if got, err := ParseReservation(b); err != nil || got != r {
		t.Errorf("reservation: %+v, %v", got, err)
	}
	c := Capabilities{CRH: true, TMV: true, AllowCommands: 3, TypeMask: 0xea01}
	b, _ = c.MarshalBinary()
	if got, err := ParseCapabilities(b); err != nil || got != c {
		t.Errorf("capabilities: %+v, %v", got, err)
	}
	fs := FullStatus{Generation: 1, Descriptors: []FullStatusDescriptor{{Key: 1, Holder: true, Type: 5, TransportID: []byte{1, 2, 3, 4}}}}
	b, _ = fs.MarshalBinary()
	if got, err := ParseFullStatus(b); err != nil || !reflect.DeepEqual(got, fs) {
		t.Errorf("full status: %+v, %v", got, err)
	}
}

func TestReservationTypeNames(t *testing.T) {
	for _, tc := range []struct {
		t           ReservationType
		name, short string
	}{
		{WriteExclusive, "Write Exclusive", "we"},
		{ExclusiveAccess, "Exclusive Access", "ea"},
		{WriteExclusiveRegistrantsOnly, "Write Exclusive - Registrants Only", "we-ro"},
		{ExclusiveAccessRegistrantsOnly, "Exclusive Access - Registrants Only", "ea-ro"},
		{WriteExclusiveAllRegistrants, "Write Exclusive - All Registrants", "we-ar"},
		{ExclusiveAccessAllRegistrants, "Exclusive Access - All Registrants", "ea-ar"},
	} {
		if tc.t.String() != tc.name || tc.t.ShortName() != tc.short {
			t.Errorf("%d: %q %q, want %q %q", uint8(tc.t), tc.t.String(), tc.t.ShortName(), tc.name, tc.short)
		}
		for _, s := range []string{tc.short, strings.ToUpper(tc.short), string(rune('0' + tc.t)), "0x" + string(rune('0'+tc.t))} {
			if got, err := ParseReservationType(s); err != nil || got != tc.t {
				t.Errorf("ParseReservationType(%q) = %v, %v; want %v", s, got, err, tc.t)
			}
		}
	}
	for _, s := range []string{"", "2", "0", "9", "256", "wero", "write exclusive"} {
		if _, err := ParseReservationType(s); err == nil || !strings.Contains(err.Error(), "we-ro") {
			t.Errorf("ParseReservationType(%q) = %v, want an error listing the names", s, err)
		}
	}
	if s := ReservationType(2).String(); s != "ReservationType(2)" {
		t.Errorf("String of type 2 = %q", s)
	}
}

// keysTarget answers READ KEYS for n keys, honouring the allocation length
// the way a device does: it truncates the data, not the ADDITIONAL LENGTH.
func keysTarget(n int) *fakeDevice {
	keys := Keys{Generation: 1}
	for i := range n {
		keys.Keys = append(keys.Keys, uint64(i+1))
	}
	data, _ := keys.MarshalBinary()
	return &fakeDevice{answer: func(cmd *Command) fakeReply {
		alloc := int(binary.BigEndian.Uint16(cmd.CDB[7:9]))
		return fakeReply{data: data[:min(alloc, len(data))]}
	}}
}

// Reference: SPC-4 4.2.5.6 (allocation length truncates parameter data).
func TestReadKeysGrowsAllocation(t *testing.T) {
	d := keysTarget(1500) // 12008 bytes > 8192
	k, err := ReadKeys(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Keys) != 1500 || k.Keys[1499] != 1500 {
		t.Errorf("got %d keys", len(k.Keys))
	}
	if len(d.cmds) != 2 || binary.BigEndian.Uint16(d.cmds[1].CDB[7:9]) != 12008 {
		t.Errorf("sent %d commands, want a second one with allocation length 12008", len(d.cmds))
	}

	d = keysTarget(10000) // 80008 bytes: more than the 16-bit allocation length allows
	_, err = ReadKeys(t.Context(), d)
	if !errors.Is(err, ErrTruncated) || len(d.cmds) != 2 {
		t.Errorf("err = %v after %d commands, want ErrTruncated after 2", err, len(d.cmds))
	}
	if !strings.HasPrefix(err.Error(), "PERSISTENT RESERVE IN (READ KEYS): ") {
		t.Errorf("err = %q, want the op first", err)
	}
}

func TestPRINCalls(t *testing.T) {
	tgt := func(data string) *fakeDevice {
		return &fakeDevice{answer: func(cmd *Command) fakeReply { return fakeReply{data: mustHex(t, data)} }}
	}
	r, err := ReadReservation(t.Context(), tgt("00000004 00000010 1122334455667788 00000000 00 05 0000"))
	if err != nil || !r.Held || r.Type != WriteExclusiveRegistrantsOnly {
		t.Errorf("ReadReservation = %+v, %v", r, err)
	}
	c, err := ReportCapabilities(t.Context(), tgt("0008 05 80 ea01 0000"))
	if err != nil || !c.Supports(WriteExclusiveRegistrantsOnly) {
		t.Errorf("ReportCapabilities = %+v, %v", c, err)
	}
	fs, err := ReadFullStatus(t.Context(), tgt("00000001 00000018 0000000000000007 00000000 01 05 00000000 0001 00000000"))
	if err != nil || len(fs.Descriptors) != 1 || fs.Descriptors[0].Key != 7 {
		t.Errorf("ReadFullStatus = %+v, %v", fs, err)
	}
	_, err = ReadReservation(t.Context(), tgt("00000004 00000008 1122334455667788"))
	if err == nil || !strings.HasPrefix(err.Error(), "PERSISTENT RESERVE IN (READ RESERVATION): parse") {
		t.Errorf("bad data: err = %v", err)
	}
}

func TestPROUTConflict(t *testing.T) {
	d := &fakeDevice{script: []fakeReply{{resp: Response{Status: StatusReservationConflict}}}}
	err := PreemptAndAbort(t.Context(), d, 1, 2, WriteExclusiveRegistrantsOnly)
	var se *SenseError
	if !errors.Is(err, ErrReservationConflict) || !errors.As(err, &se) || se.Op != "PERSISTENT RESERVE OUT (PREEMPT AND ABORT)" {
		t.Fatalf("err = %v", err)
	}
	if err := PersistentReserveOut(t.Context(), d, PROUTRegisterAndMove, PROUTParams{}); err == nil {
		t.Error("REGISTER AND MOVE accepted")
	}
}
