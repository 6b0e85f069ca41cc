package scsi

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
)

// capture is one line of testdata/sg3utils_cdbs.txt (made by capture.sh).
type capture struct {
	name, command string
	cdb, param    []byte
}

func readCaptures(t *testing.T) map[string]capture {
	t.Helper()
	f, err := os.Open("testdata/sg3utils_cdbs.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	caps := map[string]capture{}
	s := bufio.NewScanner(f)
	for line := 1; s.Scan(); line++ {
		text := strings.TrimSpace(s.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Split(text, " | ")
		if len(fields) != 4 {
			t.Fatalf("sg3utils_cdbs.txt:%d: want 4 fields separated by \" | \", got %d", line, len(fields))
		}
		c := capture{name: fields[0], command: fields[1]}
		if c.cdb, err = hex.DecodeString(fields[2]); err != nil {
			t.Fatalf("sg3utils_cdbs.txt:%d: cdb: %v", line, err)
		}
		if fields[3] != "-" {
			if c.param, err = hex.DecodeString(fields[3]); err != nil {
				t.Fatalf("sg3utils_cdbs.txt:%d: parameters: %v", line, err)
			}
		}
		caps[c.name] = c
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return caps
}

// TestCDBsMatchSG3Utils checks every builder against the bytes sg3_utils
// sends for the same operation with the same parameters (allocation
// lengths included).
func TestCDBsMatchSG3Utils(t *testing.T) {
	const rk, sark = 0x1122334455667788, 0x99aabbccddeeff00
	prout := func(sa uint8, p PROUTParams) func() ([]byte, []byte) {
		return func() ([]byte, []byte) {
			data := p.Bytes()
			return PROUTCDB(sa, p.Type, uint32(len(data))), data
		}
	}
	cdbOnly := func(cdb []byte) func() ([]byte, []byte) {
		return func() ([]byte, []byte) { return cdb, nil }
	}
	sasTID, _ := hex.DecodeString("060000005000c50012345678000000000000000000000000")
	build := map[string]func() (cdb, param []byte){
		"prin-read-keys":           cdbOnly(PRINCDB(PRINReadKeys, 8192)),
		"prin-read-keys-maxlen":    cdbOnly(PRINCDB(PRINReadKeys, 520)),
		"prin-read-reservation":    cdbOnly(PRINCDB(PRINReadReservation, 8192)),
		"prin-report-capabilities": cdbOnly(PRINCDB(PRINReportCapabilities, 8192)),
		"prin-read-full-status":    cdbOnly(PRINCDB(PRINReadFullStatus, 8192)),

		"prout-register":               prout(PROUTRegister, PROUTParams{SAKey: rk}),
		"prout-register-replace":       prout(PROUTRegister, PROUTParams{Key: rk, SAKey: sark}),
		"prout-unregister":             prout(PROUTRegister, PROUTParams{Key: rk}),
		"prout-register-aptpl-alltgpt": prout(PROUTRegister, PROUTParams{SAKey: 1, APTPL: true, AllTgPt: true}),
		"prout-register-spec-ipt-sas":  prout(PROUTRegister, PROUTParams{SAKey: 1, SpecIPT: true, TransportIDs: [][]byte{sasTID}}),
		"prout-register-ignore":        prout(PROUTRegisterAndIgnore, PROUTParams{SAKey: 0xabcdef0123456789}),
		"prout-release-type5":          prout(PROUTRelease, PROUTParams{Key: rk, Type: WriteExclusiveRegistrantsOnly}),
		"prout-clear":                  prout(PROUTClear, PROUTParams{Key: rk}),

		"inquiry":             cdbOnly(InquiryCDB(false, 0, 36)),
		"inquiry-vpd80":       cdbOnly(InquiryCDB(true, VPDUnitSerialNumber, 252)),
		"inquiry-vpd83":       cdbOnly(InquiryCDB(true, VPDDeviceIdentification, 252)),
		"test-unit-ready":     cdbOnly(TestUnitReadyCDB()),
		"read-capacity16":     cdbOnly(ReadCapacity16CDB(32)),
		"synchronize-cache16": cdbOnly(SynchronizeCache16CDB(0, 0, false)),
		"write16":             cdbOnly(Write16CDB(0x0102030405060708, 3, false)),
		"write16-fua":         cdbOnly(Write16CDB(0x1234, 8, true)),
		"read16":              cdbOnly(Read16CDB(0x0102030405060708, 3, false)),
		"read16-fua":          cdbOnly(Read16CDB(0x1234, 8, true)),
	}
	for _, typ := range ReservationTypes {
		build[fmt.Sprintf("prout-reserve-type%d", typ)] = prout(PROUTReserve, PROUTParams{Key: rk, Type: typ})
		build[fmt.Sprintf("prout-preempt-type%d", typ)] = prout(PROUTPreempt, PROUTParams{Key: rk, SAKey: sark, Type: typ})
		build[fmt.Sprintf("prout-preempt-abort-type%d", typ)] = prout(PROUTPreemptAndAbort, PROUTParams{Key: rk, SAKey: sark, Type: typ})
	}

	caps := readCaptures(t)
	for name, c := range caps {
		if build[name] == nil {
			t.Errorf("%s: capture without a builder case (%s)", name, c.command)
		}
	}
	for name, b := range build {
		t.Run(name, func(t *testing.T) {
			c, ok := caps[name]
			if !ok {
				t.Fatalf("no capture %q in testdata/sg3utils_cdbs.txt; re-run testdata/capture.sh", name)
			}
			cdb, param := b()
			if !bytes.Equal(cdb, c.cdb) {
				t.Errorf("CDB\n got % x\nwant % x (%s)", cdb, c.cdb, c.command)
			}
			if !bytes.Equal(param, c.param) {
				t.Errorf("parameters\n got % x\nwant % x (%s)", param, c.param, c.command)
			}
		})
	}
}

// TestPublicCallsSendCapturedCDBs checks that the high-level calls send the
// builders' bytes, using the fake device.
func TestPublicCallsSendCapturedCDBs(t *testing.T) {
	caps := readCaptures(t)
	const rk, sark = 0x1122334455667788, 0x99aabbccddeeff00
	for _, tc := range []struct {
		capture string
		call    func(d Device) error
	}{
		{"prout-register", func(d Device) error { return Register(t.Context(), d, 0, rk) }},
		{"prout-register-replace", func(d Device) error { return Register(t.Context(), d, rk, sark) }},
		{"prout-register-ignore", func(d Device) error { return RegisterAndIgnore(t.Context(), d, 0xabcdef0123456789) }},
		{"prout-reserve-type5", func(d Device) error { return Reserve(t.Context(), d, rk, WriteExclusiveRegistrantsOnly) }},
		{"prout-release-type5", func(d Device) error { return Release(t.Context(), d, rk, WriteExclusiveRegistrantsOnly) }},
		{"prout-clear", func(d Device) error { return Clear(t.Context(), d, rk) }},
		{"prout-preempt-type5", func(d Device) error { return Preempt(t.Context(), d, rk, sark, WriteExclusiveRegistrantsOnly) }},
		{"prout-preempt-abort-type7", func(d Device) error {
			return PreemptAndAbort(t.Context(), d, rk, sark, WriteExclusiveAllRegistrants)
		}},
		{"test-unit-ready", func(d Device) error { return TestUnitReady(t.Context(), d) }},
		{"synchronize-cache16", func(d Device) error { return SynchronizeCache16(t.Context(), d) }},
		{"write16-fua", func(d Device) error { return Write16(t.Context(), d, 0x1234, 8, make([]byte, 8*512), true) }},
		{"read16", func(d Device) error { return Read16(t.Context(), d, 0x0102030405060708, 3, make([]byte, 3*512)) }},
	} {
		t.Run(tc.capture, func(t *testing.T) {
			c := caps[tc.capture]
			d := &fakeDevice{answer: func(cmd *Command) fakeReply { return fakeReply{data: make([]byte, len(cmd.Data))} }}
			if err := tc.call(d); err != nil {
				t.Fatal(err)
			}
			if len(d.cmds) != 1 {
				t.Fatalf("sent %d commands, want 1", len(d.cmds))
			}
			got := d.cmds[0]
			if !bytes.Equal(got.CDB, c.cdb) {
				t.Errorf("CDB\n got % x\nwant % x", got.CDB, c.cdb)
			}
			if c.param != nil && !bytes.Equal(got.Data, c.param) {
				t.Errorf("parameters\n got % x\nwant % x", got.Data, c.param)
			}
		})
	}
}
