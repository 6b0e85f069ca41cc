package scsi

import "encoding/binary"

// Operation codes of the commands this package builds.
const (
	OpTestUnitReady        = 0x00
	OpInquiry              = 0x12
	OpPersistentReserveIn  = 0x5e
	OpPersistentReserveOut = 0x5f
	OpRead16               = 0x88
	OpWrite16              = 0x8a
	OpSynchronizeCache16   = 0x91
	OpServiceActionIn16    = 0x9e
	// SAReadCapacity16 is READ CAPACITY(16)'s SERVICE ACTION IN(16) action.
	SAReadCapacity16 = 0x10
)

// VPD page codes.
const (
	VPDSupportedPages       = 0x00
	VPDUnitSerialNumber     = 0x80
	VPDDeviceIdentification = 0x83
)

// TestUnitReadyCDB builds TEST UNIT READY.
// Reference: SPC-4 6.47.
func TestUnitReadyCDB() []byte { return make([]byte, 6) }

// InquiryCDB builds INQUIRY; with evpd it asks for VPD page page.
// Reference: SPC-4 6.6.1.
func InquiryCDB(evpd bool, page uint8, alloc uint16) []byte {
	c := []byte{OpInquiry, 0, 0, 0, 0, 0}
	if evpd {
		c[1] = 0x01
		c[2] = page
	}
	binary.BigEndian.PutUint16(c[3:5], alloc)
	return c
}

// ReadCapacity16CDB builds READ CAPACITY(16).
// Reference: SBC-3 5.16.1.
func ReadCapacity16CDB(alloc uint32) []byte {
	c := make([]byte, 16)
	c[0], c[1] = OpServiceActionIn16, SAReadCapacity16
	binary.BigEndian.PutUint32(c[10:14], alloc)
	return c
}

// Read16CDB builds READ(16) of blocks logical blocks starting at lba.
// Reference: SBC-3 5.9.
func Read16CDB(lba uint64, blocks uint32, fua bool) []byte {
	return rw16(OpRead16, lba, blocks, fua)
}

// Write16CDB builds WRITE(16) of blocks logical blocks starting at lba; fua
// makes the device write them to the medium before it completes the command.
// Reference: SBC-3 5.40.
func Write16CDB(lba uint64, blocks uint32, fua bool) []byte {
	return rw16(OpWrite16, lba, blocks, fua)
}

func rw16(op byte, lba uint64, blocks uint32, fua bool) []byte {
	c := make([]byte, 16)
	c[0] = op
	if fua {
		c[1] = 0x08
	}
	binary.BigEndian.PutUint64(c[2:10], lba)
	binary.BigEndian.PutUint32(c[10:14], blocks)
	return c
}

// SynchronizeCache16CDB builds SYNCHRONIZE CACHE(16); blocks 0 means from
// lba to the end of the medium.
// Reference: SBC-3 5.23.
func SynchronizeCache16CDB(lba uint64, blocks uint32, immed bool) []byte {
	c := make([]byte, 16)
	c[0] = OpSynchronizeCache16
	if immed {
		c[1] = 0x02
	}
	binary.BigEndian.PutUint64(c[2:10], lba)
	binary.BigEndian.PutUint32(c[10:14], blocks)
	return c
}

// PRINCDB builds PERSISTENT RESERVE IN with service action sa.
// Reference: SPC-4 6.15.1.
func PRINCDB(sa uint8, alloc uint16) []byte {
	c := []byte{OpPersistentReserveIn, sa & 0x1f, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(c[7:9], alloc)
	return c
}

// PROUTCDB builds PERSISTENT RESERVE OUT with service action sa, reservation
// type t (ignored by the device for REGISTER, REGISTER AND IGNORE EXISTING
// KEY and CLEAR; pass 0) in LU_SCOPE, and a parameter list of paramLen bytes.
// Reference: SPC-4 6.16.1.
func PROUTCDB(sa uint8, t ReservationType, paramLen uint32) []byte {
	c := []byte{OpPersistentReserveOut, sa & 0x1f, byte(t) & 0x0f, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(c[5:9], paramLen)
	return c
}
