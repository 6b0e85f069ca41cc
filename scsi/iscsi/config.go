package iscsi

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultPort is the iSCSI well-known TCP port.
const DefaultPort = 3260

// Address names one logical unit on one target portal.
type Address struct {
	// Portal is host:port.
	Portal string
	// Target is the iSCSI target name (iqn., eui. or naa.).
	Target string
	// LUN is the logical unit number (0..16383).
	LUN uint16
}

// String returns the address in the form ParseAddress accepts.
func (a Address) String() string {
	return fmt.Sprintf("iscsi://%s/%s/%d", a.Portal, a.Target, a.LUN)
}

// ParseAddress parses iscsi://host[:port]/target-name/lun, the form QEMU
// and libiscsi use. The port defaults to 3260; an IPv6 host is written in
// brackets. Credentials in the address are rejected: CHAP secrets belong
// in Config, not on command lines.
func ParseAddress(s string) (Address, error) {
	var a Address
	fail := func(format string, args ...any) (Address, error) {
		return Address{}, fmt.Errorf("iscsi: address %q: %s (want iscsi://host[:port]/iqn.yyyy-mm.domain:name/lun)", s, fmt.Sprintf(format, args...))
	}
	if rest, ok := strings.CutPrefix(s, "iscsi://"); ok {
		if auth, _, _ := strings.Cut(rest, "/"); strings.Contains(auth, "@") {
			return fail("credentials in the address are not supported; set Config.CHAP")
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return fail("%v", err)
	}
	if u.Scheme != "iscsi" {
		return fail("scheme %q is not iscsi", u.Scheme)
	}
	if u.User != nil {
		return fail("credentials in the address are not supported; set Config.CHAP")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fail("unexpected query or fragment")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return fail("no host")
	}
	if port == "" {
		port = strconv.Itoa(DefaultPort)
	} else if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fail("bad port %q", port)
	}
	a.Portal = net.JoinHostPort(host, port)
	path := strings.TrimPrefix(u.Path, "/")
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return fail("no LUN")
	}
	a.Target = path[:i]
	if err := ValidateName(a.Target); err != nil {
		return fail("%v", err)
	}
	lun, err := strconv.ParseUint(path[i+1:], 10, 16)
	if err != nil || lun > 16383 {
		return fail("LUN %q is not a number in 0..16383", path[i+1:])
	}
	a.LUN = uint16(lun)
	return a, nil
}

// ValidateName checks an iSCSI name (RFC 7143 4.2.7): iqn., eui. or naa.
// format, at most 223 bytes, lowercase letters, digits, '.', '-' and ':'.
func ValidateName(name string) error {
	if name == "" {
		return errors.New("empty iSCSI name")
	}
	if len(name) > 223 {
		return fmt.Errorf("iSCSI name is %d bytes, limit 223", len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':') {
			return fmt.Errorf("iSCSI name %q: character %q not allowed (lowercase letters, digits, '.', '-', ':')", name, c)
		}
	}
	switch {
	case strings.HasPrefix(name, "iqn."):
		// iqn.yyyy-mm.reversed.domain[:identifier]
		if len(name) < 12 || name[8] != '-' || name[11] != '.' || !digits(name[4:8]) || !digits(name[9:11]) {
			return fmt.Errorf("iSCSI name %q: want iqn.yyyy-mm.reversed.domain[:identifier]", name)
		}
	case strings.HasPrefix(name, "eui."):
		if len(name) != 20 {
			return fmt.Errorf("iSCSI name %q: eui. takes 16 hex digits", name)
		}
	case strings.HasPrefix(name, "naa."):
		if n := len(name) - 4; n != 16 && n != 32 {
			return fmt.Errorf("iSCSI name %q: naa. takes 16 or 32 hex digits", name)
		}
	default:
		return fmt.Errorf("iSCSI name %q: want an iqn., eui. or naa. name", name)
	}
	return nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Digest is a header or data digest preference.
type Digest uint8

const (
	// DigestNone offers no digest.
	DigestNone Digest = iota
	// DigestCRC32C offers CRC32C and accepts None if the target refuses.
	DigestCRC32C
	// DigestCRC32COnly requires CRC32C; login fails if the target refuses.
	DigestCRC32COnly
)

func (d Digest) offer() string {
	switch d {
	case DigestCRC32C:
		return "CRC32C,None"
	case DigestCRC32COnly:
		return "CRC32C"
	}
	return "None"
}

// CHAP holds CHAP credentials (RFC 7143 12.1.3, RFC 1994 with MD5).
type CHAP struct {
	// User and Secret authenticate the initiator to the target.
	User, Secret string
	// TargetUser and TargetSecret, when TargetSecret is set, make the
	// authentication mutual: the target must prove it knows TargetSecret.
	TargetUser, TargetSecret string
}

// Config configures a Session. Only InitiatorName is required.
type Config struct {
	// InitiatorName is this initiator's iSCSI name; the target keys the
	// I_T nexus (and so the persistent reservation registrations) on it
	// and the ISID.
	InitiatorName string
	// ISID is the initiator session ID. The zero value means
	// DefaultISID(InitiatorName), so that a restarted process gets the same
	// I_T nexus back.
	ISID [6]byte
	// CHAP, if not nil, authenticates with CHAP; nil uses AuthMethod=None.
	CHAP *CHAP
	// HeaderDigest and DataDigest are the digest preferences.
	HeaderDigest, DataDigest Digest
	// Timeout is the per-command timeout when Command.Timeout is zero;
	// zero means scsi.DefaultTimeout.
	Timeout time.Duration
	// LoginTimeout bounds one connect-and-login; zero means 10 s.
	LoginTimeout time.Duration
	// KeepAlive, if positive, sends a NOP-Out ping after that long without
	// traffic and drops the connection if its NOP-In does not come back
	// within another KeepAlive.
	KeepAlive time.Duration
	// MaxRecvDataSegmentLength is declared to the target: the largest data
	// segment it may send us. Zero means 256 KiB; at most
	// MaxDataSegmentHardLimit.
	MaxRecvDataSegmentLength int
	// MaxBurstLength and FirstBurstLength are offered to the target (which
	// may lower them). Zero means 16 MiB - 1 KiB and 256 KiB.
	MaxBurstLength, FirstBurstLength int
	// OnReconnect, if not nil, is called after every login that replaced
	// a failed connection, before the command that triggered it is sent.
	// It must not block for long; it may call Execute.
	OnReconnect func(ReconnectInfo)
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
	// Dialer opens the TCP connection; nil uses a net.Dialer. Tests inject
	// faults here.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ReconnectInfo describes a login that replaced a failed connection.
type ReconnectInfo struct {
	// OldTSIH and NewTSIH are the target's session handles before and
	// after.
	OldTSIH, NewTSIH uint16
	// SameSession reports connection reinstatement (RFC 7143 6.3.4): the
	// target still had the session, so the I_T nexus is unchanged. When
	// false the target started a new session (session reinstatement). A
	// target that follows SPC-4 keeps the registrations of the initiator
	// port (name + ISID) anyway; tgt does not: it binds registrations to
	// the session handle, so after a new session the registrations made
	// through the old one no longer let this initiator through (the key
	// still shows in READ KEYS) and the caller must decide whether to
	// register again.
	SameSession bool
	// Cause is why the previous connection ended.
	Cause error
}

// DefaultISID derives an ISID from the initiator name: type 11b (random
// format, RFC 7143 11.12.5) with the B, C and D fields from SHA-256 of the
// name, so the same name always gets the same ISID.
func DefaultISID(initiatorName string) [6]byte {
	h := sha256.Sum256([]byte(initiatorName))
	return [6]byte{0xc0, h[0], h[1], h[2], h[3], h[4]}
}

const (
	defaultMaxRecv  = 256 << 10
	defaultMaxBurst = 16<<20 - 1024
	defaultFirst    = 256 << 10
)

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if err := ValidateName(c.InitiatorName); err != nil {
		return c, fmt.Errorf("iscsi: initiator name: %w", err)
	}
	if c.ISID == [6]byte{} {
		c.ISID = DefaultISID(c.InitiatorName)
	}
	if c.CHAP != nil {
		if c.CHAP.User == "" || c.CHAP.Secret == "" {
			return c, errors.New("iscsi: CHAP needs User and Secret")
		}
		if c.CHAP.TargetSecret != "" && c.CHAP.TargetSecret == c.CHAP.Secret {
			return c, errors.New("iscsi: mutual CHAP needs a target secret different from the initiator's")
		}
	}
	if c.HeaderDigest > DigestCRC32COnly || c.DataDigest > DigestCRC32COnly {
		return c, errors.New("iscsi: unknown digest preference")
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.LoginTimeout <= 0 {
		c.LoginTimeout = 10 * time.Second
	}
	if c.MaxRecvDataSegmentLength <= 0 {
		c.MaxRecvDataSegmentLength = defaultMaxRecv
	}
	if c.MaxRecvDataSegmentLength < 512 || c.MaxRecvDataSegmentLength > MaxDataSegmentHardLimit {
		return c, fmt.Errorf("iscsi: MaxRecvDataSegmentLength %d outside 512..%d", c.MaxRecvDataSegmentLength, MaxDataSegmentHardLimit)
	}
	if c.MaxBurstLength <= 0 {
		c.MaxBurstLength = defaultMaxBurst
	}
	if c.FirstBurstLength <= 0 {
		c.FirstBurstLength = defaultFirst
	}
	if c.MaxBurstLength < 512 || c.MaxBurstLength > MaxDataSegmentHardLimit {
		return c, fmt.Errorf("iscsi: MaxBurstLength %d outside 512..%d", c.MaxBurstLength, MaxDataSegmentHardLimit)
	}
	if c.FirstBurstLength < 512 || c.FirstBurstLength > c.MaxBurstLength {
		return c, fmt.Errorf("iscsi: FirstBurstLength %d outside 512..MaxBurstLength", c.FirstBurstLength)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Dialer == nil {
		var d net.Dialer
		c.Dialer = d.DialContext
	}
	return c, nil
}

// encodeLUN returns the 8-byte LUN field for lun: peripheral device
// addressing below 256, flat space addressing above (SAM-5 4.7).
func encodeLUN(lun uint16) uint64 {
	if lun < 256 {
		return uint64(lun) << 48
	}
	return uint64(0x4000|lun&0x3fff) << 48
}
