package memtarget

import (
	"encoding/binary"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

// PERSISTENT RESERVE IN service actions (SPC-4 6.15.1).
const (
	saReadKeys           = 0x00
	saReadReservation    = 0x01
	saReportCapabilities = 0x02
	saReadFullStatus     = 0x03
)

// PERSISTENT RESERVE OUT service actions (SPC-4 6.16.1).
const (
	saRegister             = 0x00
	saReserve              = 0x01
	saRelease              = 0x02
	saClear                = 0x03
	saPreempt              = 0x04
	saPreemptAndAbort      = 0x05
	saRegisterAndIgnoreKey = 0x06
)

func allRegistrants(typ uint8) bool {
	return typ == TypeWriteExclusiveAllRegistrants || typ == TypeExclusiveAccessAllRegistrants
}

func registrantsOnly(typ uint8) bool {
	return typ == TypeWriteExclusiveRegistrantsOnly || typ == TypeExclusiveAccessRegistrantsOnly
}

func validType(typ uint8) bool {
	switch typ {
	case TypeWriteExclusive, TypeExclusiveAccess,
		TypeWriteExclusiveRegistrantsOnly, TypeExclusiveAccessRegistrantsOnly,
		TypeWriteExclusiveAllRegistrants, TypeExclusiveAccessAllRegistrants:
		return true
	}
	return false
}

func (t *Target) tgt() bool { return t.cfg.Compat == CompatTgt }

// registrationOf returns the registration of nx, or nil.
func (t *Target) registrationOf(nx *nexus) *registration {
	for _, r := range t.regs {
		if r.nx == nx {
			return r
		}
	}
	return nil
}

// isHolder reports whether reg holds the reservation (SPC-4 5.12.10): the
// registration that made it, or any registration for the all-registrants
// types.
func (t *Target) isHolder(reg *registration) bool {
	if t.res == nil || reg == nil {
		return false
	}
	return allRegistrants(t.res.typ) || t.res.holder == reg
}

// conflicts applies SPC-4 5.12.1 Table 60 and SBC-3 Table 13: the holder
// may do anything; under Write Exclusive and Exclusive Access every other
// nexus is shut out of writes (and, for Exclusive Access, reads); under the
// registrants-only and all-registrants types only unregistered nexuses are.
func (t *Target) conflicts(nx *nexus, acc access) bool {
	if t.res == nil || acc == accessAllowed || acc == accessPROut {
		return false
	}
	reg := t.registrationOf(nx)
	if t.isHolder(reg) {
		return false
	}
	switch t.res.typ {
	case TypeWriteExclusive:
		return acc == accessWrite
	case TypeExclusiveAccess:
		return true
	case TypeWriteExclusiveRegistrantsOnly, TypeWriteExclusiveAllRegistrants:
		return acc == accessWrite && reg == nil
	}
	// Exclusive Access - Registrants Only / All Registrants, and (tgt
	// mode only) a type PREEMPT stored without checking it.
	return reg == nil
}

// attention establishes unit attention c for nx. SPC-4 mode does not queue
// a condition that is already pending; tgt queues every one.
func (t *Target) attention(nx *nexus, c senseCode) {
	if !t.tgt() {
		for _, p := range nx.ua {
			if p == c {
				return
			}
		}
	}
	nx.ua = append(nx.ua, c)
}

// attentionAllBut establishes c for every nexus except nx. It is tgt's
// ua_sense_add_other_it_nexus, which tgt calls once per remaining
// registrant with that registrant as nx.
func (t *Target) attentionAllBut(nx *nexus, c senseCode) {
	for _, o := range t.order {
		if o != nx {
			t.attention(o, c)
		}
	}
}

// prIn executes PERSISTENT RESERVE IN (SPC-4 6.15).
func (t *Target) prIn(nx *nexus, cmd *scsi.Command) scsi.Response {
	cdb := cmd.CDB
	sa := cdb[1] & 0x1f
	alloc := int(binary.BigEndian.Uint16(cdb[7:9]))
	if sa > saReadFullStatus || (sa == saReadFullStatus && t.tgt()) {
		return checkCondition(cmd, ascInvalidFieldInCDB)
	}
	if t.tgt() && alloc < 8 {
		return checkCondition(cmd, ascInvalidFieldInCDB)
	}
	b := make([]byte, 8, 64)
	binary.BigEndian.PutUint32(b[0:], t.gen)
	switch sa {
	case saReadKeys: // SPC-4 6.15.2
		for _, r := range t.regs {
			b = binary.BigEndian.AppendUint64(b, r.key)
		}
	case saReadReservation: // SPC-4 6.15.3
		if t.res != nil {
			var key uint64
			if !allRegistrants(t.res.typ) {
				key = t.res.holder.key
			}
			b = binary.BigEndian.AppendUint64(b, key)
			b = append(b, 0, 0, 0, 0, 0, t.res.scope<<4|t.res.typ&0x0f, 0, 0)
		}
	case saReportCapabilities: // SPC-4 6.15.4; the same bytes as tgt
		b = []byte{
			0x00, 0x08, // LENGTH
			0x00, // CRH, SIP_C, ATP_C, PTPL_C all zero
			0x80, // TMV; ALLOW COMMANDS 000b; PTPL_A 0
			0xea, // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
			0x01, // EX_AC_AR
			0x00, 0x00,
		}
		return dataIn(cmd, b, alloc)
	case saReadFullStatus: // SPC-4 6.15.5
		for _, r := range t.regs {
			b = append(b, t.fullStatusDescriptor(r)...)
		}
	}
	binary.BigEndian.PutUint32(b[4:], uint32(len(b)-8))
	return dataIn(cmd, b, alloc)
}

// fullStatusDescriptor encodes one READ FULL STATUS descriptor with an
// iSCSI TransportID (SPC-4 7.6.4.6) naming the initiator.
func (t *Target) fullStatusDescriptor(r *registration) []byte {
	d := make([]byte, 24, 64)
	binary.BigEndian.PutUint64(d[0:], r.key)
	if t.isHolder(r) {
		d[12] = 0x01 // R_HOLDER
		d[13] = t.res.scope<<4 | t.res.typ&0x0f
	}
	binary.BigEndian.PutUint16(d[18:], 1) // RELATIVE TARGET PORT IDENTIFIER
	name := append([]byte(r.nx.name), 0)
	for len(name)%4 != 0 || len(name) < 20 {
		name = append(name, 0)
	}
	tid := []byte{0x05, 0x00, byte(len(name) >> 8), byte(len(name))} // iSCSI, format 00b
	tid = append(tid, name...)
	binary.BigEndian.PutUint32(d[20:], uint32(len(tid)))
	return append(d, tid...)
}

// prOut executes PERSISTENT RESERVE OUT (SPC-4 6.16, 5.12.7-5.12.11).
func (t *Target) prOut(nx *nexus, cmd *scsi.Command) scsi.Response {
	cdb := cmd.CDB
	sa := cdb[1] & 0x1f
	scope, typ := cdb[2]>>4, cdb[2]&0x0f
	switch sa {
	case saRegister, saReserve, saRelease, saClear, saPreempt, saRegisterAndIgnoreKey:
	case saPreemptAndAbort:
		if t.tgt() { // commented out of tgt's service action table
			return checkCondition(cmd, ascInvalidFieldInCDB)
		}
	default: // REGISTER AND MOVE, REPLACE LOST RESERVATION: not supported
		return checkCondition(cmd, ascInvalidFieldInCDB)
	}

	// The basic parameter list (SPC-4 6.16.3): exactly 24 bytes, and none
	// of SPEC_I_PT, ALL_TG_PT, APTPL, which REPORT CAPABILITIES disowns.
	plen := binary.BigEndian.Uint32(cdb[5:9])
	if plen != 24 || len(cmd.Data) < 24 {
		if t.tgt() {
			return checkCondition(cmd, ascInvalidFieldInCDB)
		}
		return checkCondition(cmd, ascParamListLengthError)
	}
	p := cmd.Data
	if p[20]&0x0d != 0 {
		if t.tgt() {
			return checkCondition(cmd, ascInvalidFieldInCDB)
		}
		return checkCondition(cmd, ascInvalidFieldInParam)
	}
	resKey := binary.BigEndian.Uint64(p[0:8])
	saKey := binary.BigEndian.Uint64(p[8:16])

	switch sa {
	case saRegister, saRegisterAndIgnoreKey:
		return t.register(nx, cmd, resKey, saKey, sa == saRegisterAndIgnoreKey)
	case saReserve:
		return t.reserve(nx, cmd, resKey, scope, typ)
	case saRelease:
		return t.release(nx, cmd, resKey, scope, typ)
	case saClear:
		return t.clear(nx, cmd, resKey)
	}
	return t.preempt(nx, cmd, resKey, saKey, scope, typ)
}

// register implements REGISTER and REGISTER AND IGNORE EXISTING KEY
// (SPC-4 5.12.7).
func (t *Target) register(nx *nexus, cmd *scsi.Command, resKey, saKey uint64, ignore bool) scsi.Response {
	reg := t.registrationOf(nx)
	if reg == nil {
		if !ignore && resKey != 0 {
			return conflict(cmd)
		}
		if saKey != 0 {
			t.regs = append(t.regs, &registration{nx: nx, key: saKey})
		}
	} else {
		if !ignore && resKey != reg.key {
			return conflict(cmd)
		}
		if saKey != 0 {
			reg.key = saKey
		} else {
			t.unregister(reg)
		}
	}
	// Every REGISTER that is not terminated increments PRgeneration, even
	// one that changes nothing (SPC-4 6.15.2).
	t.gen++
	return good()
}

// unregister removes reg, the issuing nexus's own registration, releasing
// the reservation if reg was its last holder (SPC-4 5.12.11.2.2).
func (t *Target) unregister(reg *registration) {
	wasHolder := t.isHolder(reg)
	t.removeRegistration(reg)
	if !wasHolder {
		return
	}
	if allRegistrants(t.res.typ) && len(t.regs) > 0 {
		// The other registrants still hold it.
		if t.res.holder == reg {
			t.res.holder = t.regs[0]
		}
		return
	}
	typ := t.res.typ
	t.res = nil
	if t.tgt() {
		// tgt's __unregister_and_clean: ua_sense_add_other_it_nexus per
		// remaining registrant (so each of them gets one fewer than every
		// other nexus), for every type, and PRgeneration counted again.
		for _, r := range t.regs {
			t.attentionAllBut(r.nx, ascReservationsReleased)
		}
		t.gen++
		return
	}
	if registrantsOnly(typ) || allRegistrants(typ) {
		for _, r := range t.regs {
			t.attention(r.nx, ascReservationsReleased)
		}
	}
}

func (t *Target) removeRegistration(reg *registration) {
	for i, r := range t.regs {
		if r == reg {
			t.regs = append(t.regs[:i:i], t.regs[i+1:]...)
			return
		}
	}
}

// reserve implements RESERVE (SPC-4 5.12.9).
func (t *Target) reserve(nx *nexus, cmd *scsi.Command, resKey uint64, scope, typ uint8) scsi.Response {
	if !validType(typ) || scope != scopeLU {
		return checkCondition(cmd, ascInvalidFieldInCDB)
	}
	reg := t.registrationOf(nx)
	if reg == nil {
		return conflict(cmd)
	}
	if resKey != reg.key && !t.tgt() { // tgt does not check the key here
		return conflict(cmd)
	}
	if t.res != nil {
		if !t.isHolder(reg) || t.res.typ != typ || t.res.scope != scope {
			return conflict(cmd)
		}
		return good()
	}
	t.res = &reservation{holder: reg, typ: typ, scope: scope}
	return good()
}

// scopeLU is the only reservation scope (SPC-4 6.16.3.3).
const scopeLU = 0

// release implements RELEASE (SPC-4 5.12.11.2).
func (t *Target) release(nx *nexus, cmd *scsi.Command, resKey uint64, scope, typ uint8) scsi.Response {
	reg := t.registrationOf(nx)
	if reg == nil {
		return conflict(cmd)
	}
	if resKey != reg.key && !t.tgt() {
		return conflict(cmd)
	}
	if t.res == nil || !t.isHolder(reg) {
		return good() // nothing this nexus could release
	}
	if resKey != reg.key { // tgt checks the key only now
		return conflict(cmd)
	}
	if t.res.typ != typ || t.res.scope != scope {
		return checkCondition(cmd, ascInvalidRelease)
	}
	old := t.res.typ
	t.res = nil
	if t.tgt() {
		// tgt tells nobody for the registrants-only and all-registrants
		// types, and fans out per registrant for the others.
		if !registrantsOnly(old) && !allRegistrants(old) {
			for _, r := range t.regs {
				if r != reg {
					t.attentionAllBut(r.nx, ascReservationsReleased)
				}
			}
		}
		return good()
	}
	if registrantsOnly(old) || allRegistrants(old) {
		for _, r := range t.regs {
			if r != reg {
				t.attention(r.nx, ascReservationsReleased)
			}
		}
	}
	return good()
}

// clear implements CLEAR (SPC-4 5.12.11.6).
func (t *Target) clear(nx *nexus, cmd *scsi.Command, resKey uint64) scsi.Response {
	reg := t.registrationOf(nx)
	if reg == nil || resKey != reg.key {
		return conflict(cmd)
	}
	for _, r := range t.regs {
		if r != reg {
			t.attention(r.nx, ascReservationsPreempt)
		}
	}
	t.regs = nil
	t.res = nil
	t.gen++
	return good()
}

// preempt implements PREEMPT and PREEMPT AND ABORT (SPC-4 5.12.11.4,
// 5.12.11.5). Commands run to completion one at a time here, so no task is
// ever left to abort and both service actions do the same.
func (t *Target) preempt(nx *nexus, cmd *scsi.Command, resKey, saKey uint64, scope, typ uint8) scsi.Response {
	reg := t.registrationOf(nx)
	if reg == nil || resKey != reg.key {
		return conflict(cmd)
	}
	if saKey != 0 && !t.keyRegistered(saKey) {
		return conflict(cmd)
	}
	var takeOver, removeAll bool
	switch {
	case t.res != nil && allRegistrants(t.res.typ):
		// SERVICE ACTION RESERVATION KEY zero preempts every other
		// registrant and the reservation; non-zero only registrations.
		takeOver, removeAll = saKey == 0, saKey == 0
	case t.res != nil && t.res.holder.key == saKey:
		takeOver = true
	case saKey == 0:
		if !t.tgt() {
			return checkCondition(cmd, ascInvalidFieldInParam)
		}
		if t.res != nil {
			return checkCondition(cmd, ascInvalidFieldInCDB)
		}
		// tgt: no reservation, nothing to remove, still counted below.
	}
	if takeOver && (!validType(typ) || scope != scopeLU) && !t.tgt() {
		return checkCondition(cmd, ascInvalidFieldInCDB)
	}

	changed := false
	if takeOver {
		changed = t.res.typ != typ || t.res.scope != scope
		t.res = &reservation{holder: reg, typ: typ, scope: scope}
	}
	lost := ascRegistrationsPreempt
	if t.tgt() {
		lost = ascReservationsPreempt
	}
	kept := t.regs[:0:0]
	for _, r := range t.regs {
		switch {
		case r == reg:
		case removeAll || r.key == saKey:
			t.attention(r.nx, lost)
			if t.res != nil && t.res.holder == r {
				t.res.holder = reg
			}
			continue
		case changed:
			t.attention(r.nx, ascReservationsReleased)
		}
		kept = append(kept, r)
	}
	t.regs = kept
	t.gen++
	return good()
}

func (t *Target) keyRegistered(key uint64) bool {
	for _, r := range t.regs {
		if r.key == key {
			return true
		}
	}
	return false
}
