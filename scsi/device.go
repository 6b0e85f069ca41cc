package scsi

import (
	"context"
	"time"
)

// Direction is the direction of a command's data transfer.
type Direction uint8

const (
	// DirNone: the command moves no data (TEST UNIT READY, most PROUT).
	DirNone Direction = iota
	// DirFromDevice: data moves from the device into Command.Data (reads).
	DirFromDevice
	// DirToDevice: data moves from Command.Data to the device (writes).
	DirToDevice
)

func (d Direction) String() string {
	switch d {
	case DirNone:
		return "none"
	case DirFromDevice:
		return "from-device"
	case DirToDevice:
		return "to-device"
	}
	return "Direction(?)"
}

// Command is one SCSI command as a transport carries it.
type Command struct {
	CDB []byte
	Dir Direction
	// Data is the data-in buffer (DirFromDevice) or the data-out buffer
	// (DirToDevice); its length is the transfer length.
	Data []byte
	// Timeout bounds the command at the transport; zero means DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout is the per-command timeout used when Command.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Response is what the device answered. A transport returns a Response for
// every command the device completed, whatever its status; an error from
// Device.Execute means the command may not have reached the device or its
// completion was lost (a transport failure, a timeout).
type Response struct {
	Status Status
	// Sense holds the sense data returned with CHECK CONDITION, trimmed to
	// the length the device returned.
	Sense []byte
	// Residual is the number of bytes of Data that were not transferred.
	Residual int
}

// Device is a path to one logical unit (an I_T_L nexus). Every transport
// implements it: SG_IO on Linux block and sg devices, the userspace iSCSI
// initiator, and the in-memory target. A Device is safe for use by one
// goroutine at a time unless its documentation says otherwise.
type Device interface {
	// Execute sends cmd and waits for its completion or for ctx.
	Execute(ctx context.Context, cmd *Command) (Response, error)
	// Close releases the path. It does not change reservations.
	Close() error
}

// Status is the SCSI status byte (SAM-5 5.3).
type Status uint8

// SAM-5 status codes.
const (
	StatusGood                Status = 0x00
	StatusCheckCondition      Status = 0x02
	StatusConditionMet        Status = 0x04
	StatusBusy                Status = 0x08
	StatusReservationConflict Status = 0x18
	StatusTaskSetFull         Status = 0x28
	StatusACAActive           Status = 0x30
	StatusTaskAborted         Status = 0x40
)

func (s Status) String() string {
	switch s {
	case StatusGood:
		return "GOOD"
	case StatusCheckCondition:
		return "CHECK CONDITION"
	case StatusConditionMet:
		return "CONDITION MET"
	case StatusBusy:
		return "BUSY"
	case StatusReservationConflict:
		return "RESERVATION CONFLICT"
	case StatusTaskSetFull:
		return "TASK SET FULL"
	case StatusACAActive:
		return "ACA ACTIVE"
	case StatusTaskAborted:
		return "TASK ABORTED"
	}
	return "status 0x" + hex8(uint8(s))
}

func hex8(b uint8) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&0xf]})
}
