package scsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// Allocation lengths: standard INQUIRY data is 36 bytes in SPC-4 and what
// sg_inq asks for; VPD pages start at 252 bytes like sg_inq and grow to the
// PAGE LENGTH the device reports.
const (
	inquiryAlloc = 36
	vpdAlloc     = 252
	vpdAllocMax  = 0xffff
	readCapAlloc = 32
)

// InquiryData is the standard INQUIRY data.
type InquiryData struct {
	PeripheralQualifier uint8
	// PeripheralType is the PERIPHERAL DEVICE TYPE (0 for a disk).
	PeripheralType     uint8
	Removable          bool
	Version            uint8
	ResponseDataFormat uint8
	HiSup              bool
	// TPGS is the target port group support field (ALUA), 0..3.
	TPGS    uint8
	Protect bool
	CmdQue  bool
	// Vendor, Product and Revision have trailing spaces and NULs removed.
	Vendor   string
	Product  string
	Revision string
}

// ParseInquiry parses standard INQUIRY data (at least 36 bytes).
// Reference: SPC-4 6.6.2 Table 142.
func ParseInquiry(b []byte) (InquiryData, error) {
	if len(b) < 36 {
		return InquiryData{}, fmt.Errorf("parse INQUIRY data: %d bytes, need 36: %w", len(b), ErrTruncated)
	}
	return InquiryData{
		PeripheralQualifier: b[0] >> 5,
		PeripheralType:      b[0] & 0x1f,
		Removable:           b[1]&0x80 != 0,
		Version:             b[2],
		ResponseDataFormat:  b[3] & 0x0f,
		HiSup:               b[3]&0x10 != 0,
		TPGS:                b[5] >> 4 & 0x03,
		Protect:             b[5]&0x01 != 0,
		CmdQue:              b[7]&0x02 != 0,
		Vendor:              asciiField(b[8:16]),
		Product:             asciiField(b[16:32]),
		Revision:            asciiField(b[32:36]),
	}, nil
}

func asciiField(b []byte) string {
	return strings.TrimRight(string(b), " \x00")
}

// Inquiry returns the standard INQUIRY data.
func Inquiry(ctx context.Context, dev Device) (InquiryData, error) {
	const op = "INQUIRY"
	buf := make([]byte, inquiryAlloc)
	resp, err := Run(ctx, dev, op, &Command{CDB: InquiryCDB(false, 0, inquiryAlloc), Dir: DirFromDevice, Data: buf})
	if err != nil {
		return InquiryData{}, err
	}
	d, err := ParseInquiry(received(buf, resp))
	if err != nil {
		return InquiryData{}, fmt.Errorf("%s: %w", op, err)
	}
	return d, nil
}

// VPDPage returns VPD page page (header included), re-issuing INQUIRY with a
// larger allocation length when the page is longer than the first one.
// Reference: SPC-4 7.8.1.
func VPDPage(ctx context.Context, dev Device, page uint8) ([]byte, error) {
	op := fmt.Sprintf("INQUIRY (VPD page %#02x)", page)
	alloc := vpdAlloc
	for {
		buf := make([]byte, alloc)
		resp, err := Run(ctx, dev, op, &Command{CDB: InquiryCDB(true, page, uint16(alloc)), Dir: DirFromDevice, Data: buf})
		if err != nil {
			return nil, err
		}
		buf = received(buf, resp)
		body, err := vpdBody(buf, page)
		if err == nil {
			return buf[:4+len(body)], nil
		}
		need := 0
		if len(buf) >= 4 {
			need = 4 + int(binary.BigEndian.Uint16(buf[2:4]))
		}
		if need <= len(buf) || alloc >= vpdAllocMax || len(buf) < alloc {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		alloc = min(need, vpdAllocMax)
	}
}

// vpdBody checks a VPD page header and returns the PAGE LENGTH bytes after it.
func vpdBody(b []byte, page uint8) ([]byte, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("parse VPD page %#02x: %d bytes, need 4 for the header: %w", page, len(b), ErrTruncated)
	}
	if b[1] != page {
		return nil, fmt.Errorf("parse VPD page %#02x: device returned page %#02x", page, b[1])
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n > len(b)-4 {
		return nil, fmt.Errorf("parse VPD page %#02x: page length %d but only %d bytes follow the header: %w", page, n, len(b)-4, ErrTruncated)
	}
	return b[4 : 4+n], nil
}

// ParseUnitSerialNumber parses the Unit Serial Number VPD page; leading and
// trailing spaces and NULs are removed.
// Reference: SPC-4 7.8.15.
func ParseUnitSerialNumber(b []byte) (string, error) {
	body, err := vpdBody(b, VPDUnitSerialNumber)
	if err != nil {
		return "", err
	}
	return strings.Trim(string(body), " \x00"), nil
}

// UnitSerialNumber returns the PRODUCT SERIAL NUMBER (VPD page 0x80).
func UnitSerialNumber(ctx context.Context, dev Device) (string, error) {
	b, err := VPDPage(ctx, dev, VPDUnitSerialNumber)
	if err != nil {
		return "", err
	}
	return ParseUnitSerialNumber(b)
}

// Code sets, associations and designator types of designation descriptors
// (SPC-4 7.8.6.1 Tables 460, 461, 462).
const (
	CodeSetBinary = 1
	CodeSetASCII  = 2
	CodeSetUTF8   = 3

	AssocLogicalUnit = 0
	AssocTargetPort  = 1
	AssocTarget      = 2

	DesignatorVendor     = 0x0
	DesignatorT10        = 0x1
	DesignatorEUI64      = 0x2
	DesignatorNAA        = 0x3
	DesignatorRelTgtPort = 0x4
	DesignatorTgtPortGrp = 0x5
	DesignatorLUGroup    = 0x6
	DesignatorMD5        = 0x7
	DesignatorSCSIName   = 0x8
)

// Designator is one designation descriptor of the Device Identification
// VPD page.
type Designator struct {
	ProtocolID  uint8
	CodeSet     uint8
	PIV         bool
	Association uint8
	Type        uint8
	Value       []byte
}

// String formats the designator the way Linux names devices:
// "naa.<hex>", "eui.<hex>", "t10.<ascii>", the SCSI name string as is, and
// "<type>.<hex>" for other types.
func (d Designator) String() string {
	switch d.Type {
	case DesignatorNAA:
		return "naa." + hex.EncodeToString(d.Value)
	case DesignatorEUI64:
		return "eui." + hex.EncodeToString(d.Value)
	case DesignatorT10:
		if d.CodeSet == CodeSetASCII || d.CodeSet == CodeSetUTF8 {
			return "t10." + strings.TrimRight(string(d.Value), " \x00")
		}
	case DesignatorSCSIName:
		return string(bytes.TrimRight(d.Value, "\x00"))
	}
	return fmt.Sprintf("%d.%s", d.Type, hex.EncodeToString(d.Value))
}

// ParseDeviceIdentification parses the Device Identification VPD page.
// Reference: SPC-4 7.8.6.1 Table 459.
func ParseDeviceIdentification(b []byte) ([]Designator, error) {
	body, err := vpdBody(b, VPDDeviceIdentification)
	if err != nil {
		return nil, err
	}
	var ds []Designator
	for off := 0; off < len(body); {
		d := body[off:]
		if len(d) < 4 {
			return nil, fmt.Errorf("parse VPD page 0x83: descriptor at offset %d has %d bytes, need 4", 4+off, len(d))
		}
		n := int(d[3])
		if n > len(d)-4 {
			return nil, fmt.Errorf("parse VPD page 0x83: descriptor at offset %d: designator length %d exceeds the %d bytes left", 4+off, n, len(d)-4)
		}
		ds = append(ds, Designator{
			ProtocolID:  d[0] >> 4,
			CodeSet:     d[0] & 0x0f,
			PIV:         d[1]&0x80 != 0,
			Association: d[1] >> 4 & 0x03,
			Type:        d[1] & 0x0f,
			Value:       append([]byte(nil), d[4:4+n]...),
		})
		off += 4 + n
	}
	return ds, nil
}

// DeviceIdentification returns the designators of VPD page 0x83.
func DeviceIdentification(ctx context.Context, dev Device) ([]Designator, error) {
	b, err := VPDPage(ctx, dev, VPDDeviceIdentification)
	if err != nil {
		return nil, err
	}
	return ParseDeviceIdentification(b)
}

// TestUnitReady issues TEST UNIT READY; a device that is not ready answers
// with an error that matches ErrNotReady.
func TestUnitReady(ctx context.Context, dev Device) error {
	_, err := Run(ctx, dev, "TEST UNIT READY", &Command{CDB: TestUnitReadyCDB(), Dir: DirNone})
	return err
}

// Capacity is the READ CAPACITY(16) parameter data.
type Capacity struct {
	// LastLBA is the RETURNED LOGICAL BLOCK ADDRESS: the last block.
	LastLBA   uint64
	BlockSize uint32
	// ProtectionEnabled and ProtectionType (P_TYPE) describe protection
	// information.
	ProtectionEnabled bool
	ProtectionType    uint8
	// PhysicalBlockExponent: 2^n logical blocks per physical block.
	PhysicalBlockExponent uint8
	// LBPME: the unit is thin-provisioned; LBPRZ: unmapped blocks read zero.
	LBPME            bool
	LBPRZ            bool
	LowestAlignedLBA uint16
}

// Blocks returns the number of logical blocks (LastLBA+1; 0 for the
// impossible LastLBA 2^64-1).
func (c Capacity) Blocks() uint64 { return c.LastLBA + 1 }

// Bytes returns the capacity in bytes (modulo 2^64).
func (c Capacity) Bytes() uint64 { return c.Blocks() * uint64(c.BlockSize) }

// ParseReadCapacity16 parses READ CAPACITY(16) parameter data (32 bytes;
// the first 12 suffice for the address and block size).
// Reference: SBC-3 5.16.2 Table 65.
func ParseReadCapacity16(b []byte) (Capacity, error) {
	if len(b) < 12 {
		return Capacity{}, fmt.Errorf("parse READ CAPACITY(16) data: %d bytes, need 12: %w", len(b), ErrTruncated)
	}
	c := Capacity{
		LastLBA:   binary.BigEndian.Uint64(b[0:8]),
		BlockSize: binary.BigEndian.Uint32(b[8:12]),
	}
	if len(b) >= 16 {
		c.ProtectionType = b[12] >> 1 & 0x07
		c.ProtectionEnabled = b[12]&0x01 != 0
		c.PhysicalBlockExponent = b[13] & 0x0f
		c.LBPME = b[14]&0x80 != 0
		c.LBPRZ = b[14]&0x40 != 0
		c.LowestAlignedLBA = binary.BigEndian.Uint16(b[14:16]) & 0x3fff
	}
	return c, nil
}

// ReadCapacity16 returns the capacity of the logical unit.
func ReadCapacity16(ctx context.Context, dev Device) (Capacity, error) {
	const op = "READ CAPACITY(16)"
	buf := make([]byte, readCapAlloc)
	resp, err := Run(ctx, dev, op, &Command{CDB: ReadCapacity16CDB(readCapAlloc), Dir: DirFromDevice, Data: buf})
	if err != nil {
		return Capacity{}, err
	}
	c, err := ParseReadCapacity16(received(buf, resp))
	if err != nil {
		return Capacity{}, fmt.Errorf("%s: %w", op, err)
	}
	if c.BlockSize == 0 {
		return Capacity{}, fmt.Errorf("%s: device reports block size 0", op)
	}
	return c, nil
}

// Read16 reads blocks logical blocks at lba into buf, whose length must be
// blocks times the block size. A short transfer is an error.
func Read16(ctx context.Context, dev Device, lba uint64, blocks uint32, buf []byte) error {
	op := fmt.Sprintf("READ(16) of %d blocks at LBA %d", blocks, lba)
	if err := checkTransfer(blocks, len(buf)); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	resp, err := Run(ctx, dev, op, &Command{CDB: Read16CDB(lba, blocks, false), Dir: DirFromDevice, Data: buf})
	if err != nil {
		return err
	}
	if resp.Residual != 0 {
		return fmt.Errorf("%s: short transfer, %d of %d bytes missing", op, resp.Residual, len(buf))
	}
	return nil
}

// Write16 writes blocks logical blocks from data at lba; data's length must
// be blocks times the block size. With fua the device completes the command
// only once the data is on the medium.
func Write16(ctx context.Context, dev Device, lba uint64, blocks uint32, data []byte, fua bool) error {
	op := fmt.Sprintf("WRITE(16) of %d blocks at LBA %d", blocks, lba)
	if err := checkTransfer(blocks, len(data)); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	resp, err := Run(ctx, dev, op, &Command{CDB: Write16CDB(lba, blocks, fua), Dir: DirToDevice, Data: data})
	if err != nil {
		return err
	}
	if resp.Residual != 0 {
		return fmt.Errorf("%s: short transfer, %d of %d bytes not written", op, resp.Residual, len(data))
	}
	return nil
}

func checkTransfer(blocks uint32, n int) error {
	if blocks == 0 && n != 0 || blocks != 0 && (n == 0 || uint64(n)%uint64(blocks) != 0) {
		return fmt.Errorf("buffer of %d bytes does not hold %d whole blocks", n, blocks)
	}
	return nil
}

// SynchronizeCache16 makes the device write its whole volatile cache to the medium.
func SynchronizeCache16(ctx context.Context, dev Device) error {
	_, err := Run(ctx, dev, "SYNCHRONIZE CACHE(16)", &Command{CDB: SynchronizeCache16CDB(0, 0, false), Dir: DirNone})
	return err
}
