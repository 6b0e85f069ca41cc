package scsi

import (
	"errors"
	"fmt"
)

// SenseKey is the SENSE KEY field of sense data (SPC-4 4.5.6).
type SenseKey uint8

// SPC-4 sense keys.
const (
	SenseNoSense        SenseKey = 0x0
	SenseRecoveredError SenseKey = 0x1
	SenseNotReady       SenseKey = 0x2
	SenseMediumError    SenseKey = 0x3
	SenseHardwareError  SenseKey = 0x4
	SenseIllegalRequest SenseKey = 0x5
	SenseUnitAttention  SenseKey = 0x6
	SenseDataProtect    SenseKey = 0x7
	SenseBlankCheck     SenseKey = 0x8
	SenseAbortedCommand SenseKey = 0xb
	SenseMiscompare     SenseKey = 0xe
)

var senseKeyNames = [...]string{
	0x0: "NO SENSE", 0x1: "RECOVERED ERROR", 0x2: "NOT READY", 0x3: "MEDIUM ERROR",
	0x4: "HARDWARE ERROR", 0x5: "ILLEGAL REQUEST", 0x6: "UNIT ATTENTION", 0x7: "DATA PROTECT",
	0x8: "BLANK CHECK", 0x9: "VENDOR SPECIFIC", 0xa: "COPY ABORTED", 0xb: "ABORTED COMMAND",
	0xc: "RESERVED", 0xd: "VOLUME OVERFLOW", 0xe: "MISCOMPARE", 0xf: "COMPLETED",
}

func (k SenseKey) String() string {
	if int(k) < len(senseKeyNames) {
		return senseKeyNames[k]
	}
	return fmt.Sprintf("SenseKey(%#x)", uint8(k))
}

// Sentinel errors for errors.Is. A *SenseError matches the one that fits its
// status and sense key, so callers can write
// errors.Is(err, scsi.ErrReservationConflict).
var (
	ErrReservationConflict = errors.New("scsi: reservation conflict")
	ErrUnitAttention       = errors.New("scsi: unit attention")
	ErrNotReady            = errors.New("scsi: not ready")
	ErrIllegalRequest      = errors.New("scsi: illegal request")
	ErrBusy                = errors.New("scsi: busy")
	// ErrTruncated means parameter data ended before its length fields said.
	ErrTruncated = errors.New("scsi: parameter data truncated")
)

// SenseError is a command that completed with a status other than GOOD. It
// carries the status and, for CHECK CONDITION, the decoded sense.
type SenseError struct {
	// Op names the command, e.g. "PERSISTENT RESERVE OUT (PREEMPT AND ABORT)".
	Op     string
	Status Status
	Key    SenseKey
	ASC    uint8
	ASCQ   uint8
	// Sense is the raw sense data (nil when the device returned none).
	Sense []byte
	// Deferred reports that the sense describes a deferred error: an
	// earlier command (such as a cached write) failed.
	Deferred bool
}

func (e *SenseError) Error() string {
	if e.Status != StatusCheckCondition {
		return fmt.Sprintf("%s: %s", e.Op, e.Status)
	}
	s := fmt.Sprintf("%s: CHECK CONDITION, %s, ASC/ASCQ %02x/%02x", e.Op, e.Key, e.ASC, e.ASCQ)
	if d := ASCDescription(e.ASC, e.ASCQ); d != "" {
		s += " (" + d + ")"
	}
	return s
}

// Is reports whether the error is one of the package's sentinels.
func (e *SenseError) Is(target error) bool {
	switch target {
	case ErrReservationConflict:
		return e.Status == StatusReservationConflict
	case ErrBusy:
		return e.Status == StatusBusy || e.Status == StatusTaskSetFull
	case ErrUnitAttention:
		return e.Status == StatusCheckCondition && e.Key == SenseUnitAttention
	case ErrNotReady:
		return e.Status == StatusCheckCondition && e.Key == SenseNotReady
	case ErrIllegalRequest:
		return e.Status == StatusCheckCondition && e.Key == SenseIllegalRequest
	}
	return false
}
