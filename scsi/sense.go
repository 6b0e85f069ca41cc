package scsi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Sense response codes (SPC-4 4.5.1).
const (
	SenseFixedCurrent       = 0x70
	SenseFixedDeferred      = 0x71
	SenseDescriptorCurrent  = 0x72
	SenseDescriptorDeferred = 0x73
)

// Sense is decoded sense data.
// Reference: SPC-4 4.5 Sense data.
type Sense struct {
	// ResponseCode is 0x70..0x73.
	ResponseCode uint8
	// Descriptor reports descriptor format (0x72/0x73) rather than fixed.
	Descriptor bool
	// Deferred reports an error of an earlier command (0x71/0x73).
	Deferred bool
	Key      SenseKey
	ASC      uint8
	ASCQ     uint8
	// InfoValid reports whether Information holds the INFORMATION field
	// (fixed format: VALID bit; descriptor format: information descriptor).
	InfoValid   bool
	Information uint64
	// SKSValid reports whether SKS holds the SENSE KEY SPECIFIC bytes (the
	// field pointer for ILLEGAL REQUEST, progress for NOT READY), SKSV masked.
	SKSValid bool
	SKS      [3]byte
}

// String formats the sense like "UNIT ATTENTION 29/00 (power on, reset, or bus device reset occurred)".
func (s Sense) String() string {
	str := fmt.Sprintf("%s %02x/%02x", s.Key, s.ASC, s.ASCQ)
	if d := ASCDescription(s.ASC, s.ASCQ); d != "" {
		str += " (" + d + ")"
	}
	if s.Deferred {
		str = "deferred " + str
	}
	return str
}

// DecodeSense decodes fixed (0x70, 0x71) and descriptor (0x72, 0x73) format
// sense data. It is lenient the way the Linux midlayer is: sense data shorter
// than its ADDITIONAL SENSE LENGTH promises still yields the fields it holds.
// It returns an error when b is too short to hold a sense key or has an
// unknown response code.
// Reference: SPC-4 4.5.2 (descriptor format), 4.5.3 (fixed format).
func DecodeSense(b []byte) (Sense, error) {
	if len(b) == 0 {
		return Sense{}, errors.New("decode sense: no sense data")
	}
	s := Sense{ResponseCode: b[0] & 0x7f}
	switch s.ResponseCode {
	case SenseFixedCurrent, SenseFixedDeferred:
		s.Deferred = s.ResponseCode == SenseFixedDeferred
		if len(b) < 3 {
			return Sense{}, fmt.Errorf("decode sense: fixed format sense is %d bytes, need at least 3 for the sense key", len(b))
		}
		s.Key = SenseKey(b[2] & 0x0f)
		if len(b) >= 7 && b[0]&0x80 != 0 {
			s.InfoValid = true
			s.Information = uint64(binary.BigEndian.Uint32(b[3:7]))
		}
		if len(b) >= 8 {
			if n := 8 + int(b[7]); n < len(b) {
				b = b[:n]
			}
		}
		if len(b) > 12 {
			s.ASC = b[12]
		}
		if len(b) > 13 {
			s.ASCQ = b[13]
		}
		if len(b) > 17 && b[15]&0x80 != 0 {
			s.SKSValid = true
			s.SKS = [3]byte{b[15] & 0x7f, b[16], b[17]}
		}
	case SenseDescriptorCurrent, SenseDescriptorDeferred:
		s.Descriptor = true
		s.Deferred = s.ResponseCode == SenseDescriptorDeferred
		if len(b) < 4 {
			return Sense{}, fmt.Errorf("decode sense: descriptor format sense is %d bytes, need at least 4", len(b))
		}
		s.Key = SenseKey(b[1] & 0x0f)
		s.ASC, s.ASCQ = b[2], b[3]
		if len(b) < 8 {
			break
		}
		end := min(len(b), 8+int(b[7]))
		// Walk the sense data descriptors; a truncated one ends the walk.
		for off := 8; off+2 <= end; {
			typ, n := b[off], 2+int(b[off+1])
			if off+n > end {
				break
			}
			d := b[off : off+n]
			switch {
			case typ == 0x00 && n >= 12: // Information (SPC-4 4.5.2.2)
				if d[2]&0x80 != 0 {
					s.InfoValid = true
					s.Information = binary.BigEndian.Uint64(d[4:12])
				}
			case typ == 0x02 && n >= 7: // Sense key specific (SPC-4 4.5.2.4)
				if d[4]&0x80 != 0 {
					s.SKSValid = true
					s.SKS = [3]byte{d[4] & 0x7f, d[5], d[6]}
				}
			}
			off += n
		}
	default:
		return Sense{}, fmt.Errorf("decode sense: unsupported response code %#02x", s.ResponseCode)
	}
	return s, nil
}

// ASCDescription returns the SPC-4 description of an ADDITIONAL SENSE CODE
// and QUALIFIER pair, or "" for codes it does not know.
// Reference: SPC-4 Annex D.2 (ASC and ASCQ assignments).
func ASCDescription(asc, ascq uint8) string {
	if d, ok := ascTable[uint16(asc)<<8|uint16(ascq)]; ok {
		return d
	}
	switch asc {
	case 0x04:
		return fmt.Sprintf("logical unit not ready, cause %#02x", ascq)
	case 0x40:
		return fmt.Sprintf("diagnostic failure on component %#02x", ascq)
	}
	return ""
}

var ascTable = map[uint16]string{
	0x0000: "no additional sense information",
	0x0006: "i/o process terminated",
	0x0016: "operation in progress",
	0x0017: "cleaning requested",
	0x0400: "logical unit not ready, cause not reportable",
	0x0401: "logical unit is in process of becoming ready",
	0x0402: "logical unit not ready, initializing command required",
	0x0403: "logical unit not ready, manual intervention required",
	0x0404: "logical unit not ready, format in progress",
	0x0405: "logical unit not ready, rebuild in progress",
	0x0407: "logical unit not ready, operation in progress",
	0x0409: "logical unit not ready, self-test in progress",
	0x040a: "logical unit not accessible, asymmetric access state transition",
	0x040b: "logical unit not accessible, target port in standby state",
	0x040c: "logical unit not accessible, target port in unavailable state",
	0x0411: "logical unit not ready, notify (enable spinup) required",
	0x0412: "logical unit not ready, offline",
	0x0500: "logical unit does not respond to selection",
	0x0800: "logical unit communication failure",
	0x0801: "logical unit communication time-out",
	0x0c00: "write error",
	0x0c02: "write error - auto reallocation failed",
	0x1000: "id crc or ecc error",
	0x1100: "unrecovered read error",
	0x1400: "recorded entity not found",
	0x1a00: "parameter list length error",
	0x1d00: "miscompare during verify operation",
	0x2000: "invalid command operation code",
	0x2100: "logical block address out of range",
	0x2101: "invalid element address",
	0x2400: "invalid field in cdb",
	0x2500: "logical unit not supported",
	0x2600: "invalid field in parameter list",
	0x2601: "parameter not supported",
	0x2602: "parameter value invalid",
	0x2604: "invalid release of persistent reservation",
	0x2700: "write protected",
	0x2707: "space allocation failed write protect",
	0x2800: "not ready to ready change, medium may have changed",
	0x2900: "power on, reset, or bus device reset occurred",
	0x2901: "power on occurred",
	0x2902: "scsi bus reset occurred",
	0x2903: "bus device reset function occurred",
	0x2904: "device internal reset",
	0x2905: "transceiver mode changed to single-ended",
	0x2906: "transceiver mode changed to lvd",
	0x2907: "i_t nexus loss occurred",
	0x2a00: "parameters changed",
	0x2a01: "mode parameters changed",
	0x2a02: "log parameters changed",
	0x2a03: "reservations preempted",
	0x2a04: "reservations released",
	0x2a05: "registrations preempted",
	0x2a06: "asymmetric access state changed",
	0x2a07: "implicit asymmetric access state transition failed",
	0x2a09: "capacity data has changed",
	0x2a10: "timestamp changed",
	0x2a14: "sa creation capabilities data has changed",
	0x2c00: "command sequence error",
	0x2c09: "previous reservation conflict status",
	0x2f00: "commands cleared by another initiator",
	0x2f01: "commands cleared by power loss notification",
	0x2f02: "commands cleared by device server",
	0x3100: "medium format corrupted",
	0x3a00: "medium not present",
	0x3a01: "medium not present - tray closed",
	0x3a02: "medium not present - tray open",
	0x3e00: "logical unit has not self-configured yet",
	0x3e01: "logical unit failure",
	0x3e02: "timeout on logical unit",
	0x3f00: "target operating conditions have changed",
	0x3f01: "microcode has been changed",
	0x3f03: "inquiry data has changed",
	0x3f0e: "reported luns data has changed",
	0x3f0f: "echo buffer overwritten",
	0x4400: "internal target failure",
	0x4700: "scsi parity error",
	0x4800: "initiator detected error message received",
	0x4900: "invalid message error",
	0x4b00: "data phase error",
	0x4c00: "logical unit failed self-configuration",
	0x5300: "media load or eject failed",
	0x5302: "medium removal prevented",
	0x5500: "system resource failure",
	0x5503: "insufficient resources",
	0x5504: "insufficient registration resources",
	0x5d00: "failure prediction threshold exceeded",
	0x5e00: "low power condition on",
	0x6700: "configuration failure",
	0x6702: "add logical unit failed",
	0x6800: "logical unit not configured",
}

// MarshalBinary encodes the sense in fixed format (18 bytes) or, when
// s.Descriptor is set, descriptor format with an information descriptor
// (when InfoValid) and a sense key specific descriptor (when SKSValid), for
// targets and tests. Information beyond 32 bits needs descriptor format.
func (s Sense) MarshalBinary() ([]byte, error) {
	if !s.Descriptor {
		if s.Information > math.MaxUint32 {
			return nil, fmt.Errorf("marshal sense: information %#x does not fit fixed format", s.Information)
		}
		b := make([]byte, 18)
		b[0] = SenseFixedCurrent
		if s.Deferred {
			b[0] = SenseFixedDeferred
		}
		if s.InfoValid {
			b[0] |= 0x80
			binary.BigEndian.PutUint32(b[3:7], uint32(s.Information))
		}
		b[2] = byte(s.Key) & 0x0f
		b[7] = 10
		b[12], b[13] = s.ASC, s.ASCQ
		if s.SKSValid {
			b[15], b[16], b[17] = 0x80|s.SKS[0]&0x7f, s.SKS[1], s.SKS[2]
		}
		return b, nil
	}
	b := make([]byte, 8, 8+12+8)
	b[0] = SenseDescriptorCurrent
	if s.Deferred {
		b[0] = SenseDescriptorDeferred
	}
	b[1], b[2], b[3] = byte(s.Key)&0x0f, s.ASC, s.ASCQ
	if s.InfoValid {
		b = append(b, 0x00, 0x0a, 0x80, 0)
		b = binary.BigEndian.AppendUint64(b, s.Information)
	}
	if s.SKSValid {
		b = append(b, 0x02, 0x06, 0, 0, 0x80|s.SKS[0]&0x7f, s.SKS[1], s.SKS[2], 0)
	}
	b[7] = byte(len(b) - 8)
	return b, nil
}
