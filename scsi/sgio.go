package scsi

import (
	"fmt"
	"os"
)

// SGIODevice is a SCSI device reached through the Linux SG_IO ioctl: a block
// device (/dev/sdX) or an SCSI generic device (/dev/sgN). Execute is safe for
// concurrent use.
type SGIODevice struct {
	path string
	f    *os.File
}

var _ Device = (*SGIODevice)(nil)

// Path returns the path the device was opened with.
func (d *SGIODevice) Path() string { return d.path }

func (d *SGIODevice) String() string { return d.path }

// Close closes the device file; it does not change reservations.
func (d *SGIODevice) Close() error { return d.f.Close() }

// HostStatus is the Linux SCSI midlayer's host byte (DID_*).
type HostStatus uint16

var hostStatusNames = [...]string{
	"DID_OK", "DID_NO_CONNECT", "DID_BUS_BUSY", "DID_TIME_OUT", "DID_BAD_TARGET",
	"DID_ABORT", "DID_PARITY", "DID_ERROR", "DID_RESET", "DID_BAD_INTR",
	"DID_PASSTHROUGH", "DID_SOFT_ERROR", "DID_IMM_RETRY", "DID_REQUEUE",
	"DID_TRANSPORT_DISRUPTED", "DID_TRANSPORT_FAILFAST", "DID_TARGET_FAILURE",
	"DID_NEXUS_FAILURE", "DID_ALLOC_FAILURE", "DID_MEDIUM_ERROR", "DID_TRANSPORT_MARGINAL",
}

func (h HostStatus) String() string {
	if int(h) < len(hostStatusNames) {
		return hostStatusNames[h]
	}
	return fmt.Sprintf("DID_%#02x", uint16(h))
}

// Host status values callers may want to test for.
const (
	DIDNoConnect HostStatus = 0x01
	DIDTimeOut   HostStatus = 0x03
	DIDAbort     HostStatus = 0x05
	DIDReset     HostStatus = 0x08
)

// TransportError is an SG_IO command that failed below the device: the
// command may or may not have reached it.
type TransportError struct {
	Path         string
	HostStatus   HostStatus
	DriverStatus uint16
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("%s: SG_IO transport failure: host status %s, driver status %#02x", e.Path, e.HostStatus, e.DriverStatus)
}

// Is makes a DID_TIME_OUT match os.ErrDeadlineExceeded.
func (e *TransportError) Is(target error) bool {
	return target == os.ErrDeadlineExceeded && (e.HostStatus == DIDTimeOut || e.DriverStatus&0x0f == 0x06 /* DRIVER_TIMEOUT */)
}
