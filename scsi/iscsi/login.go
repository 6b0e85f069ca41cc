package iscsi

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Params are the operational parameters a login negotiated (RFC 7143 13).
type Params struct {
	HeaderDigest, DataDigest bool
	// MaxRecvDataSegmentLength is what we declared: the largest data
	// segment the target may send.
	MaxRecvDataSegmentLength int
	// TargetMaxRecvDataSegmentLength is what the target declared: the
	// largest data segment we send (immediate data, Data-Out).
	TargetMaxRecvDataSegmentLength int
	MaxBurstLength                 int
	FirstBurstLength               int
	InitialR2T                     bool
	ImmediateData                  bool
	MaxOutstandingR2T              int
	DataPDUInOrder                 bool
	DataSequenceInOrder            bool
	DefaultTime2Wait               int
	DefaultTime2Retain             int
	ErrorRecoveryLevel             int
	MaxConnections                 int
	TargetAlias                    string
	TargetPortalGroupTag           int
	// TSIH is the target-assigned session handle.
	TSIH uint16
}

// rfcDefaults are the values that hold for keys nobody negotiates.
func rfcDefaults() Params {
	return Params{
		MaxRecvDataSegmentLength:       8192,
		TargetMaxRecvDataSegmentLength: 8192,
		MaxBurstLength:                 262144,
		FirstBurstLength:               65536,
		InitialR2T:                     true,
		ImmediateData:                  true,
		MaxOutstandingR2T:              1,
		DataPDUInOrder:                 true,
		DataSequenceInOrder:            true,
		DefaultTime2Wait:               2,
		DefaultTime2Retain:             20,
		MaxConnections:                 1,
	}
}

// LoginError is a login rejected by the target (RFC 7143 11.13.5).
type LoginError struct {
	Class, Detail uint8
}

var loginDetails = map[uint16]string{
	0x0101: "target moved temporarily", 0x0102: "target moved permanently",
	0x0200: "initiator error", 0x0201: "authentication failure", 0x0202: "authorization failure",
	0x0203: "target not found", 0x0204: "target removed", 0x0205: "unsupported version",
	0x0206: "too many connections", 0x0207: "missing parameter", 0x0208: "can't include in session",
	0x0209: "session type not supported", 0x020a: "session does not exist",
	0x020b: "invalid request during login", 0x0300: "target error", 0x0301: "service unavailable",
	0x0302: "out of resources",
}

func (e *LoginError) Error() string {
	d := loginDetails[uint16(e.Class)<<8|uint16(e.Detail)]
	if d == "" {
		d = "unknown status"
	}
	return fmt.Sprintf("iscsi: login rejected: %s (status class %#02x detail %#02x)", d, e.Class, e.Detail)
}

// Temporary reports whether trying again later may succeed (class 3,
// target error, and redirection, which this initiator does not follow).
func (e *LoginError) Temporary() bool { return e.Class == 3 }

// ErrAuth is a CHAP failure on the initiator's side (bad challenge, target
// failed mutual authentication).
var ErrAuth = errors.New("iscsi: authentication failed")

// login stages.
const (
	stageSecurity    = 0
	stageOperational = 1
	stageFullFeature = 3
)

// loginResp is one (possibly multi-PDU) login response.
type loginResp struct {
	transit  bool
	csg, nsg int
	keys     []KeyValue
}

// login runs the login phase on c.nc; c.rd reads with the login limits.
func (c *conn) login() error {
	cfg := c.cfg
	c.p = rfcDefaults()
	c.p.MaxRecvDataSegmentLength = cfg.MaxRecvDataSegmentLength
	c.loginITT = 1
	if c.cmdSN == 0 {
		c.cmdSN = 1
	}

	auth := "None"
	if cfg.CHAP != nil {
		auth = "CHAP"
	}
	first := []KeyValue{
		{"InitiatorName", cfg.InitiatorName},
		{"TargetName", c.addr.Target},
		{"SessionType", "Normal"},
		{"AuthMethod", auth},
	}
	if cfg.CHAP == nil {
		r, err := c.loginExchange(true, stageSecurity, stageOperational, first)
		if err != nil {
			return fmt.Errorf("security negotiation: %w", err)
		}
		if v, ok := lookup(r.keys, "AuthMethod"); ok && v != "None" {
			return fmt.Errorf("security negotiation: target wants AuthMethod=%s: %w", v, ErrAuth)
		}
		if !r.transit {
			return fmt.Errorf("security negotiation: target requires authentication: %w", ErrAuth)
		}
		c.takeDeclarative(r.keys)
		if r.nsg == stageFullFeature {
			return nil
		}
	} else if err := c.chap(first); err != nil {
		return fmt.Errorf("CHAP: %w", err)
	}
	if err := c.operational(); err != nil {
		return fmt.Errorf("operational negotiation: %w", err)
	}
	return nil
}

// chap runs AuthMethod=CHAP with MD5 (RFC 7143 12.1.3).
func (c *conn) chap(first []KeyValue) error {
	ch := c.cfg.CHAP
	r, err := c.loginExchange(false, stageSecurity, stageOperational, first)
	if err != nil {
		return err
	}
	if v, _ := lookup(r.keys, "AuthMethod"); v != "CHAP" {
		return fmt.Errorf("target answered AuthMethod=%q: %w", v, ErrAuth)
	}
	c.takeDeclarative(r.keys)
	r, err = c.loginExchange(false, stageSecurity, stageOperational, []KeyValue{{"CHAP_A", "5"}})
	if err != nil {
		return err
	}
	if v, _ := lookup(r.keys, "CHAP_A"); v != "5" {
		return fmt.Errorf("target answered CHAP_A=%q, only 5 (MD5) is supported: %w", v, ErrAuth)
	}
	idS, _ := lookup(r.keys, "CHAP_I")
	id, err := strconv.ParseUint(idS, 10, 8)
	if err != nil {
		return fmt.Errorf("bad CHAP_I %q: %w", clipS(idS), ErrAuth)
	}
	chS, _ := lookup(r.keys, "CHAP_C")
	challenge, err := decodeBinary(chS)
	if err != nil || len(challenge) == 0 {
		return fmt.Errorf("bad CHAP_C: %w", ErrAuth)
	}
	answer := []KeyValue{
		{"CHAP_N", ch.User},
		{"CHAP_R", encodeHex(chapResponse(byte(id), ch.Secret, challenge))},
	}
	var myID byte
	var myChallenge []byte
	if ch.TargetSecret != "" {
		var b [17]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		myID, myChallenge = b[0], b[1:]
		if bytes.Equal(myChallenge, challenge) {
			return fmt.Errorf("target challenge equals ours: %w", ErrAuth)
		}
		answer = append(answer, KeyValue{"CHAP_I", strconv.Itoa(int(myID))}, KeyValue{"CHAP_C", encodeHex(myChallenge)})
	}
	r, err = c.loginExchange(true, stageSecurity, stageOperational, answer)
	if err != nil {
		return err
	}
	if ch.TargetSecret != "" {
		n, _ := lookup(r.keys, "CHAP_N")
		rs, _ := lookup(r.keys, "CHAP_R")
		got, err := decodeBinary(rs)
		if err != nil || (ch.TargetUser != "" && n != ch.TargetUser) ||
			!bytes.Equal(got, chapResponse(myID, ch.TargetSecret, myChallenge)) {
			return fmt.Errorf("target failed mutual authentication: %w", ErrAuth)
		}
	}
	if !r.transit {
		return fmt.Errorf("target did not leave the security stage: %w", ErrAuth)
	}
	c.takeDeclarative(r.keys)
	return nil
}

// chapResponse is MD5(id || secret || challenge) (RFC 1994 4.1).
func chapResponse(id byte, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// offers are the operational keys this initiator proposes.
func (c *conn) offers() []KeyValue {
	cfg := c.cfg
	return []KeyValue{
		{"HeaderDigest", cfg.HeaderDigest.offer()},
		{"DataDigest", cfg.DataDigest.offer()},
		{"MaxRecvDataSegmentLength", strconv.Itoa(cfg.MaxRecvDataSegmentLength)},
		{"MaxBurstLength", strconv.Itoa(cfg.MaxBurstLength)},
		{"FirstBurstLength", strconv.Itoa(cfg.FirstBurstLength)},
		{"InitialR2T", "No"},
		{"ImmediateData", "Yes"},
		{"MaxOutstandingR2T", "1"},
		{"DataPDUInOrder", "Yes"},
		{"DataSequenceInOrder", "Yes"},
		{"ErrorRecoveryLevel", "0"},
		{"MaxConnections", "1"},
		{"DefaultTime2Wait", "0"},
		{"DefaultTime2Retain", "0"},
	}
}

// operational runs the operational stage until the target moves to full
// feature phase.
func (c *conn) operational() error {
	offered := c.offers()
	send := offered
	for round := 0; round < 8; round++ {
		r, err := c.loginExchange(true, stageOperational, stageFullFeature, send)
		if err != nil {
			return err
		}
		send = nil
		for _, kv := range r.keys {
			_, ours := lookup(offered, kv.Key)
			ans, err := c.negotiate(kv, ours)
			if err != nil {
				return err
			}
			if ans != nil {
				send = append(send, *ans)
			}
		}
		if r.transit && r.nsg == stageFullFeature && len(send) == 0 {
			return c.checkParams()
		}
		if r.transit && r.nsg == stageFullFeature {
			return fmt.Errorf("target offered keys %v while leaving login: %w", send, ErrProtocol)
		}
	}
	return fmt.Errorf("no agreement after 8 rounds: %w", ErrProtocol)
}

func (c *conn) checkParams() error {
	p := &c.p
	if p.ErrorRecoveryLevel != 0 {
		return fmt.Errorf("ErrorRecoveryLevel=%d, only 0 is supported: %w", p.ErrorRecoveryLevel, ErrProtocol)
	}
	if p.FirstBurstLength > p.MaxBurstLength {
		p.FirstBurstLength = p.MaxBurstLength
	}
	if p.MaxOutstandingR2T < 1 {
		p.MaxOutstandingR2T = 1
	}
	return nil
}

// takeDeclarative records informational keys any stage may carry.
func (c *conn) takeDeclarative(kvs []KeyValue) {
	for _, kv := range kvs {
		switch kv.Key {
		case "TargetAlias":
			c.p.TargetAlias = kv.Value
		case "TargetPortalGroupTag":
			if n, err := strconv.ParseUint(kv.Value, 10, 16); err == nil {
				c.p.TargetPortalGroupTag = int(n)
			}
		case "TSIH": // never sent as a key, but harmless
		}
	}
}

// special values a target may answer with instead of a result.
func special(v string) bool {
	return v == "Reject" || v == "Irrelevant" || v == "NotUnderstood"
}

// negotiate applies one key from the target. ours reports whether we
// offered the key (so v is the result) or the target did (so we answer).
func (c *conn) negotiate(kv KeyValue, ours bool) (*KeyValue, error) {
	p, cfg := &c.p, c.cfg
	bad := func() (*KeyValue, error) {
		return nil, fmt.Errorf("target sent %s=%q: %w", kv.Key, clipS(kv.Value), ErrProtocol)
	}
	answer := func(v string) (*KeyValue, error) {
		if ours {
			return nil, nil
		}
		return &KeyValue{kv.Key, v}, nil
	}
	if special(kv.Value) {
		if !ours {
			return bad()
		}
		return nil, nil // the RFC default stays
	}
	num := func(lo, hi int) (int, bool) {
		n, err := strconv.ParseUint(kv.Value, 10, 32)
		if err != nil || int(n) < lo || int(n) > hi {
			return 0, false
		}
		return int(n), true
	}
	boolean := func() (bool, bool) {
		switch kv.Value {
		case "Yes":
			return true, true
		case "No":
			return false, true
		}
		return false, false
	}
	switch kv.Key {
	case "HeaderDigest", "DataDigest":
		pref := cfg.HeaderDigest
		if kv.Key == "DataDigest" {
			pref = cfg.DataDigest
		}
		var chosen string
		if ours {
			chosen = kv.Value
			if !hasValue(pref.offer(), chosen) {
				return nil, fmt.Errorf("we need %s=%s, target answered %q: %w", kv.Key, pref.offer(), clipS(chosen), ErrProtocol)
			}
		} else {
			for _, v := range strings.Split(pref.offer(), ",") {
				if hasValue(kv.Value, v) {
					chosen = v
					break
				}
			}
			if chosen == "" {
				return nil, fmt.Errorf("target offers %s=%q, we need %s: %w", kv.Key, clipS(kv.Value), pref.offer(), ErrProtocol)
			}
		}
		on := chosen == "CRC32C"
		if kv.Key == "HeaderDigest" {
			p.HeaderDigest = on
		} else {
			p.DataDigest = on
		}
		return answer(chosen)
	case "MaxRecvDataSegmentLength": // declarative: the target's receive limit
		n, ok := num(512, MaxDataSegmentHardLimit)
		if !ok {
			return bad()
		}
		p.TargetMaxRecvDataSegmentLength = n
		return nil, nil
	case "MaxBurstLength", "FirstBurstLength":
		n, ok := num(512, MaxDataSegmentHardLimit)
		if !ok {
			return bad()
		}
		mine := cfg.MaxBurstLength
		dst := &p.MaxBurstLength
		if kv.Key == "FirstBurstLength" {
			mine, dst = cfg.FirstBurstLength, &p.FirstBurstLength
		}
		*dst = min(n, mine)
		return answer(strconv.Itoa(*dst))
	case "MaxOutstandingR2T", "ErrorRecoveryLevel", "MaxConnections", "DefaultTime2Retain":
		lo, hi := 1, 65535
		switch kv.Key {
		case "ErrorRecoveryLevel":
			lo, hi = 0, 2
		case "DefaultTime2Retain":
			lo, hi = 0, 3600
		}
		n, ok := num(lo, hi)
		if !ok {
			return bad()
		}
		switch kv.Key {
		case "MaxOutstandingR2T":
			p.MaxOutstandingR2T = min(n, 1)
			return answer(strconv.Itoa(p.MaxOutstandingR2T))
		case "ErrorRecoveryLevel":
			p.ErrorRecoveryLevel = min(n, 0)
			return answer("0")
		case "MaxConnections":
			p.MaxConnections = min(n, 1)
			return answer("1")
		default:
			p.DefaultTime2Retain = min(n, 0)
			return answer("0")
		}
	case "DefaultTime2Wait":
		n, ok := num(0, 3600)
		if !ok {
			return bad()
		}
		p.DefaultTime2Wait = n // max(0, n)
		return answer(strconv.Itoa(n))
	case "InitialR2T", "DataPDUInOrder", "DataSequenceInOrder":
		b, ok := boolean()
		if !ok {
			return bad()
		}
		// OR: ours are No, Yes, Yes.
		switch kv.Key {
		case "InitialR2T":
			p.InitialR2T = b
		case "DataPDUInOrder":
			if !b && ours {
				return bad() // OR with our Yes cannot be No
			}
			p.DataPDUInOrder = true
		default:
			if !b && ours {
				return bad()
			}
			p.DataSequenceInOrder = true
		}
		switch kv.Key {
		case "InitialR2T":
			return answer(yesNo(b))
		default:
			return answer("Yes")
		}
	case "ImmediateData":
		b, ok := boolean()
		if !ok {
			return bad()
		}
		p.ImmediateData = b // AND with our Yes
		return answer(yesNo(b))
	case "TargetAlias", "TargetPortalGroupTag", "TargetAddress":
		c.takeDeclarative([]KeyValue{kv})
		return nil, nil
	case "IFMarker", "OFMarker":
		return answer("No")
	}
	if ours {
		return nil, nil
	}
	return &KeyValue{kv.Key, "NotUnderstood"}, nil
}

// loginExchange sends one login request (and continuation requests while
// the target's response has the C bit) and returns the response.
func (c *conn) loginExchange(transit bool, csg, nsg int, kvs []KeyValue) (loginResp, error) {
	data := AppendText(nil, kvs)
	if len(data) > LoginMaxDataSegment {
		return loginResp{}, fmt.Errorf("login request of %d bytes exceeds %d", len(data), LoginMaxDataSegment)
	}
	var text []byte
	sendT := transit
	for {
		var p PDU
		h := &p.Header
		h.SetOpcode(OpLoginReq, true)
		h[1] = byte(csg<<2) & 0x0c
		if sendT {
			h[1] |= 0x80 | byte(nsg)&0x03
		}
		copy(h[8:14], c.cfg.ISID[:])
		// TSIH 0 asks for a new session (reinstating ours, if the target
		// still has it); our old TSIH asks for connection reinstatement.
		h.SetU16(14, c.reqTSIH)
		h.SetITT(c.loginITT)
		h.SetU16(20, 0) // CID
		h.SetU32(offCmdSN, c.cmdSN)
		h.SetU32(offExpStatSN, c.expStatSN)
		p.Data = data
		if err := c.writePDU(&p, nil); err != nil {
			return loginResp{}, err
		}
		q, err := c.rd.Read()
		if err != nil {
			return loginResp{}, err
		}
		qh := &q.Header
		if qh.Opcode() != OpLoginResp {
			if qh.Opcode() == OpReject {
				return loginResp{}, fmt.Errorf("target rejected the login request (reason %#02x): %w", qh[2], ErrProtocol)
			}
			return loginResp{}, fmt.Errorf("got %s during login: %w", qh.Opcode(), ErrProtocol)
		}
		if qh.ITT() != c.loginITT {
			return loginResp{}, fmt.Errorf("login response for ITT %#x, want %#x: %w", qh.ITT(), c.loginITT, ErrProtocol)
		}
		if cls, det := qh[36], qh[37]; cls != 0 {
			return loginResp{}, &LoginError{Class: cls, Detail: det}
		}
		if qh[3] != 0 {
			return loginResp{}, fmt.Errorf("target chose version %d: %w", qh[3], ErrProtocol)
		}
		c.expStatSN = qh.U32(offStatSN) + 1
		c.expCmdSN, c.maxCmdSN = qh.U32(offExpCmdSN), qh.U32(offMaxCmdSN)
		c.log.Debug("iscsi login response", "stage", csg, "statsn", qh.U32(offStatSN), "expcmdsn", c.expCmdSN, "maxcmdsn", c.maxCmdSN, "sent_cmdsn", c.cmdSN, "tsih", qh.U16(14))
		c.p.TSIH = qh.U16(14)
		if len(text)+len(q.Data) > MaxTextLen {
			return loginResp{}, fmt.Errorf("login response text over %d bytes: %w", MaxTextLen, ErrProtocol)
		}
		text = append(text, q.Data...)
		r := loginResp{transit: qh[1]&0x80 != 0, csg: int(qh[1]>>2) & 3, nsg: int(qh[1]) & 3}
		if r.csg != csg {
			return loginResp{}, fmt.Errorf("login response in stage %d, want %d: %w", r.csg, csg, ErrProtocol)
		}
		if qh[1]&0x40 != 0 { // C: more text follows; ask for it
			data = nil
			sendT = false
			continue
		}
		if r.transit && (!transit || r.nsg != nsg) {
			return loginResp{}, fmt.Errorf("target moved to stage %d, asked for %d: %w", r.nsg, nsg, ErrProtocol)
		}
		r.keys, err = ParseText(text)
		if err != nil {
			return loginResp{}, fmt.Errorf("login response: %w", err)
		}
		return r, nil
	}
}
