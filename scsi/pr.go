package scsi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// PERSISTENT RESERVE IN service actions (SPC-4 6.15.1).
const (
	PRINReadKeys           = 0x00
	PRINReadReservation    = 0x01
	PRINReportCapabilities = 0x02
	PRINReadFullStatus     = 0x03
)

// PERSISTENT RESERVE OUT service actions (SPC-4 6.16.1).
const (
	PROUTRegister               = 0x00
	PROUTReserve                = 0x01
	PROUTRelease                = 0x02
	PROUTClear                  = 0x03
	PROUTPreempt                = 0x04
	PROUTPreemptAndAbort        = 0x05
	PROUTRegisterAndIgnore      = 0x06
	PROUTRegisterAndMove        = 0x07
	PROUTReplaceLostReservation = 0x08
)

// ReservationType is the TYPE of a persistent reservation.
// Reference: SPC-4 6.16.2 Table 183.
type ReservationType uint8

// Persistent reservation types.
const (
	WriteExclusive                 ReservationType = 1
	ExclusiveAccess                ReservationType = 3
	WriteExclusiveRegistrantsOnly  ReservationType = 5
	ExclusiveAccessRegistrantsOnly ReservationType = 6
	WriteExclusiveAllRegistrants   ReservationType = 7
	ExclusiveAccessAllRegistrants  ReservationType = 8
)

// ReservationTypes lists the defined types in numeric order.
var ReservationTypes = []ReservationType{
	WriteExclusive, ExclusiveAccess, WriteExclusiveRegistrantsOnly,
	ExclusiveAccessRegistrantsOnly, WriteExclusiveAllRegistrants, ExclusiveAccessAllRegistrants,
}

var reservationTypeNames = map[ReservationType][2]string{
	WriteExclusive:                 {"Write Exclusive", "we"},
	ExclusiveAccess:                {"Exclusive Access", "ea"},
	WriteExclusiveRegistrantsOnly:  {"Write Exclusive - Registrants Only", "we-ro"},
	ExclusiveAccessRegistrantsOnly: {"Exclusive Access - Registrants Only", "ea-ro"},
	WriteExclusiveAllRegistrants:   {"Write Exclusive - All Registrants", "we-ar"},
	ExclusiveAccessAllRegistrants:  {"Exclusive Access - All Registrants", "ea-ar"},
}

// String returns the SPC-4 name, e.g. "Write Exclusive - Registrants Only".
func (t ReservationType) String() string {
	if n, ok := reservationTypeNames[t]; ok {
		return n[0]
	}
	return fmt.Sprintf("ReservationType(%d)", uint8(t))
}

// ShortName returns the short name ParseReservationType accepts, e.g.
// "we-ro", or the number for an undefined type.
func (t ReservationType) ShortName() string {
	if n, ok := reservationTypeNames[t]; ok {
		return n[1]
	}
	return strconv.Itoa(int(t))
}

// Valid reports whether t is a type SPC-4 defines.
func (t ReservationType) Valid() bool {
	_, ok := reservationTypeNames[t]
	return ok
}

// ParseReservationType parses a short name ("we-ro", any case) or a type
// number ("5", "0x5").
func ParseReservationType(s string) (ReservationType, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for t, n := range reservationTypeNames {
		if n[1] == name {
			return t, nil
		}
	}
	if v, err := strconv.ParseUint(name, 0, 8); err == nil && ReservationType(v).Valid() {
		return ReservationType(v), nil
	}
	return 0, fmt.Errorf("scsi: unknown reservation type %q: want one of we, ea, we-ro, ea-ro, we-ar, ea-ar or 1, 3, 5, 6, 7, 8", s)
}

// Keys is the READ KEYS parameter data.
type Keys struct {
	Generation uint32
	Keys       []uint64
}

// ParseKeys parses READ KEYS parameter data. Bytes past the ADDITIONAL LENGTH
// are ignored; a list that the ADDITIONAL LENGTH says is longer than b
// yields ErrTruncated.
// Reference: SPC-4 6.15.2 READ KEYS.
func ParseKeys(b []byte) (Keys, error) {
	body, gen, err := prinBody("READ KEYS", b)
	if err != nil {
		return Keys{}, err
	}
	if len(body)%8 != 0 {
		return Keys{}, fmt.Errorf("parse READ KEYS: additional length %d is not a multiple of 8", len(body))
	}
	k := Keys{Generation: gen, Keys: make([]uint64, 0, len(body)/8)}
	for i := 0; i < len(body); i += 8 {
		k.Keys = append(k.Keys, binary.BigEndian.Uint64(body[i:]))
	}
	return k, nil
}

// prinBody checks the 8-byte header shared by READ KEYS, READ RESERVATION
// and READ FULL STATUS and returns the ADDITIONAL LENGTH bytes after it.
func prinBody(what string, b []byte) (body []byte, gen uint32, err error) {
	if len(b) < 8 {
		return nil, 0, fmt.Errorf("parse %s: %d bytes, need 8 for the header: %w", what, len(b), ErrTruncated)
	}
	n := binary.BigEndian.Uint32(b[4:8])
	if uint64(n) > uint64(len(b)-8) {
		return nil, 0, fmt.Errorf("parse %s: additional length %d but only %d bytes follow the header: %w", what, n, len(b)-8, ErrTruncated)
	}
	return b[8 : 8+int(n)], binary.BigEndian.Uint32(b[0:4]), nil
}

// Reservation is the READ RESERVATION parameter data.
type Reservation struct {
	Generation uint32
	// Held reports whether a persistent reservation exists; the other fields
	// are zero when it does not.
	Held bool
	// Key is the reservation holder's key (0 for an all-registrants type).
	Key   uint64
	Type  ReservationType
	Scope uint8
}

// ParseReservation parses READ RESERVATION parameter data.
// Reference: SPC-4 6.15.3 READ RESERVATION.
func ParseReservation(b []byte) (Reservation, error) {
	body, gen, err := prinBody("READ RESERVATION", b)
	if err != nil {
		return Reservation{}, err
	}
	r := Reservation{Generation: gen}
	switch {
	case len(body) == 0:
	case len(body) >= 16:
		r.Held = true
		r.Key = binary.BigEndian.Uint64(body[0:8])
		r.Scope = body[13] >> 4
		r.Type = ReservationType(body[13] & 0x0f)
	default:
		return Reservation{}, fmt.Errorf("parse READ RESERVATION: additional length %d, want 0 or 16", len(body))
	}
	return r, nil
}

// Capabilities is the REPORT CAPABILITIES parameter data.
type Capabilities struct {
	RLRC  bool // replace lost reservation capable
	CRH   bool // compatible reservation handling
	SIPC  bool // specify initiator ports capable
	ATPC  bool // all target ports capable
	PTPLC bool // persist through power loss capable
	TMV   bool // type mask valid
	// AllowCommands is the ALLOW COMMANDS field (0..7).
	AllowCommands uint8
	PTPLA         bool // persist through power loss activated
	// TypeMask is the PERSISTENT RESERVATION TYPE MASK as sent (bytes 4..5).
	TypeMask uint16
}

// typeMaskBit is the bit of a type in Capabilities.TypeMask: WR_EX_AR is
// bit 7 of byte 4 (mask bit 15), EX_AC_AR bit 0 of byte 5 (mask bit 0).
func typeMaskBit(t ReservationType) uint16 {
	if !t.Valid() {
		return 0
	}
	return 1 << ((uint(t) + 8) % 16)
}

// Supports reports whether the device supports reservation type t. Without
// TMV the device did not say, and Supports reports false.
func (c Capabilities) Supports(t ReservationType) bool {
	return c.TMV && c.TypeMask&typeMaskBit(t) != 0
}

// Types lists the supported reservation types (nil without TMV).
func (c Capabilities) Types() []ReservationType {
	var ts []ReservationType
	for _, t := range ReservationTypes {
		if c.Supports(t) {
			ts = append(ts, t)
		}
	}
	return ts
}

// ParseCapabilities parses REPORT CAPABILITIES parameter data.
// Reference: SPC-4 6.15.4 REPORT CAPABILITIES.
func ParseCapabilities(b []byte) (Capabilities, error) {
	if len(b) < 2 {
		return Capabilities{}, fmt.Errorf("parse REPORT CAPABILITIES: %d bytes, need 2 for the length: %w", len(b), ErrTruncated)
	}
	if n := binary.BigEndian.Uint16(b[0:2]); n < 8 {
		return Capabilities{}, fmt.Errorf("parse REPORT CAPABILITIES: length %d, want 8", n)
	}
	if len(b) < 8 {
		return Capabilities{}, fmt.Errorf("parse REPORT CAPABILITIES: %d bytes, need 8: %w", len(b), ErrTruncated)
	}
	return Capabilities{
		RLRC:          b[2]&0x80 != 0,
		CRH:           b[2]&0x10 != 0,
		SIPC:          b[2]&0x08 != 0,
		ATPC:          b[2]&0x04 != 0,
		PTPLC:         b[2]&0x01 != 0,
		TMV:           b[3]&0x80 != 0,
		AllowCommands: b[3] >> 4 & 0x07,
		PTPLA:         b[3]&0x01 != 0,
		TypeMask:      binary.BigEndian.Uint16(b[4:6]),
	}, nil
}

// FullStatus is the READ FULL STATUS parameter data.
type FullStatus struct {
	Generation  uint32
	Descriptors []FullStatusDescriptor
}

// FullStatusDescriptor describes one registered I_T nexus.
type FullStatusDescriptor struct {
	Key uint64
	// AllTgPt: the registration applies to all target ports.
	AllTgPt bool
	// Holder: this I_T nexus holds the reservation; Type and Scope are
	// meaningful only then.
	Holder bool
	Type   ReservationType
	Scope  uint8
	// RelativeTargetPort is meaningful when AllTgPt is false.
	RelativeTargetPort uint16
	// TransportID identifies the initiator port (SPC-4 7.6.4).
	TransportID []byte
}

// ParseFullStatus parses READ FULL STATUS parameter data.
// Reference: SPC-4 6.15.5 READ FULL STATUS, Table 175.
func ParseFullStatus(b []byte) (FullStatus, error) {
	body, gen, err := prinBody("READ FULL STATUS", b)
	if err != nil {
		return FullStatus{}, err
	}
	fs := FullStatus{Generation: gen}
	for off := 0; off < len(body); {
		d := body[off:]
		if len(d) < 24 {
			return FullStatus{}, fmt.Errorf("parse READ FULL STATUS: descriptor at offset %d has %d bytes, need 24", 8+off, len(d))
		}
		n := binary.BigEndian.Uint32(d[20:24])
		if uint64(n) > uint64(len(d)-24) {
			return FullStatus{}, fmt.Errorf("parse READ FULL STATUS: descriptor at offset %d: transport ID length %d exceeds the %d bytes left", 8+off, n, len(d)-24)
		}
		fs.Descriptors = append(fs.Descriptors, FullStatusDescriptor{
			Key:                binary.BigEndian.Uint64(d[0:8]),
			AllTgPt:            d[12]&0x02 != 0,
			Holder:             d[12]&0x01 != 0,
			Scope:              d[13] >> 4,
			Type:               ReservationType(d[13] & 0x0f),
			RelativeTargetPort: binary.BigEndian.Uint16(d[18:20]),
			TransportID:        append([]byte(nil), d[24:24+int(n)]...),
		})
		off += 24 + int(n)
	}
	return fs, nil
}

// PROUTParams is the PERSISTENT RESERVE OUT basic parameter list.
type PROUTParams struct {
	// Key is the RESERVATION KEY: the caller's registered key (0 when
	// registering for the first time).
	Key uint64
	// SAKey is the SERVICE ACTION RESERVATION KEY: the new key (REGISTER)
	// or the key to preempt (PREEMPT).
	SAKey uint64
	// Type goes into the CDB, not the parameter list.
	Type    ReservationType
	APTPL   bool // activate persist through power loss
	AllTgPt bool // register on all target ports
	// SpecIPT registers the initiator ports in TransportIDs as well
	// (REGISTER and REGISTER AND IGNORE EXISTING KEY only).
	SpecIPT      bool
	TransportIDs [][]byte
}

// Bytes returns the parameter list: 24 bytes, followed with SpecIPT by the
// TRANSPORTID PARAMETER DATA LENGTH and the TransportIDs.
// Reference: SPC-4 6.16.3 Table 186.
func (p PROUTParams) Bytes() []byte {
	b := make([]byte, 24, 24+4)
	binary.BigEndian.PutUint64(b[0:8], p.Key)
	binary.BigEndian.PutUint64(b[8:16], p.SAKey)
	if p.SpecIPT {
		b[20] |= 0x08
	}
	if p.AllTgPt {
		b[20] |= 0x04
	}
	if p.APTPL {
		b[20] |= 0x01
	}
	if p.SpecIPT {
		n := 0
		for _, id := range p.TransportIDs {
			n += len(id)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(n))
		for _, id := range p.TransportIDs {
			b = append(b, id...)
		}
	}
	return b
}

var proutNames = [...]string{
	PROUTRegister:               "REGISTER",
	PROUTReserve:                "RESERVE",
	PROUTRelease:                "RELEASE",
	PROUTClear:                  "CLEAR",
	PROUTPreempt:                "PREEMPT",
	PROUTPreemptAndAbort:        "PREEMPT AND ABORT",
	PROUTRegisterAndIgnore:      "REGISTER AND IGNORE EXISTING KEY",
	PROUTRegisterAndMove:        "REGISTER AND MOVE",
	PROUTReplaceLostReservation: "REPLACE LOST RESERVATION",
}

var prinNames = [...]string{
	PRINReadKeys:           "READ KEYS",
	PRINReadReservation:    "READ RESERVATION",
	PRINReportCapabilities: "REPORT CAPABILITIES",
	PRINReadFullStatus:     "READ FULL STATUS",
}

func serviceActionOp(cmd string, names []string, sa uint8) string {
	if int(sa) < len(names) {
		return cmd + " (" + names[sa] + ")"
	}
	return fmt.Sprintf("%s (service action %#02x)", cmd, sa)
}

// PersistentReserveOut issues PERSISTENT RESERVE OUT with service action sa
// (REGISTER AND MOVE needs a different parameter list and is not supported).
// Errors are *SenseError for a non-GOOD status, e.g. RESERVATION CONFLICT.
// Reference: SPC-4 6.16.
func PersistentReserveOut(ctx context.Context, dev Device, sa uint8, p PROUTParams) error {
	op := serviceActionOp("PERSISTENT RESERVE OUT", proutNames[:], sa)
	if sa == PROUTRegisterAndMove {
		return fmt.Errorf("%s: not supported", op)
	}
	data := p.Bytes()
	_, err := Run(ctx, dev, op, &Command{
		CDB:  PROUTCDB(sa, p.Type, uint32(len(data))),
		Dir:  DirToDevice,
		Data: data,
	})
	return err
}

// Register registers newKey for this I_T nexus, or replaces oldKey with
// newKey; newKey 0 unregisters.
func Register(ctx context.Context, dev Device, oldKey, newKey uint64) error {
	return PersistentReserveOut(ctx, dev, PROUTRegister, PROUTParams{Key: oldKey, SAKey: newKey})
}

// RegisterAndIgnore registers newKey whatever key this I_T nexus had.
func RegisterAndIgnore(ctx context.Context, dev Device, newKey uint64) error {
	return PersistentReserveOut(ctx, dev, PROUTRegisterAndIgnore, PROUTParams{SAKey: newKey})
}

// Reserve creates a reservation of type t held through key.
func Reserve(ctx context.Context, dev Device, key uint64, t ReservationType) error {
	return PersistentReserveOut(ctx, dev, PROUTReserve, PROUTParams{Key: key, Type: t})
}

// Release releases the reservation of type t held through key.
func Release(ctx context.Context, dev Device, key uint64, t ReservationType) error {
	return PersistentReserveOut(ctx, dev, PROUTRelease, PROUTParams{Key: key, Type: t})
}

// Clear removes every registration and the reservation; key must be registered.
func Clear(ctx context.Context, dev Device, key uint64) error {
	return PersistentReserveOut(ctx, dev, PROUTClear, PROUTParams{Key: key})
}

// Preempt removes the registrations of victim and, if victim holds the
// reservation, takes it over with type t.
func Preempt(ctx context.Context, dev Device, key, victim uint64, t ReservationType) error {
	return PersistentReserveOut(ctx, dev, PROUTPreempt, PROUTParams{Key: key, SAKey: victim, Type: t})
}

// PreemptAndAbort is Preempt that also aborts the victims' outstanding commands.
func PreemptAndAbort(ctx context.Context, dev Device, key, victim uint64, t ReservationType) error {
	return PersistentReserveOut(ctx, dev, PROUTPreemptAndAbort, PROUTParams{Key: key, SAKey: victim, Type: t})
}

// PreemptAbortOrPreempt sends PREEMPT AND ABORT and, if the target refuses
// that service action with ILLEGAL REQUEST, INVALID FIELD IN CDB (tgt
// 1.0.85 does not implement it), PREEMPT: a refused command was not
// executed, so the second is safe, and PREEMPT fences the victim the same
// way. fellBack reports that PREEMPT was sent. This is the project's one
// copy of the fallback.
func PreemptAbortOrPreempt(ctx context.Context, dev Device, key, victim uint64, t ReservationType) (fellBack bool, err error) {
	err = PreemptAndAbort(ctx, dev, key, victim, t)
	if !IsInvalidFieldInCDB(err) {
		return false, err
	}
	return true, Preempt(ctx, dev, key, victim, t)
}

// IsInvalidFieldInCDB reports whether err is CHECK CONDITION, ILLEGAL
// REQUEST, INVALID FIELD IN CDB (24/00): the command was refused unexecuted.
func IsInvalidFieldInCDB(err error) bool {
	var se *SenseError
	return errors.As(err, &se) && se.Status == StatusCheckCondition &&
		se.Key == SenseIllegalRequest && se.ASC == 0x24 && se.ASCQ == 0x00
}

// Allocation lengths for PERSISTENT RESERVE IN: the first try, and the cap
// (the field is 16 bits).
const (
	prinAlloc    = 8192
	prinAllocMax = 0xffff
)

// PersistentReserveIn issues PERSISTENT RESERVE IN with service action sa
// and returns the parameter data. When the device reports more data than
// the allocation length let through, it re-issues the command with a larger
// one, up to 65535 bytes; data still longer than that yields ErrTruncated.
func PersistentReserveIn(ctx context.Context, dev Device, sa uint8) ([]byte, error) {
	op := serviceActionOp("PERSISTENT RESERVE IN", prinNames[:], sa)
	alloc := prinAlloc
	for {
		buf := make([]byte, alloc)
		resp, err := Run(ctx, dev, op, &Command{CDB: PRINCDB(sa, uint16(alloc)), Dir: DirFromDevice, Data: buf})
		if err != nil {
			return nil, err
		}
		buf = received(buf, resp)
		need := len(buf)
		switch {
		case sa == PRINReportCapabilities && len(buf) >= 2:
			need = int(binary.BigEndian.Uint16(buf)) // LENGTH counts the whole data
		case sa != PRINReportCapabilities && len(buf) >= 8:
			need = 8 + int(binary.BigEndian.Uint32(buf[4:8]))
		}
		if need <= len(buf) {
			return buf, nil
		}
		if alloc >= prinAllocMax || len(buf) < alloc {
			return nil, fmt.Errorf("%s: device reports %d bytes, got %d: %w", op, need, len(buf), ErrTruncated)
		}
		alloc = min(need, prinAllocMax)
	}
}

// received trims buf to the bytes the device transferred.
func received(buf []byte, r Response) []byte {
	if r.Residual > 0 && r.Residual <= len(buf) {
		return buf[:len(buf)-r.Residual]
	}
	return buf
}

// ReadKeys returns the registered reservation keys.
func ReadKeys(ctx context.Context, dev Device) (Keys, error) {
	return prin(ctx, dev, PRINReadKeys, ParseKeys)
}

// ReadReservation returns the current persistent reservation.
func ReadReservation(ctx context.Context, dev Device) (Reservation, error) {
	return prin(ctx, dev, PRINReadReservation, ParseReservation)
}

// ReportCapabilities returns the device's persistent reservation capabilities.
func ReportCapabilities(ctx context.Context, dev Device) (Capabilities, error) {
	return prin(ctx, dev, PRINReportCapabilities, ParseCapabilities)
}

// ReadFullStatus returns every registration with its I_T nexus.
func ReadFullStatus(ctx context.Context, dev Device) (FullStatus, error) {
	return prin(ctx, dev, PRINReadFullStatus, ParseFullStatus)
}

func prin[T any](ctx context.Context, dev Device, sa uint8, parse func([]byte) (T, error)) (T, error) {
	var zero T
	b, err := PersistentReserveIn(ctx, dev, sa)
	if err != nil {
		return zero, err
	}
	v, err := parse(b)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", serviceActionOp("PERSISTENT RESERVE IN", prinNames[:], sa), err)
	}
	return v, nil
}

// MarshalBinary encodes READ KEYS parameter data, for targets and tests.
func (k Keys) MarshalBinary() ([]byte, error) {
	b := make([]byte, 8, 8+8*len(k.Keys))
	binary.BigEndian.PutUint32(b[0:4], k.Generation)
	binary.BigEndian.PutUint32(b[4:8], uint32(8*len(k.Keys)))
	for _, key := range k.Keys {
		b = binary.BigEndian.AppendUint64(b, key)
	}
	return b, nil
}

// MarshalBinary encodes READ RESERVATION parameter data.
func (r Reservation) MarshalBinary() ([]byte, error) {
	if !r.Held {
		b := make([]byte, 8)
		binary.BigEndian.PutUint32(b[0:4], r.Generation)
		return b, nil
	}
	b := make([]byte, 24)
	binary.BigEndian.PutUint32(b[0:4], r.Generation)
	b[7] = 16
	binary.BigEndian.PutUint64(b[8:16], r.Key)
	b[21] = r.Scope<<4 | byte(r.Type)&0x0f
	return b, nil
}

// MarshalBinary encodes REPORT CAPABILITIES parameter data.
func (c Capabilities) MarshalBinary() ([]byte, error) {
	b := make([]byte, 8)
	b[1] = 8
	for _, f := range []struct {
		on   bool
		i    int
		mask byte
	}{
		{c.RLRC, 2, 0x80}, {c.CRH, 2, 0x10}, {c.SIPC, 2, 0x08}, {c.ATPC, 2, 0x04},
		{c.PTPLC, 2, 0x01}, {c.TMV, 3, 0x80}, {c.PTPLA, 3, 0x01},
	} {
		if f.on {
			b[f.i] |= f.mask
		}
	}
	b[3] |= c.AllowCommands & 0x07 << 4
	binary.BigEndian.PutUint16(b[4:6], c.TypeMask)
	return b, nil
}

// MarshalBinary encodes READ FULL STATUS parameter data.
func (fs FullStatus) MarshalBinary() ([]byte, error) {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b[0:4], fs.Generation)
	for _, d := range fs.Descriptors {
		var h [24]byte
		binary.BigEndian.PutUint64(h[0:8], d.Key)
		if d.AllTgPt {
			h[12] |= 0x02
		}
		if d.Holder {
			h[12] |= 0x01
		}
		h[13] = d.Scope<<4 | byte(d.Type)&0x0f
		binary.BigEndian.PutUint16(h[18:20], d.RelativeTargetPort)
		binary.BigEndian.PutUint32(h[20:24], uint32(len(d.TransportID)))
		b = append(append(b, h[:]...), d.TransportID...)
	}
	if uint64(len(b)-8) > math.MaxUint32 {
		return nil, errors.New("marshal READ FULL STATUS: too long")
	}
	binary.BigEndian.PutUint32(b[4:8], uint32(len(b)-8))
	return b, nil
}
