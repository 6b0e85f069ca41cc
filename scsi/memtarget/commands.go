package memtarget

import (
	"encoding/binary"
	"hash/fnv"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

// Operation codes the logical unit implements.
const (
	opTestUnitReady     = 0x00
	opRequestSense      = 0x03
	opInquiry           = 0x12
	opReadCapacity10    = 0x25
	opRead10            = 0x28
	opWrite10           = 0x2a
	opSyncCache10       = 0x35
	opPRIn              = 0x5e
	opPROut             = 0x5f
	opRead16            = 0x88
	opWrite16           = 0x8a
	opSyncCache16       = 0x91
	opServiceActionIn16 = 0x9e
	opReportLUNs        = 0xa0

	saReadCapacity16 = 0x10
)

// senseCode is a sense key with its additional sense code and qualifier.
type senseCode struct {
	key       scsi.SenseKey
	asc, ascq uint8
}

// Sense codes the logical unit reports (SPC-4 Annex D).
var (
	ascInvalidOpcode        = senseCode{scsi.SenseIllegalRequest, 0x20, 0x00}
	ascLBAOutOfRange        = senseCode{scsi.SenseIllegalRequest, 0x21, 0x00}
	ascInvalidFieldInCDB    = senseCode{scsi.SenseIllegalRequest, 0x24, 0x00}
	ascInvalidFieldInParam  = senseCode{scsi.SenseIllegalRequest, 0x26, 0x00}
	ascInvalidRelease       = senseCode{scsi.SenseIllegalRequest, 0x26, 0x04}
	ascParamListLengthError = senseCode{scsi.SenseIllegalRequest, 0x1a, 0x00}
	ascPowerOnReset         = senseCode{scsi.SenseUnitAttention, 0x29, 0x00}
	ascReservationsPreempt  = senseCode{scsi.SenseUnitAttention, 0x2a, 0x03}
	ascReservationsReleased = senseCode{scsi.SenseUnitAttention, 0x2a, 0x04}
	ascRegistrationsPreempt = senseCode{scsi.SenseUnitAttention, 0x2a, 0x05}
)

// fixedSense encodes c as fixed-format current sense data (SPC-4 4.5.3).
func fixedSense(c senseCode) []byte {
	b := make([]byte, 18)
	b[0] = 0x70
	b[2] = byte(c.key)
	b[7] = 10 // additional sense length
	b[12] = c.asc
	b[13] = c.ascq
	return b
}

func checkCondition(cmd *scsi.Command, c senseCode) scsi.Response {
	return scsi.Response{Status: scsi.StatusCheckCondition, Sense: fixedSense(c), Residual: len(cmd.Data)}
}

func conflict(cmd *scsi.Command) scsi.Response {
	return scsi.Response{Status: scsi.StatusReservationConflict, Residual: len(cmd.Data)}
}

func good() scsi.Response { return scsi.Response{Status: scsi.StatusGood} }

// dataIn returns GOOD after copying src, truncated to the allocation length
// alloc and to the buffer, into cmd.Data.
func dataIn(cmd *scsi.Command, src []byte, alloc int) scsi.Response {
	if len(src) > alloc {
		src = src[:alloc]
	}
	n := copy(cmd.Data, src)
	return scsi.Response{Status: scsi.StatusGood, Residual: len(cmd.Data) - n}
}

// access is how a command is checked against a persistent reservation
// (SPC-4 5.12.1, Table 60; SBC-3 4.18, Table 13).
type access uint8

const (
	accessAllowed access = iota // never conflicts (INQUIRY, PR IN, TUR, ...)
	accessRead                  // conflicts under Exclusive Access types
	accessWrite                 // conflicts under every type
	accessPROut                 // checked by the service action itself
)

// classify returns the access class of an operation code, and false if the
// logical unit does not implement it.
func classify(op byte) (access, bool) {
	switch op {
	case opTestUnitReady, opRequestSense, opInquiry, opReadCapacity10,
		opServiceActionIn16, opReportLUNs, opPRIn:
		return accessAllowed, true
	case opRead10, opRead16:
		return accessRead, true
	case opWrite10, opWrite16, opSyncCache10, opSyncCache16:
		return accessWrite, true
	case opPROut:
		return accessPROut, true
	}
	return 0, false
}

// minCDB is the CDB length each operation code needs.
func minCDB(op byte) int {
	switch {
	case op < 0x20:
		return 6
	case op < 0x80:
		return 10
	case op < 0xa0:
		return 16
	}
	return 12
}

// execute runs one command for nx. t.mu is held.
func (t *Target) execute(nx *nexus, cmd *scsi.Command) scsi.Response {
	cdb := cmd.CDB
	op := cdb[0]

	// SAM-5 5.14: a pending unit attention is reported, once, instead of
	// executing the command; INQUIRY and REPORT LUNS neither report nor
	// clear it, REQUEST SENSE returns it as parameter data.
	if len(nx.ua) > 0 && op != opInquiry && op != opReportLUNs && op != opRequestSense {
		ua := nx.ua[0]
		nx.ua = nx.ua[1:]
		return checkCondition(cmd, ua)
	}
	acc, ok := classify(op)
	if !ok {
		return checkCondition(cmd, ascInvalidOpcode)
	}
	if len(cdb) < minCDB(op) {
		return checkCondition(cmd, ascInvalidFieldInCDB)
	}
	if t.conflicts(nx, acc) {
		return conflict(cmd)
	}
	switch op {
	case opTestUnitReady:
		return good()
	case opRequestSense:
		return t.requestSense(nx, cmd)
	case opInquiry:
		return t.inquiry(cmd)
	case opReadCapacity10:
		return t.readCapacity10(cmd)
	case opServiceActionIn16:
		if cdb[1]&0x1f != saReadCapacity16 {
			return checkCondition(cmd, ascInvalidFieldInCDB)
		}
		return t.readCapacity16(cmd)
	case opReportLUNs:
		return t.reportLUNs(cmd)
	case opRead10, opRead16, opWrite10, opWrite16:
		return t.readWrite(cmd)
	case opSyncCache10, opSyncCache16:
		return t.syncCache(cmd)
	case opPRIn:
		return t.prIn(nx, cmd)
	case opPROut:
		return t.prOut(nx, cmd)
	}
	return checkCondition(cmd, ascInvalidOpcode)
}

// requestSense returns the oldest pending unit attention as parameter data
// and clears it, or NO SENSE (SPC-4 6.39).
func (t *Target) requestSense(nx *nexus, cmd *scsi.Command) scsi.Response {
	if cmd.CDB[1]&0x01 != 0 { // DESC: descriptor format not supported
		return checkCondition(cmd, ascInvalidFieldInCDB)
	}
	s := fixedSense(senseCode{})
	if len(nx.ua) > 0 {
		s = fixedSense(nx.ua[0])
		nx.ua = nx.ua[1:]
	}
	return dataIn(cmd, s, int(cmd.CDB[4]))
}

// inquiry answers INQUIRY: standard data and VPD pages 0x00, 0x80 and 0x83
// (SPC-4 6.6, 7.8).
func (t *Target) inquiry(cmd *scsi.Command) scsi.Response {
	cdb := cmd.CDB
	evpd := cdb[1]&0x01 != 0
	page := cdb[2]
	alloc := int(binary.BigEndian.Uint16(cdb[3:5]))
	if cdb[1]&^0x01 != 0 || (!evpd && page != 0) { // CMDDT or page without EVPD
		return checkCondition(cmd, ascInvalidFieldInCDB)
	}
	if !evpd {
		b := make([]byte, 66)
		b[0] = 0x00 // peripheral qualifier 0, direct access block device
		b[2] = 0x06 // VERSION: SPC-4
		b[3] = 0x12 // HISUP, RESPONSE DATA FORMAT 2
		b[4] = byte(len(b) - 5)
		b[7] = 0x02 // CMDQUE
		putASCII(b[8:16], t.cfg.Vendor)
		putASCII(b[16:32], t.cfg.Product)
		putASCII(b[32:36], t.cfg.Revision)
		// Version descriptors: SAM-5, SPC-4, SBC-3.
		binary.BigEndian.PutUint16(b[58:], 0x00a0)
		binary.BigEndian.PutUint16(b[60:], 0x0460)
		binary.BigEndian.PutUint16(b[62:], 0x04c0)
		return dataIn(cmd, b, alloc)
	}
	var body []byte
	switch page {
	case 0x00:
		body = []byte{0x00, 0x80, 0x83}
	case 0x80:
		body = []byte(t.cfg.Serial)
	case 0x83:
		// T10 vendor ID designator (ASCII): vendor + product + serial.
		id := make([]byte, 8, 8+len(t.cfg.Product)+1+len(t.cfg.Serial))
		putASCII(id, t.cfg.Vendor)
		id = append(id, t.cfg.Product...)
		id = append(id, ':')
		id = append(id, t.cfg.Serial...)
		body = append(body, 0x02, 0x01, 0x00, byte(len(id)))
		body = append(body, id...)
		// NAA locally assigned designator (binary), derived from the serial.
		h := fnv.New64a()
		h.Write([]byte(t.cfg.Vendor + "\x00" + t.cfg.Serial))
		naa := h.Sum64()&^(0xf<<60) | 0x3<<60
		body = append(body, 0x01, 0x03, 0x00, 0x08)
		body = binary.BigEndian.AppendUint64(body, naa)
	default:
		return checkCondition(cmd, ascInvalidFieldInCDB)
	}
	b := make([]byte, 4, 4+len(body))
	b[1] = page
	binary.BigEndian.PutUint16(b[2:], uint16(len(body)))
	return dataIn(cmd, append(b, body...), alloc)
}

func putASCII(dst []byte, s string) {
	for i := range dst {
		dst[i] = ' '
	}
	copy(dst, s)
}

func (t *Target) readCapacity10(cmd *scsi.Command) scsi.Response {
	b := make([]byte, 8)
	last := t.cfg.Blocks - 1
	if last > 0xffffffff {
		last = 0xffffffff
	}
	binary.BigEndian.PutUint32(b[0:], uint32(last))
	binary.BigEndian.PutUint32(b[4:], t.cfg.BlockSize)
	return dataIn(cmd, b, len(b))
}

// readCapacity16 answers READ CAPACITY(16) (SBC-3 5.16).
func (t *Target) readCapacity16(cmd *scsi.Command) scsi.Response {
	alloc := int(binary.BigEndian.Uint32(cmd.CDB[10:14]))
	b := make([]byte, 32)
	binary.BigEndian.PutUint64(b[0:], t.cfg.Blocks-1)
	binary.BigEndian.PutUint32(b[8:], t.cfg.BlockSize)
	return dataIn(cmd, b, alloc)
}

// reportLUNs reports the single LUN 0 (SPC-4 6.33).
func (t *Target) reportLUNs(cmd *scsi.Command) scsi.Response {
	alloc := int(binary.BigEndian.Uint32(cmd.CDB[6:10]))
	if alloc < 16 {
		return checkCondition(cmd, ascInvalidFieldInCDB)
	}
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[0:], 8)
	return dataIn(cmd, b, alloc)
}

// lbaRange decodes the LBA and transfer length of a 10- or 16-byte CDB.
func lbaRange(cdb []byte) (lba, n uint64) {
	if len(cdb) >= 16 && cdb[0]&0xe0 == 0x80 {
		return binary.BigEndian.Uint64(cdb[2:10]), uint64(binary.BigEndian.Uint32(cdb[10:14]))
	}
	return uint64(binary.BigEndian.Uint32(cdb[2:6])), uint64(binary.BigEndian.Uint16(cdb[7:9]))
}

func (t *Target) inRange(lba, n uint64) bool {
	return lba <= t.cfg.Blocks && n <= t.cfg.Blocks-lba
}

// readWrite executes READ and WRITE (10/16) (SBC-3 5.15, 5.40). FUA and DPO
// are accepted: the medium is memory, every write is already durable.
func (t *Target) readWrite(cmd *scsi.Command) scsi.Response {
	cdb := cmd.CDB
	if cdb[1]&0xe0 != 0 { // RDPROTECT/WRPROTECT: no protection information
		return checkCondition(cmd, ascInvalidFieldInCDB)
	}
	lba, n := lbaRange(cdb)
	if !t.inRange(lba, n) {
		return checkCondition(cmd, ascLBAOutOfRange)
	}
	bs := uint64(t.cfg.BlockSize)
	write := cdb[0] == opWrite10 || cdb[0] == opWrite16
	if write && uint64(len(cmd.Data)) < n*bs {
		// The initiator sent less data than the CDB announces.
		return checkCondition(cmd, ascInvalidFieldInCDB)
	}
	done := 0
	for i := uint64(0); i < n; i++ {
		off := i * bs
		if write {
			blk := make([]byte, bs)
			copy(blk, cmd.Data[off:off+bs])
			t.data[lba+i] = blk
			done += int(bs)
			continue
		}
		if off >= uint64(len(cmd.Data)) {
			break
		}
		dst := cmd.Data[off:min(off+bs, uint64(len(cmd.Data)))]
		if blk, ok := t.data[lba+i]; ok {
			done += copy(dst, blk)
		} else {
			clear(dst)
			done += len(dst)
		}
	}
	return scsi.Response{Status: scsi.StatusGood, Residual: len(cmd.Data) - done}
}

// syncCache executes SYNCHRONIZE CACHE (10/16) (SBC-3 5.22): nothing to
// flush, but the range is checked.
func (t *Target) syncCache(cmd *scsi.Command) scsi.Response {
	lba, n := lbaRange(cmd.CDB)
	if !t.inRange(lba, n) {
		return checkCondition(cmd, ascLBAOutOfRange)
	}
	return good()
}
