package iscsi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Opcode is the iSCSI PDU opcode (RFC 7143 11.2.1.2), without the I bit.
type Opcode uint8

// Initiator and target opcodes used by this package.
const (
	OpNOPOut       Opcode = 0x00
	OpSCSICommand  Opcode = 0x01
	OpTaskMgmtReq  Opcode = 0x02
	OpLoginReq     Opcode = 0x03
	OpTextReq      Opcode = 0x04
	OpDataOut      Opcode = 0x05
	OpLogoutReq    Opcode = 0x06
	OpSNACKReq     Opcode = 0x10
	OpNOPIn        Opcode = 0x20
	OpSCSIResponse Opcode = 0x21
	OpTaskMgmtResp Opcode = 0x22
	OpLoginResp    Opcode = 0x23
	OpTextResp     Opcode = 0x24
	OpDataIn       Opcode = 0x25
	OpLogoutResp   Opcode = 0x26
	OpR2T          Opcode = 0x31
	OpAsyncMessage Opcode = 0x32
	OpReject       Opcode = 0x3f
)

var opcodeNames = map[Opcode]string{
	OpNOPOut: "NOP-Out", OpSCSICommand: "SCSI Command", OpTaskMgmtReq: "Task Management Request",
	OpLoginReq: "Login Request", OpTextReq: "Text Request", OpDataOut: "SCSI Data-Out",
	OpLogoutReq: "Logout Request", OpSNACKReq: "SNACK Request", OpNOPIn: "NOP-In",
	OpSCSIResponse: "SCSI Response", OpTaskMgmtResp: "Task Management Response",
	OpLoginResp: "Login Response", OpTextResp: "Text Response", OpDataIn: "SCSI Data-In",
	OpLogoutResp: "Logout Response", OpR2T: "R2T", OpAsyncMessage: "Asynchronous Message",
	OpReject: "Reject",
}

func (o Opcode) String() string {
	if n, ok := opcodeNames[o]; ok {
		return n
	}
	return fmt.Sprintf("Opcode(%#02x)", uint8(o))
}

// Codec limits.
const (
	// BHSLen is the length of the Basic Header Segment.
	BHSLen = 48
	// MaxAHSLen is the largest Additional Header Segment TotalAHSLength can
	// describe (255 words).
	MaxAHSLen = 255 * 4
	// MaxDataSegmentHardLimit caps any data segment this package accepts
	// or negotiates, whatever a peer declares (2^24-1 is the field's own
	// limit).
	MaxDataSegmentHardLimit = 1<<24 - 1
	// LoginMaxDataSegment is the data segment limit during login (RFC 7143
	// 6.1: login PDUs carry at most 8192 bytes).
	LoginMaxDataSegment = 8192
)

// ReservedTag is the reserved task tag value 0xffffffff (ITT or TTT).
const ReservedTag = 0xffffffff

// Codec errors.
var (
	// ErrHeaderDigest is a header CRC32C mismatch. At ErrorRecoveryLevel 0
	// the connection cannot be trusted after it.
	ErrHeaderDigest = errors.New("iscsi: header digest mismatch")
	// ErrDataDigest is a data segment CRC32C mismatch; the header is sound.
	ErrDataDigest = errors.New("iscsi: data digest mismatch")
	// ErrPDUTooLarge is a PDU whose data segment exceeds the limit.
	ErrPDUTooLarge = errors.New("iscsi: PDU data segment exceeds the negotiated limit")
	// ErrTruncatedPDU is a PDU that ends before its lengths said.
	ErrTruncatedPDU = errors.New("iscsi: truncated PDU")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C is the iSCSI digest function (RFC 7143 13.1, Castagnoli).
func CRC32C(b ...[]byte) uint32 {
	var c uint32
	for _, p := range b {
		c = crc32.Update(c, castagnoli, p)
	}
	return c
}

// BHS is the 48-byte Basic Header Segment. Its accessors name the fields
// shared by most PDUs; opcode-specific fields are read with U32/U16 at the
// offsets RFC 7143 section 11 gives.
type BHS [BHSLen]byte

// Opcode returns the opcode without the immediate bit.
func (h *BHS) Opcode() Opcode { return Opcode(h[0] & 0x3f) }

// Immediate reports the I bit.
func (h *BHS) Immediate() bool { return h[0]&0x40 != 0 }

// SetOpcode sets the opcode and the I bit.
func (h *BHS) SetOpcode(op Opcode, immediate bool) {
	h[0] = uint8(op) & 0x3f
	if immediate {
		h[0] |= 0x40
	}
}

// Flags returns byte 1 (F bit and opcode-specific flags).
func (h *BHS) Flags() uint8 { return h[1] }

// Final reports the F bit (byte 1, bit 7).
func (h *BHS) Final() bool { return h[1]&0x80 != 0 }

// TotalAHSLength returns the AHS length in bytes.
func (h *BHS) TotalAHSLength() int { return int(h[4]) * 4 }

// DataSegmentLength returns the data segment length without padding.
func (h *BHS) DataSegmentLength() int { return int(h[5])<<16 | int(h[6])<<8 | int(h[7]) }

func (h *BHS) setDataSegmentLength(n int) {
	h[5], h[6], h[7] = byte(n>>16), byte(n>>8), byte(n)
}

// LUN returns bytes 8..15.
func (h *BHS) LUN() uint64 { return binary.BigEndian.Uint64(h[8:16]) }

// SetLUN sets bytes 8..15.
func (h *BHS) SetLUN(v uint64) { binary.BigEndian.PutUint64(h[8:16], v) }

// ITT returns the Initiator Task Tag (bytes 16..19).
func (h *BHS) ITT() uint32 { return h.U32(16) }

// SetITT sets the Initiator Task Tag.
func (h *BHS) SetITT(v uint32) { h.SetU32(16, v) }

// U32 reads the big-endian 32-bit field at off.
func (h *BHS) U32(off int) uint32 { return binary.BigEndian.Uint32(h[off : off+4]) }

// SetU32 writes the big-endian 32-bit field at off.
func (h *BHS) SetU32(off int, v uint32) { binary.BigEndian.PutUint32(h[off:off+4], v) }

// U16 reads the big-endian 16-bit field at off.
func (h *BHS) U16(off int) uint16 { return binary.BigEndian.Uint16(h[off : off+2]) }

// SetU16 writes the big-endian 16-bit field at off.
func (h *BHS) SetU16(off int, v uint16) { binary.BigEndian.PutUint16(h[off:off+2], v) }

// Field offsets shared by several PDUs (RFC 7143 section 11).
const (
	offTTT        = 20 // Target Transfer Tag; also ExpectedDataTransferLength, CID, RTT
	offCmdSN      = 24 // initiator PDUs; StatSN in target PDUs
	offExpStatSN  = 28 // initiator PDUs; ExpCmdSN in target PDUs
	offMaxCmdSN   = 32 // target PDUs; RefCmdSN in TMF request
	offDataSN     = 36 // DataSN, R2TSN, ExpDataSN
	offBufferOff  = 40 // Buffer Offset
	offResidual   = 44 // Residual Count, Desired Data Transfer Length
	offStatSN     = 24
	offExpCmdSN   = 28
	offExpDataLen = 20
)

// PDU is one iSCSI PDU as plain data: header, optional AHS, data segment
// (without padding or digests).
type PDU struct {
	Header BHS
	AHS    []byte
	Data   []byte
}

// Codec encodes and decodes PDUs with the digests and the data segment
// limit of a connection. The zero Codec uses no digests and the
// LoginMaxDataSegment limit.
type Codec struct {
	HeaderDigest bool
	DataDigest   bool
	// MaxDataSegment is the largest data segment Decode and Read accept;
	// zero means LoginMaxDataSegment, values above MaxDataSegmentHardLimit
	// are clamped.
	MaxDataSegment int
}

func (c Codec) limit() int {
	switch {
	case c.MaxDataSegment <= 0:
		return LoginMaxDataSegment
	case c.MaxDataSegment > MaxDataSegmentHardLimit:
		return MaxDataSegmentHardLimit
	}
	return c.MaxDataSegment
}

func pad4(n int) int { return (4 - n%4) % 4 }

// EncodedLen returns the length of p on the wire.
func (c Codec) EncodedLen(p *PDU) int {
	n := BHSLen + len(p.AHS)
	if c.HeaderDigest {
		n += 4
	}
	if len(p.Data) > 0 {
		n += len(p.Data) + pad4(len(p.Data))
		if c.DataDigest {
			n += 4
		}
	}
	return n
}

// Append appends the wire form of p to b. It fills in TotalAHSLength and
// DataSegmentLength from p.AHS and p.Data. AHS must be a multiple of 4 bytes
// and at most MaxAHSLen; Data at most MaxDataSegmentHardLimit.
func (c Codec) Append(b []byte, p *PDU) ([]byte, error) {
	hdr, err := c.header(p)
	if err != nil {
		return b, err
	}
	b = append(b, hdr...)
	if len(p.Data) > 0 {
		b = append(b, p.Data...)
		var z [4]byte
		b = append(b, z[:pad4(len(p.Data))]...)
		if c.DataDigest {
			b = binary.LittleEndian.AppendUint32(b, CRC32C(p.Data, z[:pad4(len(p.Data))]))
		}
	}
	return b, nil
}

// header returns BHS + AHS + header digest of p.
func (c Codec) header(p *PDU) ([]byte, error) {
	if len(p.AHS)%4 != 0 || len(p.AHS) > MaxAHSLen {
		return nil, fmt.Errorf("iscsi: encode %s: AHS length %d is not a multiple of 4 up to %d", p.Header.Opcode(), len(p.AHS), MaxAHSLen)
	}
	if len(p.Data) > MaxDataSegmentHardLimit {
		return nil, fmt.Errorf("iscsi: encode %s: %w", p.Header.Opcode(), ErrPDUTooLarge)
	}
	h := p.Header
	h[4] = byte(len(p.AHS) / 4)
	h.setDataSegmentLength(len(p.Data))
	b := make([]byte, 0, BHSLen+len(p.AHS)+4)
	b = append(b, h[:]...)
	b = append(b, p.AHS...)
	if c.HeaderDigest {
		b = binary.LittleEndian.AppendUint32(b, CRC32C(b))
	}
	return b, nil
}

// Marshal returns the wire form of p.
func (c Codec) Marshal(p *PDU) ([]byte, error) {
	return c.Append(make([]byte, 0, c.EncodedLen(p)), p)
}

// Decode decodes the first PDU in b and returns it with the number of bytes
// it used. The returned PDU's AHS and Data alias b. A data digest mismatch
// returns the decoded PDU, its length and an error matching ErrDataDigest,
// so that a caller can skip just that PDU.
func (c Codec) Decode(b []byte) (PDU, int, error) {
	var p PDU
	if len(b) < BHSLen {
		return p, 0, fmt.Errorf("iscsi: decode header: %w", ErrTruncatedPDU)
	}
	copy(p.Header[:], b)
	ahs, dlen, err := c.lengths(&p.Header)
	if err != nil {
		return p, 0, err
	}
	n := BHSLen + ahs
	if c.HeaderDigest {
		n += 4
	}
	if len(b) < n {
		return p, 0, fmt.Errorf("iscsi: decode %s header: %w", p.Header.Opcode(), ErrTruncatedPDU)
	}
	if c.HeaderDigest {
		if binary.LittleEndian.Uint32(b[BHSLen+ahs:]) != CRC32C(b[:BHSLen+ahs]) {
			return p, 0, fmt.Errorf("iscsi: decode %s: %w", p.Header.Opcode(), ErrHeaderDigest)
		}
	}
	if ahs > 0 {
		p.AHS = b[BHSLen : BHSLen+ahs]
	}
	if dlen == 0 {
		return p, n, nil
	}
	dn := dlen + pad4(dlen)
	if c.DataDigest {
		dn += 4
	}
	if len(b) < n+dn {
		return p, 0, fmt.Errorf("iscsi: decode %s data segment: %w", p.Header.Opcode(), ErrTruncatedPDU)
	}
	seg := b[n : n+dn]
	p.Data = seg[:dlen]
	if c.DataDigest {
		padded := dlen + pad4(dlen)
		if binary.LittleEndian.Uint32(seg[padded:]) != CRC32C(seg[:padded]) {
			return p, n + dn, fmt.Errorf("iscsi: decode %s: %w", p.Header.Opcode(), ErrDataDigest)
		}
	}
	return p, n + dn, nil
}

func (c Codec) lengths(h *BHS) (ahs, dlen int, err error) {
	ahs, dlen = h.TotalAHSLength(), h.DataSegmentLength()
	if dlen > c.limit() {
		return 0, 0, fmt.Errorf("iscsi: decode %s: data segment of %d bytes, limit %d: %w", h.Opcode(), dlen, c.limit(), ErrPDUTooLarge)
	}
	return ahs, dlen, nil
}

// Reader reads PDUs from a stream with a Codec. It reuses one buffer, so a
// PDU's AHS and Data are valid only until the next Read. It never allocates
// more than the codec's limit plus the fixed header space.
type Reader struct {
	r     io.Reader
	Codec Codec
	buf   []byte
}

// NewReader returns a Reader on r.
func NewReader(r io.Reader, c Codec) *Reader { return &Reader{r: r, Codec: c} }

// Read reads the next PDU. A data digest mismatch returns the PDU and an
// error matching ErrDataDigest; the stream stays in sync. Any other error
// leaves the stream unusable.
func (r *Reader) Read() (PDU, error) {
	c := r.Codec
	var p PDU
	if _, err := io.ReadFull(r.r, p.Header[:]); err != nil {
		return p, readErr("header", err)
	}
	ahs, dlen, err := c.lengths(&p.Header)
	if err != nil {
		return p, err
	}
	hn := ahs
	if c.HeaderDigest {
		hn += 4
	}
	dn := 0
	if dlen > 0 {
		dn = dlen + pad4(dlen)
		if c.DataDigest {
			dn += 4
		}
	}
	if cap(r.buf) < hn+dn {
		r.buf = make([]byte, hn+dn)
	}
	buf := r.buf[:hn+dn]
	if _, err := io.ReadFull(r.r, buf[:hn]); err != nil {
		return p, readErr(p.Header.Opcode().String()+" header", err)
	}
	if c.HeaderDigest {
		if binary.LittleEndian.Uint32(buf[ahs:hn]) != CRC32C(p.Header[:], buf[:ahs]) {
			return p, fmt.Errorf("iscsi: read %s: %w", p.Header.Opcode(), ErrHeaderDigest)
		}
	}
	if ahs > 0 {
		p.AHS = buf[:ahs]
	}
	if dlen == 0 {
		return p, nil
	}
	seg := buf[hn:]
	if _, err := io.ReadFull(r.r, seg); err != nil {
		return p, readErr(p.Header.Opcode().String()+" data segment", err)
	}
	p.Data = seg[:dlen]
	if c.DataDigest {
		padded := dlen + pad4(dlen)
		if binary.LittleEndian.Uint32(seg[padded:]) != CRC32C(seg[:padded]) {
			return p, fmt.Errorf("iscsi: read %s: %w", p.Header.Opcode(), ErrDataDigest)
		}
	}
	return p, nil
}

func readErr(what string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("iscsi: read %s: %w: %w", what, ErrTruncatedPDU, err)
	}
	return fmt.Errorf("iscsi: read %s: %w", what, err)
}

// MarshalBinary encodes p without digests.
func (p *PDU) MarshalBinary() ([]byte, error) { return Codec{}.Marshal(p) }

// UnmarshalBinary decodes exactly one PDU without digests from b, with data
// segments up to MaxDataSegmentHardLimit. It copies what it keeps.
func (p *PDU) UnmarshalBinary(b []byte) error {
	q, n, err := Codec{MaxDataSegment: MaxDataSegmentHardLimit}.Decode(b)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("iscsi: unmarshal %s: %d trailing bytes", q.Header.Opcode(), len(b)-n)
	}
	p.Header = q.Header
	p.AHS = append([]byte(nil), q.AHS...)
	p.Data = append([]byte(nil), q.Data...)
	return nil
}

// serial number arithmetic (RFC 1982, 32 bits), as RFC 7143 requires for
// CmdSN, StatSN and friends.
func snLess(a, b uint32) bool { return a != b && int32(a-b) < 0 }
