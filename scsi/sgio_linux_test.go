package scsi

import (
	"errors"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// TestSGIOHdrLayout pins sgIOHdr to struct sg_io_hdr in
// include/uapi/scsi/sg.h (88 bytes on 64-bit, 64 on 32-bit).
func TestSGIOHdrLayout(t *testing.T) {
	var h sgIOHdr
	p := unsafe.Sizeof(uintptr(0)) // pointer size
	pad := p - 4                   // usr_ptr is pointer-aligned after pack_id
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"interface_id", unsafe.Offsetof(h.interfaceID), 0},
		{"dxfer_direction", unsafe.Offsetof(h.dxferDirection), 4},
		{"cmd_len", unsafe.Offsetof(h.cmdLen), 8},
		{"mx_sb_len", unsafe.Offsetof(h.mxSBLen), 9},
		{"iovec_count", unsafe.Offsetof(h.iovecCount), 10},
		{"dxfer_len", unsafe.Offsetof(h.dxferLen), 12},
		{"dxferp", unsafe.Offsetof(h.dxferp), 16},
		{"cmdp", unsafe.Offsetof(h.cmdp), 16 + p},
		{"sbp", unsafe.Offsetof(h.sbp), 16 + 2*p},
		{"timeout", unsafe.Offsetof(h.timeout), 16 + 3*p},
		{"flags", unsafe.Offsetof(h.flags), 20 + 3*p},
		{"pack_id", unsafe.Offsetof(h.packID), 24 + 3*p},
		{"usr_ptr", unsafe.Offsetof(h.usrPtr), 28 + 3*p + pad},
		{"status", unsafe.Offsetof(h.status), 28 + 4*p + pad},
		{"masked_status", unsafe.Offsetof(h.maskedStatus), 29 + 4*p + pad},
		{"msg_status", unsafe.Offsetof(h.msgStatus), 30 + 4*p + pad},
		{"sb_len_wr", unsafe.Offsetof(h.sbLenWr), 31 + 4*p + pad},
		{"host_status", unsafe.Offsetof(h.hostStatus), 32 + 4*p + pad},
		{"driver_status", unsafe.Offsetof(h.driverStatus), 34 + 4*p + pad},
		{"resid", unsafe.Offsetof(h.resid), 36 + 4*p + pad},
		{"duration", unsafe.Offsetof(h.duration), 40 + 4*p + pad},
		{"info", unsafe.Offsetof(h.info), 44 + 4*p + pad},
	} {
		if f.got != f.want {
			t.Errorf("offset of %s = %d, want %d", f.name, f.got, f.want)
		}
	}
	want := uintptr(64)
	if p == 8 {
		want = 88
	}
	if got := unsafe.Sizeof(h); got != want {
		t.Errorf("sizeof(sg_io_hdr) = %d, want %d", got, want)
	}
}

func TestOpenSGIORefusesOtherFiles(t *testing.T) {
	if _, err := OpenSGIO("/dev/null"); err == nil || !strings.Contains(err.Error(), "/dev/null: not an SG_IO device: ioctl SG_GET_VERSION_NUM") {
		t.Errorf("OpenSGIO(/dev/null) = %v", err)
	}
	if _, err := OpenSGIO("/nonexistent/sda"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenSGIO(missing) = %v", err)
	}
}

// TestSGIOResponse checks how a completed sg_io_hdr becomes a Response or
// a transport error.
func TestSGIOResponse(t *testing.T) {
	d := &SGIODevice{path: "/dev/sdz"}
	sense := make([]byte, senseBufferLen)
	copy(sense, mustHex(t, "70 00 06 00000000 0a 00000000 2a 03"))
	for _, tc := range []struct {
		name    string
		h       sgIOHdr
		want    Response
		wantErr string
	}{
		{name: "good", h: sgIOHdr{resid: 12}, want: Response{Residual: 12}},
		{name: "check condition", h: sgIOHdr{status: 0x02, maskedStatus: 0x01, sbLenWr: 18, driverStatus: 0x08, info: 1},
			want: Response{Status: StatusCheckCondition, Sense: sense[:18]}},
		{name: "masked status only", h: sgIOHdr{maskedStatus: 0x0c, info: 1},
			want: Response{Status: StatusReservationConflict}},
		// Kernels before 5.17 set DID_NEXUS_FAILURE next to RESERVATION CONFLICT.
		{name: "conflict with nexus failure", h: sgIOHdr{status: 0x18, hostStatus: 0x11, info: 1},
			want: Response{Status: StatusReservationConflict}},
		{name: "timeout", h: sgIOHdr{hostStatus: 0x03, info: 1}, wantErr: "/dev/sdz: SG_IO transport failure: host status DID_TIME_OUT"},
		{name: "no connect", h: sgIOHdr{hostStatus: 0x01, info: 1}, wantErr: "DID_NO_CONNECT"},
		{name: "driver error", h: sgIOHdr{driverStatus: 0x04, info: 1}, wantErr: "driver status 0x04"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := d.response(&tc.h, sense, 512)
			if tc.wantErr != "" {
				var te *TransportError
				if !errors.As(err, &te) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want *TransportError containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.want.Status || got.Residual != tc.want.Residual || string(got.Sense) != string(tc.want.Sense) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	_, err := d.response(&sgIOHdr{hostStatus: uint16(DIDTimeOut), info: 1}, sense, 0)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("DID_TIME_OUT does not match os.ErrDeadlineExceeded: %v", err)
	}
}

// TestIntegrationSGIO talks to a real device named by WOLFPACK_SG_DEVICE
// (e.g. /dev/sdb from tgt through an iSCSI initiator, or scsi_debug). It
// only reads: INQUIRY, VPD pages, TEST UNIT READY, READ CAPACITY(16),
// PERSISTENT RESERVE IN.
func TestIntegrationSGIO(t *testing.T) {
	path := os.Getenv("WOLFPACK_SG_DEVICE")
	if path == "" {
		t.Skip("set WOLFPACK_SG_DEVICE=/dev/sdX (root) to run against a real SCSI device")
	}
	d, err := OpenSGIO(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := t.Context()
	id, err := Inquiry(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("INQUIRY: %+v", id)
	if sn, err := UnitSerialNumber(ctx, d); err == nil {
		t.Logf("serial %q", sn)
	} else {
		t.Logf("serial: %v", err)
	}
	if ds, err := DeviceIdentification(ctx, d); err == nil {
		for _, x := range ds {
			t.Logf("designator %s", x)
		}
	}
	if err := TestUnitReady(ctx, d); err != nil {
		t.Fatal(err)
	}
	c, err := ReadCapacity16(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("capacity: %+v (%d bytes)", c, c.Bytes())
	buf := make([]byte, c.BlockSize)
	if err := Read16(ctx, d, 0, 1, buf); err != nil {
		t.Fatal(err)
	}
	if caps, err := ReportCapabilities(ctx, d); err == nil {
		t.Logf("PR capabilities: %+v types %v", caps, caps.Types())
	} else {
		t.Logf("REPORT CAPABILITIES: %v", err)
	}
	if k, err := ReadKeys(ctx, d); err == nil {
		t.Logf("keys: %+v", k)
	} else {
		t.Logf("READ KEYS: %v", err)
	}
}
