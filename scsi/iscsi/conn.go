package iscsi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

// Task management function codes (RFC 7143 11.5.1).
const (
	tmfAbortTask        = 1
	tmfLogicalUnitReset = 5
)

var tmfResponses = map[uint8]string{
	0: "function complete", 1: "task does not exist", 2: "LUN does not exist",
	3: "task still allegiant", 4: "task allegiance reassignment not supported",
	5: "task management function not supported", 6: "function authorization failed",
	255: "function rejected",
}

func tmfResponseName(r uint8) string {
	if n, ok := tmfResponses[r]; ok {
		return n
	}
	return fmt.Sprintf("response %d", r)
}

type taskKind uint8

const (
	kindSCSI taskKind = iota
	kindTMF
	kindNOP
	kindLogout
)

// r2tReq is one R2T handed from the reader to the command's goroutine.
type r2tReq struct {
	ttt, off, n uint32
}

// task is one outstanding ITT. Fields below "reader state" and the result
// fields are guarded by conn.mu; done is closed once the result is final.
type task struct {
	itt   uint32
	kind  taskKind
	cmdSN uint32
	dir   scsi.Direction
	data  []byte
	r2t   chan r2tReq
	done  chan struct{}

	// guarded by conn.mu
	finished   bool
	sent       bool
	writing    bool // the command PDU is being written; write() settles sent
	nextDataSN uint32
	nextR2TSN  uint32
	received   int
	dataErr    error
	resp       scsi.Response
	err        error
	code       uint8 // TMF / Logout response
}

// cmdError is why a task failed at the transport. sent reports whether
// the command PDU may have reached the target.
type cmdError struct {
	sent  bool
	cause error
}

func (e *cmdError) Error() string {
	if e.sent {
		return "after the command was sent: " + e.cause.Error()
	}
	return "before the command was sent: " + e.cause.Error()
}

func (e *cmdError) Unwrap() error { return e.cause }

// conn is one TCP connection and the iSCSI session logged in on it.
type conn struct {
	cfg  Config
	addr Address
	log  *slog.Logger
	lun  uint64
	nc   net.Conn
	rd   *Reader
	tx   Codec
	p    Params
	id   uint64 // login generation, for logs

	loginITT uint32
	reqTSIH  uint16 // TSIH asked for at login: 0 or the previous session's

	wmu   sync.Mutex // one PDU at a time on nc
	cmdMu sync.Mutex // CmdSN order equals wire order for non-immediate commands

	mu        sync.Mutex
	cmdSN     uint32
	expCmdSN  uint32
	maxCmdSN  uint32
	expStatSN uint32
	window    chan struct{} // closed and replaced when the window moves
	tasks     map[uint32]*task
	nextITT   uint32
	err       error
	done      chan struct{}

	lastRecv atomic.Int64
	closing  atomic.Bool // a logout is under way: the target hanging up is expected
	nopq     chan PDU
	wg       sync.WaitGroup
}

func newConn(cfg Config, addr Address, nc net.Conn, id uint64) *conn {
	return &conn{
		cfg:    cfg,
		addr:   addr,
		log:    cfg.Logger.With("portal", addr.Portal, "target", addr.Target, "conn", id),
		lun:    encodeLUN(addr.LUN),
		nc:     nc,
		rd:     NewReader(nc, Codec{MaxDataSegment: LoginMaxDataSegment}),
		id:     id,
		window: make(chan struct{}),
		tasks:  map[uint32]*task{},
		done:   make(chan struct{}),
		nopq:   make(chan PDU, 8),
	}
}

// start enters full feature phase: digests on, reader and helpers running.
func (c *conn) start() {
	c.tx = Codec{HeaderDigest: c.p.HeaderDigest, DataDigest: c.p.DataDigest}
	c.rd.Codec = Codec{HeaderDigest: c.p.HeaderDigest, DataDigest: c.p.DataDigest, MaxDataSegment: c.p.MaxRecvDataSegmentLength}
	c.nextITT = c.loginITT
	c.lastRecv.Store(time.Now().UnixNano())
	c.wg.Add(2)
	go c.readLoop()
	go c.nopLoop()
	if c.cfg.KeepAlive > 0 {
		c.wg.Add(1)
		go c.keepAlive()
	}
}

func (c *conn) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// kill ends the connection once: every task fails with why.
func (c *conn) kill(why error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = why
	cause := why
	if !errors.Is(why, ErrClosed) {
		cause = fmt.Errorf("%w: %w", ErrConnectionLost, why)
	}
	for itt, t := range c.tasks {
		delete(c.tasks, itt)
		if t.writing {
			continue // write() finishes it once it knows whether anything left
		}
		c.finishLocked(t, scsi.Response{}, &cmdError{sent: t.sent, cause: cause})
	}
	contiguous := c.expCmdSN == c.cmdSN
	close(c.done)
	c.mu.Unlock()
	switch {
	case errors.Is(why, ErrClosed) || c.closing.Load():
		c.nc.Close()
	case contiguous:
		// Park the socket: stop every read and write on it, but keep it
		// open until the next login (release). The target acknowledged
		// every command, so nothing that could still reach it matters;
		// and as long as the socket exists our kernel acknowledges what
		// the target retransmits when a partition heals instead of
		// answering it with an RST, on which tgt would free the session
		// before the login can reinstate the connection in it.
		c.nc.SetDeadline(time.Unix(1, 0))
	default:
		c.release()
	}
	if errors.Is(why, ErrClosed) || c.closing.Load() {
		c.log.Debug("iscsi connection closed", "why", why)
	} else {
		c.log.Warn("iscsi connection lost", "err", why)
	}
}

func (c *conn) finishLocked(t *task, resp scsi.Response, err error) {
	if t.finished {
		return
	}
	t.finished = true
	t.resp, t.err = resp, err
	delete(c.tasks, t.itt)
	close(t.done)
}

// writeError is a failed write; n bytes made it into the socket.
type writeError struct {
	n   int64
	err error
}

func (e *writeError) Error() string { return fmt.Sprintf("write (%d bytes sent): %v", e.n, e.err) }
func (e *writeError) Unwrap() error { return e.err }

// writePDU writes p whole. The write deadline is the earlier of the
// context's and the session timeout from now. A failed write leaves the
// stream unusable; the caller kills the connection.
func (c *conn) writePDU(p *PDU, ctx context.Context) error {
	hdr, err := c.tx.header(p)
	if err != nil {
		return err
	}
	bufs := net.Buffers{hdr}
	if n := len(p.Data); n > 0 {
		bufs = append(bufs, p.Data)
		var tail [8]byte
		pad := pad4(n)
		t := tail[:pad]
		if c.tx.DataDigest {
			t = binary.LittleEndian.AppendUint32(t, CRC32C(p.Data, tail[:pad]))
		}
		if len(t) > 0 {
			bufs = append(bufs, t)
		}
	}
	deadline := time.Now().Add(c.cfg.Timeout)
	if ctx != nil {
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(deadline)
	n, err := bufs.WriteTo(c.nc)
	if err != nil {
		return &writeError{n: n, err: err}
	}
	return nil
}

// allocITTLocked returns a free ITT (never the reserved value).
func (c *conn) allocITTLocked() uint32 {
	for {
		c.nextITT++
		if c.nextITT == ReservedTag {
			continue
		}
		if _, busy := c.tasks[c.nextITT]; !busy {
			return c.nextITT
		}
	}
}

// sendCommand waits for the CmdSN window, numbers t and writes p. An error
// means t was never registered and nothing was sent; after success every
// outcome arrives through t.done.
func (c *conn) sendCommand(ctx context.Context, t *task, p *PDU) error {
	c.cmdMu.Lock()
	defer c.cmdMu.Unlock()
	for {
		c.mu.Lock()
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return &cmdError{cause: fmt.Errorf("%w: %w", ErrConnectionLost, err)}
		}
		if !snLess(c.maxCmdSN, c.cmdSN) { // CmdSN <= MaxCmdSN: window open
			break
		}
		w := c.window
		c.mu.Unlock()
		select {
		case <-w:
		case <-c.done:
		case <-ctx.Done():
			return &cmdError{cause: fmt.Errorf("waiting for the target's command window (MaxCmdSN): %w", ctx.Err())}
		}
	}
	t.itt = c.allocITTLocked()
	t.cmdSN = c.cmdSN
	c.cmdSN++
	p.Header.SetITT(t.itt)
	p.Header.SetU32(offCmdSN, t.cmdSN)
	p.Header.SetU32(offExpStatSN, c.expStatSN)
	t.sent = true
	t.writing = true
	c.tasks[t.itt] = t
	c.mu.Unlock()
	c.write(ctx, t, p)
	return nil
}

// sendImmediate numbers and writes an immediate PDU for t (NOP-Out, TMF,
// Logout): it carries the next CmdSN without using it up, and bypasses the
// window.
func (c *conn) sendImmediate(ctx context.Context, t *task, p *PDU) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return &cmdError{cause: fmt.Errorf("%w: %w", ErrConnectionLost, err)}
	}
	t.itt = c.allocITTLocked()
	t.cmdSN = c.cmdSN
	t.sent = true
	p.Header.SetITT(t.itt)
	p.Header.SetU32(offCmdSN, c.cmdSN)
	p.Header.SetU32(offExpStatSN, c.expStatSN)
	t.writing = true
	c.tasks[t.itt] = t
	c.mu.Unlock()
	c.write(ctx, t, p)
	return nil
}

// write writes a PDU belonging to t (nil for none); on failure the
// connection dies. For a command PDU (t.writing) it settles whether the
// command may have left and finishes t if the connection died meanwhile.
func (c *conn) write(ctx context.Context, t *task, p *PDU) {
	err := c.writePDU(p, ctx)
	if t == nil || !t.writing {
		if err != nil {
			c.kill(fmt.Errorf("send %s: %w", p.Header.Opcode(), err))
		}
		return
	}
	c.mu.Lock()
	t.writing = false
	var we *writeError
	if err != nil && errors.As(err, &we) && we.n == 0 {
		t.sent = false
		// Nothing left: give the CmdSN back so the stream the target saw
		// has no hole (sendCommand still holds cmdMu, nobody numbered
		// after it).
		if p.Header.Opcode() == OpSCSICommand && !p.Header.Immediate() && t.cmdSN+1 == c.cmdSN {
			c.cmdSN--
		}
	}
	c.mu.Unlock()
	if err != nil {
		c.kill(fmt.Errorf("send %s: %w", p.Header.Opcode(), err))
	}
	c.mu.Lock()
	if c.err != nil && !t.finished {
		cause := c.err
		if !errors.Is(cause, ErrClosed) {
			cause = fmt.Errorf("%w: %w", ErrConnectionLost, cause)
		}
		c.finishLocked(t, scsi.Response{}, &cmdError{sent: t.sent, cause: cause})
	}
	c.mu.Unlock()
}

// wait waits for t; on ctx expiry it abandons t (the reader drops whatever
// still arrives for it) and, for SCSI commands, aborts it at the target.
func (c *conn) wait(ctx context.Context, t *task) error {
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
	}
	c.mu.Lock()
	if t.finished {
		c.mu.Unlock()
		return nil
	}
	c.finishLocked(t, scsi.Response{}, &cmdError{sent: true, cause: ctx.Err()})
	c.mu.Unlock()
	if t.kind == kindSCSI {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.abort(t)
		}()
	}
	return nil
}

// abort sends ABORT TASK for an abandoned command. If the target does not
// confirm, the connection is dropped: at ErrorRecoveryLevel 0 that is the
// only way left to get rid of the task.
func (c *conn) abort(t *task) {
	d := min(5*time.Second, c.cfg.Timeout)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	code, err := c.tmf(ctx, tmfAbortTask, t)
	switch {
	case err != nil:
		c.kill(fmt.Errorf("abort task %#x: %w", t.itt, err))
	case code != 0 && code != 1:
		c.kill(fmt.Errorf("abort task %#x: %s", t.itt, tmfResponseName(code)))
	default:
		c.log.Info("iscsi task aborted", "itt", t.itt, "response", tmfResponseName(code))
	}
}

// tmf runs a task management function; ref names the task for ABORT TASK.
func (c *conn) tmf(ctx context.Context, fn uint8, ref *task) (uint8, error) {
	t := &task{kind: kindTMF, done: make(chan struct{})}
	var p PDU
	h := &p.Header
	h.SetOpcode(OpTaskMgmtReq, true)
	h[1] = 0x80 | fn
	h.SetLUN(c.lun)
	h.SetU32(offTTT, ReservedTag) // RTT
	if ref != nil {
		h.SetU32(offTTT, ref.itt)
		h.SetU32(offMaxCmdSN, ref.cmdSN) // RefCmdSN
	}
	var affected []*task
	if fn == tmfLogicalUnitReset {
		c.mu.Lock()
		for _, x := range c.tasks {
			if x.kind == kindSCSI {
				affected = append(affected, x)
			}
		}
		c.mu.Unlock()
	}
	if err := c.sendImmediate(ctx, t, &p); err != nil {
		return 0, err
	}
	c.wait(ctx, t)
	if t.err != nil {
		return 0, t.err
	}
	if fn == tmfLogicalUnitReset && t.code == 0 {
		// The target has terminated every task of the LU; any that got no
		// response will not get one.
		c.mu.Lock()
		for _, x := range affected {
			c.finishLocked(x, scsi.Response{}, &cmdError{sent: true, cause: errors.New("iscsi: task terminated by LOGICAL UNIT RESET")})
		}
		c.mu.Unlock()
	}
	return t.code, nil
}

// ping sends a NOP-Out and waits for its NOP-In.
func (c *conn) ping(ctx context.Context) error {
	t := &task{kind: kindNOP, done: make(chan struct{})}
	var p PDU
	h := &p.Header
	h.SetOpcode(OpNOPOut, true)
	h[1] = 0x80
	h.SetLUN(c.lun)
	h.SetU32(offTTT, ReservedTag)
	if err := c.sendImmediate(ctx, t, &p); err != nil {
		return err
	}
	c.wait(ctx, t)
	return t.err
}

// logout closes the session (reason 0) and waits for the response.
func (c *conn) logout(ctx context.Context) error {
	t := &task{kind: kindLogout, done: make(chan struct{})}
	var p PDU
	h := &p.Header
	h.SetOpcode(OpLogoutReq, true)
	h[1] = 0x80 // reason 0: close the session
	if err := c.sendImmediate(ctx, t, &p); err != nil {
		return err
	}
	c.wait(ctx, t)
	if t.err != nil {
		return t.err
	}
	if t.code != 0 {
		return fmt.Errorf("iscsi: logout response %d", t.code)
	}
	return nil
}

// execute runs one SCSI command on this connection.
func (c *conn) execute(ctx context.Context, cmd *scsi.Command) (scsi.Response, error) {
	t := &task{kind: kindSCSI, dir: cmd.Dir, data: cmd.Data, done: make(chan struct{})}
	var p PDU
	h := &p.Header
	h.SetOpcode(OpSCSICommand, false)
	h[1] = 0x01 // ATTR: SIMPLE
	h.SetLUN(c.lun)
	h.SetU32(offExpDataLen, uint32(len(cmd.Data)))
	copy(h[32:48], cmd.CDB)
	unsolicited := 0
	switch cmd.Dir {
	case scsi.DirFromDevice:
		h[1] |= 0x40
	case scsi.DirToDevice:
		h[1] |= 0x20
		t.r2t = make(chan r2tReq, 4)
		first := min(len(cmd.Data), c.p.FirstBurstLength)
		imm := 0
		if c.p.ImmediateData {
			imm = min(first, c.p.TargetMaxRecvDataSegmentLength)
			p.Data = cmd.Data[:imm]
		}
		if !c.p.InitialR2T {
			unsolicited = first - imm
		}
	}
	if unsolicited == 0 {
		h[1] |= 0x80
	}
	if err := c.sendCommand(ctx, t, &p); err != nil {
		return scsi.Response{}, err
	}
	if unsolicited > 0 {
		c.sendData(ctx, t, ReservedTag, uint32(len(p.Data)), uint32(unsolicited))
	}
	for {
		select {
		case <-t.done:
			return t.resp, t.err
		case r := <-t.r2t:
			c.sendData(ctx, t, r.ttt, r.off, r.n)
			continue
		case <-ctx.Done():
		}
		c.wait(ctx, t)
		return t.resp, t.err
	}
}

// sendData sends one Data-Out sequence of n bytes at off, in PDUs no larger
// than the target's MaxRecvDataSegmentLength.
func (c *conn) sendData(ctx context.Context, t *task, ttt, off, n uint32) {
	max := uint32(c.p.TargetMaxRecvDataSegmentLength)
	var dataSN uint32
	for done := uint32(0); done < n; dataSN++ {
		k := min(max, n-done)
		var p PDU
		h := &p.Header
		h.SetOpcode(OpDataOut, false)
		if done+k == n {
			h[1] = 0x80
		}
		h.SetLUN(c.lun)
		h.SetITT(t.itt)
		h.SetU32(offTTT, ttt)
		c.mu.Lock()
		h.SetU32(offExpStatSN, c.expStatSN)
		c.mu.Unlock()
		h.SetU32(offDataSN, dataSN)
		h.SetU32(offBufferOff, off+done)
		p.Data = t.data[off+done : off+done+k]
		if err := c.writePDU(&p, ctx); err != nil {
			c.kill(fmt.Errorf("send Data-Out: %w", err))
			return
		}
		done += k
	}
}

// readLoop demultiplexes everything the target sends.
func (c *conn) readLoop() {
	defer c.wg.Done()
	for {
		p, err := c.rd.Read()
		digestErr := false
		if err != nil {
			if !errors.Is(err, ErrDataDigest) {
				c.kill(err)
				return
			}
			c.log.Warn("iscsi data digest error", "opcode", p.Header.Opcode(), "itt", p.Header.ITT())
			digestErr = true
			p.Data = nil
		}
		c.lastRecv.Store(time.Now().UnixNano())
		if err := c.handle(&p, digestErr); err != nil {
			c.kill(err)
			return
		}
	}
}

// updateSNLocked applies StatSN, ExpCmdSN and MaxCmdSN from a target PDU
// (RFC 7143 4.2.2.1, 4.2.2.2.1).
func (c *conn) updateSNLocked(h *BHS) {
	op := h.Opcode()
	advanced := false
	switch op {
	case OpSCSIResponse, OpTaskMgmtResp, OpLogoutResp, OpTextResp, OpReject, OpAsyncMessage:
		advanced = true
	case OpDataIn:
		advanced = h[1]&0x01 != 0
	case OpNOPIn:
		advanced = h.ITT() != ReservedTag
	case OpR2T:
	default:
		return
	}
	if advanced {
		if sn := h.U32(offStatSN) + 1; snLess(c.expStatSN, sn) {
			c.expStatSN = sn
		}
	}
	exp, max := h.U32(offExpCmdSN), h.U32(offMaxCmdSN)
	if snLess(max, exp-1) {
		return // RFC: ignore both
	}
	moved := false
	if snLess(c.expCmdSN, exp) {
		c.expCmdSN, moved = exp, true
	}
	if snLess(c.maxCmdSN, max) {
		c.maxCmdSN, moved = max, true
	}
	if moved {
		close(c.window)
		c.window = make(chan struct{})
	}
}

// handle processes one PDU from the target. An error kills the connection.
func (c *conn) handle(p *PDU, digestErr bool) error {
	h := &p.Header
	c.mu.Lock()
	defer c.mu.Unlock()
	c.updateSNLocked(h)
	op := h.Opcode()
	var t *task
	if itt := h.ITT(); itt != ReservedTag {
		t = c.tasks[itt]
	}
	switch op {
	case OpDataIn:
		return c.onDataIn(t, p, digestErr)
	case OpSCSIResponse:
		if t == nil || t.kind != kindSCSI {
			c.log.Debug("iscsi response for unknown task", "itt", h.ITT())
			return nil
		}
		if h[2] != 0 {
			c.finishLocked(t, scsi.Response{}, &cmdError{sent: true, cause: fmt.Errorf("iscsi: target failure (iSCSI response %#02x)", h[2])})
			return nil
		}
		resp := scsi.Response{Status: scsi.Status(h[3])}
		if len(p.Data) >= 2 {
			sense := p.Data[2:]
			if n := int(binary.BigEndian.Uint16(p.Data)); n < len(sense) {
				sense = sense[:n]
			}
			if len(sense) > 0 {
				resp.Sense = append([]byte(nil), sense...)
			}
		}
		resp.Residual = residual(t, h)
		err := t.dataErr
		if err == nil && digestErr {
			err = ErrDataDigest
		}
		if err != nil {
			err = &cmdError{sent: true, cause: err}
		}
		c.finishLocked(t, resp, err)
		return nil
	case OpR2T:
		if t == nil {
			c.log.Debug("iscsi R2T for unknown task", "itt", h.ITT())
			return nil
		}
		if t.kind != kindSCSI || t.dir != scsi.DirToDevice {
			return fmt.Errorf("R2T for task %#x that writes nothing: %w", t.itt, ErrProtocol)
		}
		if sn := h.U32(offDataSN); sn != t.nextR2TSN {
			return fmt.Errorf("R2TSN %d, want %d: %w", sn, t.nextR2TSN, ErrProtocol)
		}
		t.nextR2TSN++
		off, n := h.U32(offBufferOff), h.U32(offResidual)
		if n == 0 || uint64(off)+uint64(n) > uint64(len(t.data)) || int(n) > c.p.MaxBurstLength {
			return fmt.Errorf("R2T for %d bytes at %d, transfer is %d, MaxBurstLength %d: %w", n, off, len(t.data), c.p.MaxBurstLength, ErrProtocol)
		}
		select {
		case t.r2t <- r2tReq{ttt: h.U32(offTTT), off: off, n: n}:
		default:
			return fmt.Errorf("more R2Ts outstanding than MaxOutstandingR2T=%d: %w", c.p.MaxOutstandingR2T, ErrProtocol)
		}
		return nil
	case OpNOPIn:
		if t != nil && t.kind == kindNOP {
			c.finishLocked(t, scsi.Response{}, nil)
		}
		if h.U32(offTTT) != ReservedTag { // the target pings us: echo
			var q PDU
			q.Header.SetOpcode(OpNOPOut, true)
			q.Header[1] = 0x80
			q.Header.SetLUN(h.LUN())
			q.Header.SetITT(ReservedTag)
			q.Header.SetU32(offTTT, h.U32(offTTT))
			q.Data = append([]byte(nil), p.Data...)
			select {
			case c.nopq <- q:
			default:
				c.log.Warn("iscsi NOP-In flood: reply dropped")
			}
		}
		return nil
	case OpTaskMgmtResp, OpLogoutResp:
		want := kindTMF
		if op == OpLogoutResp {
			want = kindLogout
		}
		if t != nil && t.kind == want {
			t.code = h[2]
			c.finishLocked(t, scsi.Response{}, nil)
		}
		return nil
	case OpAsyncMessage:
		switch ev := h[36]; ev {
		case 0:
			c.log.Info("iscsi asynchronous SCSI event", "sense_len", len(p.Data))
		case 1:
			return fmt.Errorf("target requests logout (asynchronous event 1)")
		case 2, 3:
			return fmt.Errorf("target drops the connection (asynchronous event %d)", ev)
		default:
			c.log.Info("iscsi asynchronous event ignored", "event", ev)
		}
		return nil
	case OpReject:
		reason := h[2]
		if len(p.Data) < BHSLen {
			return fmt.Errorf("target rejected a PDU (reason %#02x) without its header: %w", reason, ErrProtocol)
		}
		var rh BHS
		copy(rh[:], p.Data)
		if rt := c.tasks[rh.ITT()]; rt != nil && rh.ITT() != ReservedTag {
			err := fmt.Errorf("%w: %s (reason %#02x)", ErrRejected, rh.Opcode(), reason)
			if rh.Opcode() == OpSCSICommand {
				// RFC 7143 11.17.1: a rejected command was not executed.
				err = &cmdError{sent: false, cause: err}
				rt.sent = false
			} else {
				err = &cmdError{sent: true, cause: err}
			}
			c.finishLocked(rt, scsi.Response{}, err)
			return nil
		}
		c.log.Warn("iscsi target rejected a PDU", "opcode", rh.Opcode(), "reason", reason)
		return nil
	case OpTextResp:
		return nil
	}
	return fmt.Errorf("unexpected %s in full feature phase: %w", op, ErrProtocol)
}

func (c *conn) onDataIn(t *task, p *PDU, digestErr bool) error {
	h := &p.Header
	if t == nil {
		c.log.Debug("iscsi Data-In for unknown task", "itt", h.ITT())
		return nil
	}
	if t.kind != kindSCSI || t.dir != scsi.DirFromDevice {
		return fmt.Errorf("Data-In for task %#x that reads nothing: %w", t.itt, ErrProtocol)
	}
	if sn := h.U32(offDataSN); sn != t.nextDataSN {
		return fmt.Errorf("Data-In DataSN %d, want %d: %w", sn, t.nextDataSN, ErrProtocol)
	}
	t.nextDataSN++
	off, n := h.U32(offBufferOff), h.DataSegmentLength()
	if int64(off) != int64(t.received) || n > len(t.data)-t.received {
		return fmt.Errorf("Data-In of %d bytes at offset %d, expected offset %d of a %d-byte transfer: %w", n, off, t.received, len(t.data), ErrProtocol)
	}
	if digestErr {
		t.dataErr = ErrDataDigest
	} else {
		copy(t.data[off:], p.Data)
	}
	t.received += n
	if h[1]&0x01 != 0 { // S: status is here
		if !h.Final() {
			return fmt.Errorf("Data-In with status but no F bit: %w", ErrProtocol)
		}
		var err error
		if t.dataErr != nil {
			err = &cmdError{sent: true, cause: t.dataErr}
		}
		c.finishLocked(t, scsi.Response{Status: scsi.Status(h[3]), Residual: residual(t, h)}, err)
	}
	return nil
}

// residual is the number of bytes of t's buffer that were not transferred:
// the target's underflow count, and for reads at least what did not arrive.
func residual(t *task, h *BHS) int {
	r := 0
	if h[1]&0x02 != 0 { // U
		r = int(min(h.U32(offResidual), uint32(len(t.data))))
	}
	if t.dir == scsi.DirFromDevice {
		r = max(r, len(t.data)-t.received)
	}
	return r
}

// nopLoop answers the target's NOP-In pings.
func (c *conn) nopLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case p := <-c.nopq:
			c.mu.Lock()
			p.Header.SetU32(offCmdSN, c.cmdSN)
			p.Header.SetU32(offExpStatSN, c.expStatSN)
			c.mu.Unlock()
			c.write(nil, nil, &p)
		}
	}
}

// keepAlive pings an idle connection and drops it when the ping is lost.
func (c *conn) keepAlive() {
	defer c.wg.Done()
	ka := c.cfg.KeepAlive
	tick := time.NewTicker(ka / 2)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		if time.Since(time.Unix(0, c.lastRecv.Load())) < ka {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), ka)
		err := c.ping(ctx)
		cancel()
		if err != nil {
			c.kill(fmt.Errorf("keepalive NOP-Out unanswered for %v: %w", ka, err))
			return
		}
	}
}

// release closes a dead connection's socket for good.
func (c *conn) release() {
	abortTCP(c.nc)
	c.nc.Close()
}

// abortTCP makes the coming Close of a connection given up for lost send
// one RST instead of a FIN. The kernel retransmits a FIN until it is
// acknowledged: after a partition it would reach the target when the path
// heals, possibly before the reinstating login, and tgt frees the session
// (and with it, since it binds them to the session, the registrations) on
// it. An RST is sent once: lost in a partition, so the target keeps the
// session for the login with the old TSIH (RFC 7143 6.3.4); seen by a
// live target, it ends the connection as the FIN would have.
func abortTCP(nc net.Conn) {
	if tc, ok := nc.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	}
}
