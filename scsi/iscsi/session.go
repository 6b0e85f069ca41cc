package iscsi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

// Errors a Session returns; match them with errors.Is.
var (
	// ErrClosed is a Session used after Close.
	ErrClosed = errors.New("iscsi: session closed")
	// ErrConnectionLost is a command that was in flight when its TCP
	// connection failed.
	ErrConnectionLost = errors.New("iscsi: connection lost")
	// ErrOutcomeUnknown is a command that may or may not have been executed
	// by the target: it was sent, and its completion was lost (connection
	// loss, timeout, abort). Only commands that are not Idempotent end
	// with it; those are retried instead.
	ErrOutcomeUnknown = errors.New("iscsi: command outcome unknown")
	// ErrProtocol is a target that broke RFC 7143.
	ErrProtocol = errors.New("iscsi: target protocol violation")
	// ErrRejected is a PDU the target answered with Reject.
	ErrRejected = errors.New("iscsi: target rejected the PDU")
)

// CommandError is a SCSI command that failed at the transport.
type CommandError struct {
	// Op names the command, e.g. "WRITE(16)".
	Op string
	// Addr is the logical unit's address.
	Addr string
	// OutcomeUnknown reports that the command may have been executed.
	OutcomeUnknown bool
	Err            error
}

func (e *CommandError) Error() string {
	s := "iscsi: " + e.Op + " on " + e.Addr
	if e.OutcomeUnknown {
		s += ": outcome unknown, the command may or may not have been executed"
	}
	return s + ": " + e.Err.Error()
}

func (e *CommandError) Unwrap() error { return e.Err }

// Is matches ErrOutcomeUnknown when the outcome is unknown.
func (e *CommandError) Is(target error) bool {
	return target == ErrOutcomeUnknown && e.OutcomeUnknown
}

// maxResends bounds how often Execute re-sends an idempotent command after
// losing its connection or its data.
const maxResends = 3

// Session is an iSCSI session to one logical unit. It implements
// scsi.Device and, unlike the interface requires, is safe for concurrent
// use: commands from several goroutines are in flight together.
type Session struct {
	cfg  Config
	addr Address

	dialMu sync.Mutex // one login at a time
	mu     sync.Mutex
	c      *conn
	logins uint64
	closed bool
}

var _ scsi.Device = (*Session)(nil)

// Open parses addr (see ParseAddress) and dials it.
func Open(ctx context.Context, addr string, cfg Config) (*Session, error) {
	a, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	return Dial(ctx, a, cfg)
}

// Dial connects and logs in to the logical unit at a. The first login is
// tried once, so a wrong address or a refused login shows at once; later
// reconnects retry until the command's deadline.
func Dial(ctx context.Context, a Address, cfg Config) (*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ValidateName(a.Target); err != nil {
		return nil, fmt.Errorf("iscsi: target name: %w", err)
	}
	if a.Portal == "" {
		return nil, errors.New("iscsi: no portal address")
	}
	s := &Session{cfg: cfg, addr: a}
	if _, err := s.conn(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr returns the logical unit's address.
func (s *Session) Addr() Address { return s.addr }

// Params returns the parameters of the current connection's login (the
// zero Params when there is none).
func (s *Session) Params() Params {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil {
		return Params{}
	}
	return s.c.p
}

// conn returns a live connection, logging in again if the last one died.
func (s *Session) conn(ctx context.Context) (*conn, error) {
	s.mu.Lock()
	c, closed := s.c, s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if c != nil && c.alive() {
		return c, nil
	}
	s.dialMu.Lock()
	defer s.dialMu.Unlock()
	s.mu.Lock()
	c, closed = s.c, s.closed
	id := s.logins + 1
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if c != nil && c.alive() {
		return c, nil
	}
	var prev *ReconnectInfo
	var oldSN uint32
	var oldTSIH uint16
	if c != nil {
		oldTSIH = c.p.TSIH
		c.wg.Wait() // the old connection's goroutines are gone before its successor starts
		c.mu.Lock()
		prev = &ReconnectInfo{OldTSIH: c.p.TSIH, Cause: c.err}
		oldSN = c.cmdSN
		// Connection reinstatement continues the session's CmdSN stream.
		// It is safe only if the target acknowledged every command we
		// numbered; a command lost in flight would leave a hole that
		// stalls the session (tgt waits for the missing CmdSN forever).
		contiguous := c.expCmdSN == c.cmdSN
		c.mu.Unlock()
		if !contiguous {
			prev.OldTSIH = 0
		}
	}
	var nc *conn
	var err error
	if prev != nil && prev.OldTSIH != 0 {
		// Connection reinstatement keeps the session, and so the I_T
		// nexus, if the target has not yet noticed the old connection
		// is gone (a network partition rather than a reset).
		nc, err = s.login(ctx, id, prev.OldTSIH, oldSN)
		var le *LoginError
		if errors.As(err, &le) && le.Class == 2 {
			s.cfg.Logger.Debug("iscsi connection reinstatement refused; starting a new session", "addr", s.addr.String(), "err", err)
			nc, err = s.login(ctx, id, 0, 0)
		}
	} else {
		nc, err = s.login(ctx, id, 0, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("iscsi: log in to %s as %s: %w", s.addr, s.cfg.InitiatorName, err)
	}
	if c != nil {
		c.release() // a parked socket (see conn.kill) has served its purpose
	}
	c = nc
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.kill(ErrClosed)
		c.wg.Wait()
		return nil, ErrClosed
	}
	s.c = c
	s.logins = id
	s.mu.Unlock()
	c.log.Info("iscsi session logged in", "initiator", s.cfg.InitiatorName, "tsih", c.p.TSIH,
		"header_digest", c.p.HeaderDigest, "data_digest", c.p.DataDigest,
		"target_max_recv", c.p.TargetMaxRecvDataSegmentLength, "max_burst", c.p.MaxBurstLength,
		"first_burst", c.p.FirstBurstLength, "immediate_data", c.p.ImmediateData, "initial_r2t", c.p.InitialR2T)
	if prev != nil {
		if prev.OldTSIH == 0 {
			prev.OldTSIH = oldTSIH
		}
		prev.NewTSIH = c.p.TSIH
		prev.SameSession = prev.NewTSIH == prev.OldTSIH
		if !prev.SameSession {
			c.log.Warn("iscsi reconnected with a new session: the target may treat this as a new I_T nexus", "old_tsih", prev.OldTSIH, "new_tsih", prev.NewTSIH)
		}
		if s.cfg.OnReconnect != nil {
			s.dialMu.Unlock()
			s.cfg.OnReconnect(*prev)
			s.dialMu.Lock()
		}
	}
	return c, nil
}

// login dials and logs in once, within LoginTimeout.
func (s *Session) login(ctx context.Context, id uint64, tsih uint16, cmdSN uint32) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LoginTimeout)
	defer cancel()
	nc, err := s.cfg.Dialer(ctx, "tcp", s.addr.Portal)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := newConn(s.cfg, s.addr, nc, id)
	c.reqTSIH, c.cmdSN = tsih, cmdSN
	if d, ok := ctx.Deadline(); ok {
		nc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	err = c.login()
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		nc.Close()
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	c.start()
	return c, nil
}

// temporary reports whether a failed login may succeed if tried again.
func temporary(err error) bool {
	var le *LoginError
	if errors.As(err, &le) {
		return le.Temporary()
	}
	if errors.Is(err, ErrAuth) || errors.Is(err, ErrProtocol) || errors.Is(err, ErrText) || errors.Is(err, ErrClosed) {
		return false
	}
	return true
}

// Execute sends cmd and waits for its completion, cmd.Timeout (or
// Config.Timeout) or ctx, whichever comes first. It reconnects if the
// connection is down; see the package documentation for which commands it
// re-sends after a connection loss. Transport failures are *CommandError.
func (s *Session) Execute(ctx context.Context, cmd *scsi.Command) (scsi.Response, error) {
	op := OpName(cmd.CDB)
	fail := func(unknown bool, err error) (scsi.Response, error) {
		return scsi.Response{}, &CommandError{Op: op, Addr: s.addr.String(), OutcomeUnknown: unknown, Err: err}
	}
	if err := checkCommand(cmd); err != nil {
		return fail(false, err)
	}
	timeout := cmd.Timeout
	if timeout <= 0 {
		timeout = s.cfg.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	idempotent := Idempotent(cmd.CDB)
	backoff := 10 * time.Millisecond
	resends := 0
	var last error
	for {
		c, err := s.conn(ctx)
		if err != nil {
			if last != nil {
				err = fmt.Errorf("%w; before that: %w", err, last)
			}
			if ctx.Err() != nil || !temporary(err) {
				return fail(last != nil && !idempotent && sentOf(last), err)
			}
			s.cfg.Logger.Debug("iscsi reconnect failed, retrying", "addr", s.addr.String(), "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return fail(last != nil && !idempotent && sentOf(last), fmt.Errorf("%w (%w)", ctx.Err(), err))
			case <-t.C:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		resp, err := c.execute(ctx, cmd)
		if err == nil {
			return resp, nil
		}
		sent := sentOf(err)
		if last != nil && sentOf(last) {
			sent = true // an earlier attempt may have reached the target
		}
		switch {
		case ctx.Err() != nil:
			return fail(sent && !idempotent, err)
		case errors.Is(err, ErrRejected):
			return fail(sent && !idempotent, err)
		case !sentOf(err) && (errors.Is(err, ErrConnectionLost) || errors.Is(err, context.DeadlineExceeded)):
			// never left this host: always safe to send again
		case idempotent && resends < maxResends && (errors.Is(err, ErrConnectionLost) || errors.Is(err, ErrDataDigest)):
			resends++
		default:
			return fail(sent && !idempotent, err)
		}
		s.cfg.Logger.Info("iscsi command re-sent", "op", op, "addr", s.addr.String(), "err", err)
		last = err
	}
}

func sentOf(err error) bool {
	var ce *cmdError
	if errors.As(err, &ce) {
		return ce.sent
	}
	return false
}

func checkCommand(cmd *scsi.Command) error {
	if n := len(cmd.CDB); n == 0 || n > 16 {
		return fmt.Errorf("CDB of %d bytes, want 1..16", n)
	}
	if uint64(len(cmd.Data)) > 0xffffffff {
		return errors.New("data buffer over 4 GiB")
	}
	switch cmd.Dir {
	case scsi.DirNone:
		if len(cmd.Data) != 0 {
			return fmt.Errorf("direction none with %d bytes of data", len(cmd.Data))
		}
	case scsi.DirFromDevice, scsi.DirToDevice:
	default:
		return fmt.Errorf("unknown direction %d", cmd.Dir)
	}
	return nil
}

// Ping sends a NOP-Out and waits for the target's NOP-In: a round trip
// that touches no logical unit.
func (s *Session) Ping(ctx context.Context) error {
	c, err := s.conn(ctx)
	if err != nil {
		return err
	}
	if err := c.ping(ctx); err != nil {
		return fmt.Errorf("iscsi: ping %s: %w", s.addr, err)
	}
	return nil
}

// LogicalUnitReset sends the LOGICAL UNIT RESET task management function
// and waits for it. Commands in flight on the session fail with an
// outcome-unknown error. Reservations are not affected (SPC-4 5.12.1).
func (s *Session) LogicalUnitReset(ctx context.Context) error {
	c, err := s.conn(ctx)
	if err != nil {
		return err
	}
	code, err := c.tmf(ctx, tmfLogicalUnitReset, nil)
	if err != nil {
		return fmt.Errorf("iscsi: LOGICAL UNIT RESET on %s: %w", s.addr, err)
	}
	if code != 0 {
		return fmt.Errorf("iscsi: LOGICAL UNIT RESET on %s: %s", s.addr, tmfResponseName(code))
	}
	return nil
}

// Drop closes the current TCP connection without logging out, as a
// network failure would. The next command logs in again. It is for fault
// injection and for callers that know the path is dead.
func (s *Session) Drop() {
	s.mu.Lock()
	c := s.c
	s.mu.Unlock()
	if c != nil {
		c.kill(errors.New("dropped by caller"))
	}
}

// Close logs out and closes the connection. Commands in flight fail with
// ErrClosed. Reservations and registrations stay with the I_T nexus.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	c := s.c
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	var err error
	if !c.alive() {
		c.release()
	}
	if c.alive() {
		c.closing.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), min(5*time.Second, s.cfg.Timeout))
		err = c.logout(ctx)
		cancel()
	}
	c.kill(ErrClosed)
	c.wg.Wait()
	if err != nil && !errors.Is(err, ErrConnectionLost) {
		return fmt.Errorf("iscsi: log out of %s: %w", s.addr, err)
	}
	return nil
}

// Idempotent reports whether a command with this CDB may be sent again
// after its completion was lost without changing the outcome: it reads and
// changes nothing (TEST UNIT READY, INQUIRY, MODE SENSE, READ CAPACITY,
// READ(6/10/12/16), SERVICE ACTION IN(16), PERSISTENT RESERVE IN, REPORT
// LUNS). Writes, PERSISTENT RESERVE OUT, REQUEST SENSE (it clears sense)
// and everything else are not.
func Idempotent(cdb []byte) bool {
	if len(cdb) == 0 {
		return false
	}
	switch cdb[0] {
	case 0x00, 0x12, 0x1a, 0x5a, 0x25, 0x9e, 0x08, 0x28, 0xa8, 0x88, 0x5e, 0xa0:
		return true
	}
	return false
}

var opNames = map[byte]string{
	0x00: "TEST UNIT READY", 0x03: "REQUEST SENSE", 0x08: "READ(6)", 0x0a: "WRITE(6)",
	0x12: "INQUIRY", 0x1a: "MODE SENSE(6)", 0x25: "READ CAPACITY(10)", 0x28: "READ(10)",
	0x2a: "WRITE(10)", 0x35: "SYNCHRONIZE CACHE(10)", 0x5a: "MODE SENSE(10)",
	0x5e: "PERSISTENT RESERVE IN", 0x5f: "PERSISTENT RESERVE OUT", 0x88: "READ(16)",
	0x8a: "WRITE(16)", 0x91: "SYNCHRONIZE CACHE(16)", 0x9e: "SERVICE ACTION IN(16)",
	0xa0: "REPORT LUNS", 0xa8: "READ(12)", 0xaa: "WRITE(12)",
}

// OpName names the command a CDB starts, for errors and logs.
func OpName(cdb []byte) string {
	if len(cdb) == 0 {
		return "empty CDB"
	}
	if n, ok := opNames[cdb[0]]; ok {
		return n
	}
	return fmt.Sprintf("SCSI command %#02x", cdb[0])
}
