package memtarget

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

// Compat selects whose reading of the standard the target follows where
// SPC-4 and Debian's tgt disagree. The differences are listed in the package
// documentation.
type Compat uint8

const (
	// CompatSPC4 follows SPC-4 (the default).
	CompatSPC4 Compat = iota
	// CompatTgt reproduces the visible behaviour of tgt 1.0.85 (usr/spc.c,
	// usr/target.c), quirks included, so a scenario gives the same statuses,
	// keys, sense codes and PRgeneration values on both.
	CompatTgt
)

func (c Compat) String() string {
	switch c {
	case CompatSPC4:
		return "spc4"
	case CompatTgt:
		return "tgt"
	}
	return fmt.Sprintf("Compat(%d)", uint8(c))
}

// Config describes the logical unit. The zero value is a 1 MiB disk of
// 512-byte blocks that follows SPC-4.
type Config struct {
	// BlockSize is the logical block length in bytes (default 512).
	BlockSize uint32
	// Blocks is the number of logical blocks (default 2048).
	Blocks uint64
	// Vendor (8 characters), Product (16), Revision (4) and Serial fill the
	// standard INQUIRY data and VPD pages 0x80 and 0x83. Defaults:
	// "WOLFPACK", "MEMTARGET", "0001", "memtarget0".
	Vendor, Product, Revision, Serial string
	// Compat selects SPC-4 or tgt-compatible behaviour.
	Compat Compat
	// NoPowerOnAttention, when set, starts every new nexus without the
	// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29/00) unit attention
	// that SAM-5 and tgt report on a nexus's first command.
	NoPowerOnAttention bool
}

func (c Config) withDefaults() Config {
	if c.BlockSize == 0 {
		c.BlockSize = 512
	}
	if c.Blocks == 0 {
		c.Blocks = 2048
	}
	if c.Vendor == "" {
		c.Vendor = "WOLFPACK"
	}
	if c.Product == "" {
		c.Product = "MEMTARGET"
	}
	if c.Revision == "" {
		c.Revision = "0001"
	}
	if c.Serial == "" {
		c.Serial = "memtarget0"
	}
	return c
}

// Fault is a transport failure injected on one nexus.
type Fault uint8

const (
	// FaultNone: commands reach the logical unit and their completions come
	// back.
	FaultNone Fault = iota
	// FaultDrop: commands never reach the logical unit; Execute returns
	// ErrTransport (a cut cable, a dead path).
	FaultDrop
	// FaultLoseCompletion: commands are executed but their completions are
	// lost; Execute returns ErrTransport (a timeout after the target acted).
	FaultLoseCompletion
)

// Errors returned by Execute. Neither is a SCSI status: they stand for the
// transport errors a real Device returns.
var (
	ErrTransport = errors.New("memtarget: transport failure (injected)")
	ErrClosed    = errors.New("memtarget: device closed")
)

// Target is one in-memory logical unit with SPC-4 persistent reservations,
// reached through any number of I_T nexuses. It starts no goroutines, reads
// no clock and draws no random numbers: the same commands in the same order
// give the same results. It is safe for concurrent use; commands from all
// nexuses are executed one at a time, in the order they take its lock.
type Target struct {
	mu  sync.Mutex
	cfg Config

	data    map[uint64][]byte // sparse: LBA -> block; absent blocks read as zeros
	nexuses map[string]*nexus
	order   []*nexus // in creation order, for deterministic fan-out

	regs []*registration // in registration order (READ KEYS order)
	res  *reservation    // nil when the LU is not reserved
	gen  uint32          // PRgeneration
}

type nexus struct {
	name  string
	ua    []senseCode // pending unit attentions, oldest first
	fault Fault
}

type registration struct {
	nx  *nexus
	key uint64
}

type reservation struct {
	// holder is the holding registration. For all-registrants types every
	// registrant is a holder and holder is only the one tgt would name.
	holder *registration
	typ    uint8
	scope  uint8
}

// New returns a logical unit described by cfg, with no registrations, no
// reservation and all blocks zero.
func New(cfg Config) *Target {
	return &Target{
		cfg:     cfg.withDefaults(),
		data:    make(map[uint64][]byte),
		nexuses: make(map[string]*nexus),
	}
}

// Config returns the configuration in effect, defaults filled in.
func (t *Target) Config() Config { return t.cfg }

// Nexus returns a path to the logical unit from the initiator port named
// initiatorName (an iSCSI initiator name, say). Calling it again with the
// same name returns a path on the same I_T nexus, as a reconnect with the
// same ISID does: registrations and pending unit attentions carry over. The
// Device it returns is safe for concurrent use.
func (t *Target) Nexus(initiatorName string) scsi.Device {
	t.mu.Lock()
	defer t.mu.Unlock()
	return &device{t: t, nx: t.nexusLocked(initiatorName)}
}

func (t *Target) nexusLocked(name string) *nexus {
	if nx, ok := t.nexuses[name]; ok {
		return nx
	}
	nx := &nexus{name: name}
	if !t.cfg.NoPowerOnAttention {
		nx.ua = append(nx.ua, ascPowerOnReset)
	}
	t.nexuses[name] = nx
	t.order = append(t.order, nx)
	return nx
}

// device is one open path on a nexus.
type device struct {
	t      *Target
	nx     *nexus
	closed bool // guarded by t.mu
}

// Execute runs cmd on the logical unit and returns its status, sense data
// and residual. It returns an error only for an injected fault, a closed
// device, a malformed Command or a context that is already done.
func (d *device) Execute(ctx context.Context, cmd *scsi.Command) (scsi.Response, error) {
	if err := ctx.Err(); err != nil {
		return scsi.Response{}, err
	}
	if cmd == nil || len(cmd.CDB) == 0 {
		return scsi.Response{}, errors.New("memtarget: empty CDB")
	}
	t := d.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if d.closed {
		return scsi.Response{}, ErrClosed
	}
	switch d.nx.fault {
	case FaultDrop:
		return scsi.Response{}, ErrTransport
	case FaultLoseCompletion:
		t.execute(d.nx, cmd)
		return scsi.Response{}, ErrTransport
	}
	return t.execute(d.nx, cmd), nil
}

// Close closes this path. The nexus, its registration and any reservation
// it holds stay, as on a real target.
func (d *device) Close() error {
	d.t.mu.Lock()
	defer d.t.mu.Unlock()
	d.closed = true
	return nil
}

func (d *device) String() string { return "memtarget:" + d.nx.name }

// SetFault injects f on the nexus of initiatorName (creating the nexus if
// needed); FaultNone heals it.
func (t *Target) SetFault(initiatorName string, f Fault) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nexusLocked(initiatorName).fault = f
}

// PowerCycle simulates a power loss of the logical unit: registrations and
// the reservation are lost (APTPL is not supported), PRgeneration returns to
// zero, and every nexus has only a POWER ON, RESET (29/00) unit attention
// pending (unless Config.NoPowerOnAttention). The data survive.
func (t *Target) PowerCycle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.regs = nil
	t.res = nil
	t.gen = 0
	for _, nx := range t.order {
		nx.ua = nil
		if !t.cfg.NoPowerOnAttention {
			nx.ua = append(nx.ua, ascPowerOnReset)
		}
	}
}

// Registration is one registered I_T nexus.
type Registration struct {
	Initiator string
	Key       uint64
}

// Registrations returns the registrations in the order READ KEYS reports
// them.
func (t *Target) Registrations() []Registration {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Registration, 0, len(t.regs))
	for _, r := range t.regs {
		out = append(out, Registration{Initiator: r.nx.name, Key: r.key})
	}
	return out
}

// Reservation types (SPC-4 6.16.3.4, Table 169).
const (
	TypeWriteExclusive                 uint8 = 1
	TypeExclusiveAccess                uint8 = 3
	TypeWriteExclusiveRegistrantsOnly  uint8 = 5
	TypeExclusiveAccessRegistrantsOnly uint8 = 6
	TypeWriteExclusiveAllRegistrants   uint8 = 7
	TypeExclusiveAccessAllRegistrants  uint8 = 8
)

// Reservation describes the persistent reservation.
type Reservation struct {
	// Holder is the initiator of the holding nexus; empty for the
	// all-registrants types, where every registrant is a holder.
	Holder string
	// Key is what READ RESERVATION reports: the holder's key, or zero for
	// the all-registrants types.
	Key   uint64
	Type  uint8
	Scope uint8
}

// Reservation returns the persistent reservation, if there is one.
func (t *Target) Reservation() (Reservation, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.res == nil {
		return Reservation{}, false
	}
	r := Reservation{Type: t.res.typ, Scope: t.res.scope}
	if !allRegistrants(t.res.typ) {
		r.Holder = t.res.holder.nx.name
		r.Key = t.res.holder.key
	}
	return r, true
}

// Generation returns PRgeneration.
func (t *Target) Generation() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gen
}

// UnitAttention is a pending unit attention condition (sense key UNIT
// ATTENTION with this additional sense code).
type UnitAttention struct{ ASC, ASCQ uint8 }

func (u UnitAttention) String() string { return fmt.Sprintf("%02x/%02x", u.ASC, u.ASCQ) }

// PendingAttentions returns the unit attentions queued for the nexus of
// initiatorName, in the order they will be reported.
func (t *Target) PendingAttentions(initiatorName string) []UnitAttention {
	t.mu.Lock()
	defer t.mu.Unlock()
	nx, ok := t.nexuses[initiatorName]
	if !ok {
		return nil
	}
	out := make([]UnitAttention, 0, len(nx.ua))
	for _, c := range nx.ua {
		out = append(out, UnitAttention{c.asc, c.ascq})
	}
	return out
}
