package scsi

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sg_io_hdr constants from <scsi/sg.h>.
const (
	sgIO                = 0x2285
	sgGetVersionNum     = 0x2282
	sgDxferNone         = -1
	sgDxferToDev        = -2
	sgDxferFromDev      = -3
	sgInfoOKMask        = 0x1
	senseBufferLen      = 252 // SPC-4 maximum sense data length
	driverStatusSense   = 0x08
	driverStatusMask    = 0x0f
	sgMinVersionNum     = 30000
	maxSGIOTimeoutMilli = math.MaxUint32
)

// sgIOHdr mirrors the kernel's struct sg_io_hdr (include/uapi/scsi/sg.h);
// sgio_linux_test.go pins its size and offsets. The pointer fields are
// unsafe.Pointer so the buffers they point to stay reachable during the call.
type sgIOHdr struct {
	interfaceID    int32          // 'S'
	dxferDirection int32          // SG_DXFER_*
	cmdLen         uint8          // CDB length
	mxSBLen        uint8          // sense buffer size
	iovecCount     uint16         // 0: dxferp is a flat buffer
	dxferLen       uint32         // data length
	dxferp         unsafe.Pointer // data buffer
	cmdp           unsafe.Pointer // CDB
	sbp            unsafe.Pointer // sense buffer
	timeout        uint32         // milliseconds
	flags          uint32
	packID         int32
	usrPtr         uintptr
	status         uint8  // SCSI status byte
	maskedStatus   uint8  // status >> 1 (obsolete form)
	msgStatus      uint8  // SPI only
	sbLenWr        uint8  // sense bytes written
	hostStatus     uint16 // DID_*
	driverStatus   uint16 // DRIVER_*
	resid          int32  // dxferLen minus bytes transferred
	duration       uint32 // milliseconds
	info           uint32 // SG_INFO_*
}

// OpenSGIO opens path for SG_IO read-write and non-blocking, as sg3_utils
// does (O_NONBLOCK lets the open of an sg device or a unit without medium
// succeed; SG_IO itself still waits for completion). It fails for files
// that do not support SG_IO.
func OpenSGIO(path string) (*SGIODevice, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open SG_IO device: %w", err)
	}
	var version int32
	var errno unix.Errno
	cerr := control(f, func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, sgGetVersionNum, uintptr(unsafe.Pointer(&version)))
	})
	switch {
	case cerr != nil:
		err = cerr
	case errno != 0:
		err = fmt.Errorf("not an SG_IO device: %w", os.NewSyscallError("ioctl SG_GET_VERSION_NUM", errno))
	case version < sgMinVersionNum:
		err = fmt.Errorf("sg driver version %d, need %d or later", version, sgMinVersionNum)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open SG_IO device %s: %w", path, err)
	}
	return &SGIODevice{path: path, f: f}, nil
}

func control(f *os.File, fn func(fd uintptr)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(fn)
}

// Execute issues cmd with SG_IO. The timeout is cmd.Timeout (DefaultTimeout
// when zero), shortened to ctx's deadline; the ioctl cannot be interrupted
// otherwise, so cancelling ctx without a deadline does not end a command in
// flight. A command the device completed returns its status in Response; a
// transport failure (DID_* host status, DRIVER_* driver status) returns a
// *TransportError.
func (d *SGIODevice) Execute(ctx context.Context, cmd *Command) (Response, error) {
	if err := ctx.Err(); err != nil {
		return Response{}, fmt.Errorf("%s: %w", d.path, err)
	}
	if len(cmd.CDB) == 0 || len(cmd.CDB) > 255 {
		return Response{}, fmt.Errorf("%s: CDB length %d out of range", d.path, len(cmd.CDB))
	}
	if uint64(len(cmd.Data)) > math.MaxUint32 {
		return Response{}, fmt.Errorf("%s: data length %d too large for SG_IO", d.path, len(cmd.Data))
	}
	timeout := cmd.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return Response{}, fmt.Errorf("%s: %w", d.path, context.DeadlineExceeded)
		}
		timeout = min(timeout, left)
	}
	sense := make([]byte, senseBufferLen)
	h := sgIOHdr{
		interfaceID:    'S',
		dxferDirection: sgDxferNone,
		cmdLen:         uint8(len(cmd.CDB)),
		mxSBLen:        senseBufferLen,
		cmdp:           unsafe.Pointer(&cmd.CDB[0]),
		sbp:            unsafe.Pointer(&sense[0]),
		timeout:        uint32(min(max(timeout.Milliseconds(), 1), maxSGIOTimeoutMilli)),
	}
	if len(cmd.Data) > 0 {
		switch cmd.Dir {
		case DirFromDevice:
			h.dxferDirection = sgDxferFromDev
		case DirToDevice:
			h.dxferDirection = sgDxferToDev
		default:
			return Response{}, fmt.Errorf("%s: %d data bytes with direction %s", d.path, len(cmd.Data), cmd.Dir)
		}
		h.dxferLen = uint32(len(cmd.Data))
		h.dxferp = unsafe.Pointer(&cmd.Data[0])
	}
	var errno unix.Errno
	err := control(d.f, func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, sgIO, uintptr(unsafe.Pointer(&h)))
	})
	runtime.KeepAlive(cmd.CDB)
	runtime.KeepAlive(cmd.Data)
	runtime.KeepAlive(sense)
	if err == nil && errno != 0 {
		err = os.NewSyscallError("ioctl SG_IO", errno)
	}
	if err != nil {
		return Response{}, fmt.Errorf("%s: %w", d.path, err)
	}
	return d.response(&h, sense, len(cmd.Data))
}

// response turns a completed sg_io_hdr into a Response or a transport error.
// A status other than GOOD means the device answered, whatever the host
// status says (older kernels set DID_NEXUS_FAILURE next to RESERVATION
// CONFLICT); with GOOD status a host or driver error means the command's
// fate is unknown.
func (d *SGIODevice) response(h *sgIOHdr, sense []byte, dataLen int) (Response, error) {
	r := Response{Status: Status(h.status)}
	if r.Status == StatusGood && h.maskedStatus != 0 {
		r.Status = Status(h.maskedStatus << 1)
	}
	if n := int(h.sbLenWr); n > 0 {
		r.Sense = sense[:min(n, len(sense))]
	}
	if h.resid > 0 && int(h.resid) <= dataLen {
		r.Residual = int(h.resid)
	}
	if r.Status != StatusGood || h.info&sgInfoOKMask == 0 {
		return r, nil
	}
	drv := h.driverStatus & driverStatusMask
	if h.hostStatus == 0 && (drv == 0 || drv == driverStatusSense) {
		return r, nil
	}
	return Response{}, &TransportError{Path: d.path, HostStatus: HostStatus(h.hostStatus), DriverStatus: h.driverStatus}
}
