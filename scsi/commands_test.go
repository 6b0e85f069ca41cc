package scsi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// Reference: SPC-4 6.6.2 standard INQUIRY data, Table 142.
func TestParseInquiry(t *testing.T) {
	// What tgt answers for a disk LUN (SPC-3, HiSup, TPGS implicit, CmdQue).
	in := mustHex(t, "00 00 05 12 3b 10 00 02"+
		"494554202020202020"[:16]+ // "IET     "
		"5649525455414c2d4449534b20202020"+ // "VIRTUAL-DISK    "
		"30303031") // "0001"
	want := InquiryData{Version: 5, ResponseDataFormat: 2, HiSup: true, TPGS: 1, CmdQue: true,
		Vendor: "IET", Product: "VIRTUAL-DISK", Revision: "0001"}
	got, err := ParseInquiry(in)
	checkParse(t, got, err, want, "")
	_, err = ParseInquiry(in[:35])
	checkParse(t, InquiryData{}, err, InquiryData{}, "35 bytes, need 36")
}

// Reference: SPC-4 7.8.15 Unit Serial Number VPD page.
func TestParseUnitSerialNumber(t *testing.T) {
	got, err := ParseUnitSerialNumber(mustHex(t, "00 80 0008 2020626561663131"))
	checkParse(t, got, err, "beaf11", "")
	_, err = ParseUnitSerialNumber(mustHex(t, "00 83 0000"))
	checkParse(t, "", err, "", "device returned page 0x83")
	_, err = ParseUnitSerialNumber(mustHex(t, "00 80 0010 2020"))
	checkParse(t, "", err, "", "truncated")
}

// Reference: SPC-4 7.8.6 Device Identification VPD page.
func TestParseDeviceIdentification(t *testing.T) {
	in := mustHex(t, "00 83 0038"+
		"01 03 00 10 60000000000000000e00000000010001"+ // NAA 6, binary, LU
		"02 01 00 0c 4945542020202020 62656566"+ // T10 vendor ID "IET     beef", ASCII
		"01 02 00 08 0011223344556677"+ // EUI-64
		"61 94 00 04 00000001") // relative target port 1, iSCSI, PIV
	want := []Designator{
		{CodeSet: 1, Type: DesignatorNAA, Value: mustHex(t, "60000000000000000e00000000010001")},
		{CodeSet: 2, Type: DesignatorT10, Value: []byte("IET     beef")},
		{CodeSet: 1, Type: DesignatorEUI64, Value: mustHex(t, "0011223344556677")},
		{ProtocolID: 6, CodeSet: 1, PIV: true, Association: AssocTargetPort, Type: DesignatorRelTgtPort, Value: mustHex(t, "00000001")},
	}
	got, err := ParseDeviceIdentification(in)
	checkParse(t, got, err, want, "")
	strs := []string{"naa.60000000000000000e00000000010001", "t10.IET     beef", "eui.0011223344556677", "4.00000001"}
	for i, d := range got {
		if d.String() != strs[i] {
			t.Errorf("designator %d: String() = %q, want %q", i, d.String(), strs[i])
		}
	}
	in[7] = 0xff // first designator length past the page
	_, err = ParseDeviceIdentification(in)
	checkParse[[]Designator](t, nil, err, nil, "designator length 255 exceeds")
}

// Reference: SBC-3 5.16.2 READ CAPACITY(16) parameter data, Table 65.
func TestParseReadCapacity16(t *testing.T) {
	in := mustHex(t, "00000000001fffff 00000200 05 03 c001 0000000000000000000000000000")
	want := Capacity{LastLBA: 0x1fffff, BlockSize: 512, ProtectionEnabled: true, ProtectionType: 2,
		PhysicalBlockExponent: 3, LBPME: true, LBPRZ: true, LowestAlignedLBA: 1}
	got, err := ParseReadCapacity16(in)
	checkParse(t, got, err, want, "")
	if got.Blocks() != 0x200000 || got.Bytes() != 1<<30 {
		t.Errorf("Blocks() = %d, Bytes() = %d", got.Blocks(), got.Bytes())
	}
	got, err = ParseReadCapacity16(in[:12])
	checkParse(t, got, err, Capacity{LastLBA: 0x1fffff, BlockSize: 512}, "")
	_, err = ParseReadCapacity16(in[:11])
	checkParse(t, Capacity{}, err, Capacity{}, "need 12")
}

func TestVPDPageGrowsAllocation(t *testing.T) {
	page := make([]byte, 4+300)
	page[1] = 0x83
	binary.BigEndian.PutUint16(page[2:4], 300)
	for off := 4; off < len(page); off += 30 { // ten 26-byte vendor designators
		page[off], page[off+3] = 0x02, 26
	}
	d := &fakeDevice{answer: func(cmd *Command) fakeReply {
		alloc := int(binary.BigEndian.Uint16(cmd.CDB[3:5]))
		return fakeReply{data: page[:min(alloc, len(page))]}
	}}
	ds, err := DeviceIdentification(t.Context(), d)
	if err != nil || len(ds) != 10 {
		t.Fatalf("got %d designators, %v", len(ds), err)
	}
	if len(d.cmds) != 2 || !bytes.Equal(d.cmds[1].CDB, InquiryCDB(true, 0x83, 304)) {
		t.Errorf("commands %v, want a second INQUIRY with allocation length 304", d.cmds)
	}
}

func TestCommands(t *testing.T) {
	inq := mustHex(t, "00 00 05 12 1f 00 00 02 49455420202020205649525455414c2d4449534b2020202030303031")
	d := &fakeDevice{script: []fakeReply{{data: inq}}}
	id, err := Inquiry(t.Context(), d)
	if err != nil || id.Product != "VIRTUAL-DISK" {
		t.Errorf("Inquiry = %+v, %v", id, err)
	}
	d = &fakeDevice{script: []fakeReply{{data: mustHex(t, "00 80 0004 62656566")}}}
	if sn, err := UnitSerialNumber(t.Context(), d); err != nil || sn != "beef" {
		t.Errorf("UnitSerialNumber = %q, %v", sn, err)
	}
	d = &fakeDevice{script: []fakeReply{{data: mustHex(t, "00000000001fffff 00000200")}}}
	if c, err := ReadCapacity16(t.Context(), d); err != nil || c.BlockSize != 512 {
		t.Errorf("ReadCapacity16 = %+v, %v", c, err)
	}
	d = &fakeDevice{script: []fakeReply{{data: mustHex(t, "00000000001fffff 00000000")}}}
	if _, err := ReadCapacity16(t.Context(), d); err == nil {
		t.Error("ReadCapacity16 accepted block size 0")
	}
	d = &fakeDevice{script: []fakeReply{{data: make([]byte, 512)}}}
	if err := Read16(t.Context(), d, 0, 2, make([]byte, 1024)); err == nil || !strings.Contains(err.Error(), "short transfer") {
		t.Errorf("Read16 with a short transfer: %v", err)
	}
	if err := Write16(t.Context(), d, 0, 2, make([]byte, 1001), false); err == nil || len(d.cmds) != 1 {
		t.Errorf("Write16 with a partial block: %v", err)
	}
	d = &fakeDevice{script: []fakeReply{checkCondition(SenseNotReady, 0x3a, 0x00)}}
	if err := TestUnitReady(t.Context(), d); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "medium not present") {
		t.Errorf("TestUnitReady = %v", err)
	}
	d = &fakeDevice{}
	if err := Write16(t.Context(), d, 7, 1, make([]byte, 512), true); err != nil {
		t.Fatal(err)
	}
	if c := d.cmds[0]; c.Dir != DirToDevice || len(c.Data) != 512 || !bytes.Equal(c.CDB, Write16CDB(7, 1, true)) {
		t.Errorf("Write16 sent %+v", c)
	}
}
