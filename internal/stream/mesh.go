package stream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// Defaults of Config's zero fields.
const (
	DefaultQueueLen     = 256
	DefaultDialTimeout  = 5 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	DefaultMinBackoff   = 50 * time.Millisecond
	DefaultMaxBackoff   = 5 * time.Second
)

// keepAlive finds a peer whose host vanished within about 8 s of silence
// on an idle connection.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: time.Second, Count: 3}

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("stream: mesh closed")

// Handler receives one frame. It is called from the goroutine reading the
// connection the frame came on, so frames of one connection are delivered
// in the order they were sent, one at a time; frames of different
// connections may be delivered concurrently. The handler owns payload.
type Handler func(from nodes.ID, frameType uint8, payload []byte)

// Config configures a Mesh.
type Config struct {
	// Credentials are this node's certificate, key and CA bundle; its
	// Node is this node's id.
	Credentials *Credentials
	// ClusterTag is the cluster tag every hello must carry.
	ClusterTag uint32
	// Incarnation is this process's boot id; it must grow across restarts.
	// Zero: time.Now().UnixNano().
	Incarnation uint64
	// Listen is the TCP address to listen on (host:port), unless Listener
	// is set: then the mesh accepts on it (and closes it on Close).
	Listen   string
	Listener net.Listener
	// Peers maps every other node to its address (host:port). Only these
	// nodes may connect, and only these may be sent to.
	Peers map[nodes.ID]string
	// Handler receives every application frame.
	Handler Handler
	// MaxFrame is the largest payload sent or accepted; zero:
	// DefaultMaxFrame.
	MaxFrame uint32
	// QueueLen is the number of frames queued per peer; zero:
	// DefaultQueueLen.
	QueueLen int
	// DialTimeout bounds a connection's set-up: TCP, TLS and the hello
	// exchange, both ways. WriteTimeout bounds writing one frame.
	DialTimeout, WriteTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between dials to a peer that
	// is unreachable; it doubles with every failed dial.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// Counters are a Mesh's totals since New.
type Counters struct {
	// Sent and Received count application frames written and delivered.
	Sent, Received uint64
	// Dropped is QueueFull + Unreachable + WriteFailed: frames Send
	// accepted that never reached the wire.
	Dropped     uint64
	QueueFull   uint64 // the peer's queue was full
	Unreachable uint64 // no connection, and the dial failed or waits out its backoff
	WriteFailed uint64 // the write failed; the connection was closed
	// Connections counts connections set up (both directions);
	// Superseded, those closed because another to the same peer won.
	Connections, Superseded uint64
	// DialFailed counts outgoing connections that failed for a reason
	// this node did not decide: unreachable, refused by the peer.
	DialFailed uint64
	// Refused counts connections this node refused, by reason.
	Refused [numReasons]uint64
	// BadRecords counts connections closed because a TLS record failed
	// authentication (tampered or replayed).
	BadRecords uint64
	// DecodeErrors counts connections closed on a frame that did not
	// decode (inside an authenticated stream: a peer's bug).
	DecodeErrors uint64
}

// RefusedTotal is the sum of Refused.
func (c Counters) RefusedTotal() uint64 {
	var n uint64
	for _, v := range c.Refused {
		n += v
	}
	return n
}

type counters struct {
	sent, received, queueFull, unreachable, writeFailed atomic.Uint64
	connections, superseded, dialFailed                 atomic.Uint64
	refused                                             [numReasons]atomic.Uint64
	badRecords, decodeErrors                            atomic.Uint64
}

// Mesh is one node's streams to its peers: a listener, and at most one
// connection in use per peer, dialled when there is something to send and
// none exists. Frames sent to a peer are queued and written in order by
// one goroutine per peer; while one connection lives, frames arrive in the
// order they were sent, at most once. A frame is dropped (and counted)
// when the queue is full, the peer is unreachable or the connection breaks
// under it: the protocol above retransmits.
//
// When both nodes dial each other at once, the connection dialled by the
// lower node id wins at both ends, and the other is closed; a connection
// from a peer's newer incarnation replaces any older one.
type Mesh struct {
	cfg    Config
	log    *slog.Logger
	self   nodes.ID
	inc    uint64
	server *tls.Config
	ln     net.Listener
	peers  map[nodes.ID]*peer
	c      counters

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// pending counts connections between accept or dial and register:
	// while it is 0 at both ends of a pair, no connection between them
	// can still supersede the one in use.
	pending atomic.Int64

	mu     sync.Mutex
	closed bool
	raw    map[net.Conn]struct{} // every TCP connection, to close on Close
}

type peer struct {
	id   nodes.ID
	addr string
	q    chan outFrame
	// Guarded by Mesh.mu.
	active   *conn
	inc      uint64 // the highest incarnation heard
	nextDial time.Time
	backoff  time.Duration
}

type outFrame struct {
	typ     uint8
	payload []byte
}

// conn is one established connection.
type conn struct {
	tls      *tls.Conn
	raw      net.Conn
	node     nodes.ID
	inc      uint64
	version  uint8
	outgoing bool
	remote   string

	wmu  sync.Mutex
	wbuf []byte
}

// New checks cfg and starts listening. The mesh dials nobody until Send.
func New(cfg Config) (*Mesh, error) {
	if cfg.Credentials == nil {
		return nil, errors.New("stream: no credentials")
	}
	if cfg.ClusterTag == 0 {
		return nil, errors.New("stream: cluster tag 0")
	}
	if cfg.Handler == nil {
		return nil, errors.New("stream: no handler")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.DialTimeout, DefaultDialTimeout)
	def(&cfg.WriteTimeout, DefaultWriteTimeout)
	def(&cfg.MinBackoff, DefaultMinBackoff)
	def(&cfg.MaxBackoff, DefaultMaxBackoff)
	if cfg.MaxFrame == 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.Incarnation == 0 {
		cfg.Incarnation = uint64(time.Now().UnixNano())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	self := cfg.Credentials.Node
	m := &Mesh{
		cfg:   cfg,
		log:   cfg.Logger,
		self:  self,
		inc:   cfg.Incarnation,
		peers: map[nodes.ID]*peer{},
		raw:   map[net.Conn]struct{}{},
	}
	var set nodes.Set
	for id, addr := range cfg.Peers {
		if !id.Valid() || id == self {
			return nil, fmt.Errorf("stream: peer node id %d (this node is %d)", id, self)
		}
		set = set.Add(id)
		m.peers[id] = &peer{id: id, addr: addr, q: make(chan outFrame, cfg.QueueLen), backoff: cfg.MinBackoff}
	}
	m.server = cfg.Credentials.ServerConfig(set)
	m.ln = cfg.Listener
	if m.ln == nil {
		lc := net.ListenConfig{KeepAliveConfig: keepAlive}
		ln, err := lc.Listen(context.Background(), "tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("stream: listen on %s: %w", cfg.Listen, err)
		}
		m.ln = ln
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Add(1)
	go m.accept()
	for _, p := range m.peers {
		m.wg.Add(1)
		go m.writeLoop(p)
	}
	return m, nil
}

// Send queues a frame for node to. It does not block and does not copy
// payload: the caller must not change it afterwards. A frame that cannot
// be queued is dropped and counted; the error is only for a call that can
// never succeed (an unknown peer, a reserved type, a payload over
// MaxFrame) and after Close.
func (m *Mesh) Send(to nodes.ID, frameType uint8, payload []byte) error {
	p := m.peers[to]
	switch {
	case p == nil:
		return fmt.Errorf("stream: send to node %d: not a peer", to)
	case frameType < FirstAppType:
		return fmt.Errorf("stream: send to node %d: frame type %d is reserved (want %d..255)", to, frameType, FirstAppType)
	case uint64(len(payload)) > uint64(m.cfg.MaxFrame):
		return fmt.Errorf("stream: send to node %d: payload of %d bytes, over the maximum %d", to, len(payload), m.cfg.MaxFrame)
	}
	if m.ctx.Err() != nil {
		return ErrClosed
	}
	select {
	case p.q <- outFrame{typ: frameType, payload: payload}:
	default:
		m.c.queueFull.Add(1)
	}
	return nil
}

// Connected is the set of peers with a connection in use.
func (m *Mesh) Connected() nodes.Set {
	m.mu.Lock()
	defer m.mu.Unlock()
	var s nodes.Set
	for id, p := range m.peers {
		if p.active != nil {
			s = s.Add(id)
		}
	}
	return s
}

// Counters returns the totals so far.
func (m *Mesh) Counters() Counters {
	c := Counters{
		Sent:         m.c.sent.Load(),
		Received:     m.c.received.Load(),
		QueueFull:    m.c.queueFull.Load(),
		Unreachable:  m.c.unreachable.Load(),
		WriteFailed:  m.c.writeFailed.Load(),
		Connections:  m.c.connections.Load(),
		Superseded:   m.c.superseded.Load(),
		DialFailed:   m.c.dialFailed.Load(),
		BadRecords:   m.c.badRecords.Load(),
		DecodeErrors: m.c.decodeErrors.Load(),
	}
	c.Dropped = c.QueueFull + c.Unreachable + c.WriteFailed
	for i := range c.Refused {
		c.Refused[i] = m.c.refused[i].Load()
	}
	return c
}

// Close stops listening, closes every connection and waits for every
// goroutine of the mesh, including handlers running, to return. Queued
// frames are dropped uncounted.
func (m *Mesh) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.cancel()
	err := m.ln.Close()
	for c := range m.raw {
		c.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
	if err != nil {
		return fmt.Errorf("stream: close listener: %w", err)
	}
	return nil
}

// track records a TCP connection so that Close closes it; false after
// Close (the connection is closed).
func (m *Mesh) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		c.Close()
		return false
	}
	m.raw[c] = struct{}{}
	return true
}

func (m *Mesh) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.raw, c)
	m.mu.Unlock()
	c.Close()
}

func (m *Mesh) accept() {
	defer m.wg.Done()
	for {
		raw, err := m.ln.Accept()
		if err != nil {
			if m.ctx.Err() != nil {
				return
			}
			m.log.Warn("stream accept", "err", err.Error())
			select {
			case <-time.After(50 * time.Millisecond):
			case <-m.ctx.Done():
				return
			}
			continue
		}
		if !m.track(raw) {
			continue
		}
		m.pending.Add(1)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			c, err := m.handshake(raw, false, 0)
			if err != nil {
				m.pending.Add(-1)
				m.untrack(raw)
				return
			}
			win := m.register(c)
			m.pending.Add(-1)
			if win {
				m.read(c)
			}
		}()
	}
}

// handshake runs TLS and the hello exchange on raw; want is the node
// dialled (outgoing only). A refusal is counted and logged here.
func (m *Mesh) handshake(raw net.Conn, outgoing bool, want nodes.ID) (*conn, error) {
	remote := raw.RemoteAddr().String()
	raw.SetDeadline(time.Now().Add(m.cfg.DialTimeout))
	var tc *tls.Conn
	if outgoing {
		tc = tls.Client(raw, m.cfg.Credentials.ClientConfig(want))
	} else {
		tc = tls.Server(raw, m.server)
	}
	c, err := m.hello(tc, outgoing, want)
	if err != nil {
		reason, rerr := refusalOf(err)
		if m.ctx.Err() != nil {
			return nil, err
		}
		if reason != ReasonNone {
			// Logged, then counted: a count seen means a line written.
			m.log.Warn("stream connection refused", "remote", remote, "outgoing", outgoing, "reason", reason.String(), "err", rerr.Error())
			m.c.refused[reason].Add(1)
		} else {
			if outgoing {
				m.c.dialFailed.Add(1)
			}
			m.log.Info("stream handshake failed", "remote", remote, "outgoing", outgoing, "err", err.Error())
		}
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	c.raw, c.remote = raw, remote
	return c, nil
}

func (m *Mesh) hello(tc *tls.Conn, outgoing bool, want nodes.ID) (*conn, error) {
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	// VerifyConnection checked the certificate: the node id it names is
	// the one dialled, or a peer's.
	_, certID, err := certIdentity(tc.ConnectionState().PeerCertificates[0])
	if err != nil {
		return nil, err
	}
	mine, err := (&Hello{MinVersion: MinVersion, MaxVersion: MaxVersion, Cluster: m.cfg.ClusterTag, Node: m.self, Incarnation: m.inc}).MarshalBinary()
	if err != nil {
		return nil, err
	}
	c := &conn{tls: tc, outgoing: outgoing, version: MinVersion}
	if err := c.write(TypeHello, mine, time.Time{}); err != nil {
		return nil, fmt.Errorf("send hello: %w", err)
	}
	h, p, err := ReadFrame(tc, HelloLen)
	if err != nil {
		if errors.Is(err, ErrMalformed) {
			return nil, refused(ReasonBadHello, "%v", err)
		}
		return nil, fmt.Errorf("read hello: %w", err)
	}
	var theirs Hello
	if h.Type != TypeHello {
		return nil, refused(ReasonBadHello, "first frame is of type %d, not a hello", h.Type)
	}
	if err := theirs.UnmarshalBinary(p); err != nil {
		return nil, refused(ReasonBadHello, "%v", err)
	}
	v, ok := negotiate(MinVersion, MaxVersion, theirs.MinVersion, theirs.MaxVersion)
	switch {
	case !ok:
		return nil, refused(ReasonBadVersion, "node %d speaks versions %d..%d, this node %d..%d", theirs.Node, theirs.MinVersion, theirs.MaxVersion, MinVersion, MaxVersion)
	case theirs.Cluster != m.cfg.ClusterTag:
		return nil, refused(ReasonWrongCluster, "hello of node %d carries cluster tag %08x, this cluster is %08x", theirs.Node, theirs.Cluster, m.cfg.ClusterTag)
	case theirs.Node != certID:
		return nil, refused(ReasonWrongNode, "hello says node %d, its certificate node %d", theirs.Node, certID)
	}
	c.node, c.inc, c.version = certID, theirs.Incarnation, v
	return c, nil
}

// dialledByLower reports whether c was dialled by the lower id of the pair.
func (m *Mesh) dialledByLower(c *conn) bool {
	return c.outgoing == (m.self < c.node)
}

// register makes c the peer's connection in use, or closes it: see Mesh
// for which of two connections wins. It reports whether c is in use.
func (m *Mesh) register(c *conn) bool {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.untrack(c.raw)
		return false
	}
	p := m.peers[c.node]
	if c.inc < p.inc {
		m.mu.Unlock()
		m.log.Info("stream connection from an old incarnation closed", "peer", int(c.node), "remote", c.remote, "incarnation", c.inc)
		m.c.superseded.Add(1)
		m.untrack(c.raw)
		return false
	}
	if p.inc != 0 && c.inc > p.inc {
		m.log.Info("stream peer restarted", "peer", int(c.node), "remote", c.remote, "incarnation", c.inc)
	}
	p.inc = c.inc
	old := p.active
	win := old == nil || c.inc > old.inc || m.dialledByLower(c) || !m.dialledByLower(old)
	loser := c
	if win {
		p.active, loser = c, old
		p.backoff, p.nextDial = m.cfg.MinBackoff, time.Time{}
	}
	m.mu.Unlock()
	m.c.connections.Add(1)
	m.log.Info("stream connected", "peer", int(c.node), "remote", c.remote, "outgoing", c.outgoing, "version", int(c.version))
	if loser != nil {
		m.c.superseded.Add(1)
		m.log.Info("stream connection superseded", "peer", int(c.node), "remote", loser.remote, "outgoing", loser.outgoing)
		m.untrack(loser.raw)
	}
	if !win {
		// The peer dialled although this end has a connection in use:
		// either both dialled at once, or the peer's end of ours is gone
		// and it is silent. A ping finds out; a dead connection fails
		// and the peer's next dial wins.
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if err := old.write(TypePing, nil, time.Now().Add(m.cfg.DialTimeout)); err != nil {
				m.drop(old, err)
			}
		}()
	}
	return win
}

// drop forgets c as its peer's connection and closes it.
func (m *Mesh) drop(c *conn, err error) {
	m.mu.Lock()
	if p := m.peers[c.node]; p.active == c {
		p.active = nil
	}
	m.mu.Unlock()
	m.untrack(c.raw)
}

// read delivers c's frames to the handler until c fails.
func (m *Mesh) read(c *conn) {
	err := m.readFrames(c)
	if m.ctx.Err() == nil {
		switch {
		case isBadRecord(err):
			m.log.Warn("stream connection closed: TLS record failed authentication (tampered or replayed)", "peer", int(c.node), "remote", c.remote, "err", err.Error())
			m.c.badRecords.Add(1)
		case errors.Is(err, ErrMalformed):
			m.log.Warn("stream connection closed: bad frame", "peer", int(c.node), "remote", c.remote, "err", err.Error())
			m.c.decodeErrors.Add(1)
		case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			m.log.Debug("stream connection closed", "peer", int(c.node), "remote", c.remote)
		default:
			m.log.Info("stream connection failed", "peer", int(c.node), "remote", c.remote, "err", err.Error())
		}
	}
	m.drop(c, err)
}

func (m *Mesh) readFrames(c *conn) error {
	for {
		h, p, err := ReadFrame(c.tls, m.cfg.MaxFrame)
		if err != nil {
			return err
		}
		switch {
		case h.Version != c.version:
			return fmt.Errorf("%w: frame of version %d on a connection at version %d", ErrMalformed, h.Version, c.version)
		case h.Type == TypePing:
		case h.Type < FirstAppType:
			return fmt.Errorf("%w: frame type %d after the hello", ErrMalformed, h.Type)
		default:
			m.c.received.Add(1)
			m.cfg.Handler(c.node, h.Type, p)
		}
	}
}

// writeLoop writes p's queued frames in order, dialling when there is no
// connection.
func (m *Mesh) writeLoop(p *peer) {
	defer m.wg.Done()
	for {
		var f outFrame
		select {
		case <-m.ctx.Done():
			return
		case f = <-p.q:
		}
		c := m.connection(p)
		if c == nil {
			if m.ctx.Err() != nil {
				return
			}
			m.c.unreachable.Add(1)
			continue
		}
		if err := c.write(f.typ, f.payload, time.Now().Add(m.cfg.WriteTimeout)); err != nil {
			if m.ctx.Err() != nil {
				return
			}
			m.c.writeFailed.Add(1)
			m.log.Info("stream write failed", "peer", int(p.id), "remote", c.remote, "err", err.Error())
			m.drop(c, err)
			continue
		}
		m.c.sent.Add(1)
	}
}

// connection returns p's connection in use, dialling one if there is none
// and the backoff allows; nil if there is none.
func (m *Mesh) connection(p *peer) *conn {
	m.mu.Lock()
	c := p.active
	now := time.Now()
	if c != nil || now.Before(p.nextDial) {
		m.mu.Unlock()
		return c
	}
	p.nextDial = now.Add(p.backoff)
	p.backoff = min(2*p.backoff, m.cfg.MaxBackoff)
	m.pending.Add(1)
	m.mu.Unlock()
	defer m.pending.Add(-1)

	d := net.Dialer{Timeout: m.cfg.DialTimeout, KeepAliveConfig: keepAlive}
	raw, err := d.DialContext(m.ctx, "tcp", p.addr)
	if err != nil {
		if m.ctx.Err() == nil {
			m.c.dialFailed.Add(1)
			m.log.Info("stream dial failed", "peer", int(p.id), "remote", p.addr, "err", err.Error())
		}
		return nil
	}
	if !m.track(raw) {
		return nil
	}
	c, err = m.handshake(raw, true, p.id)
	if err != nil {
		m.untrack(raw)
		return nil
	}
	if m.register(c) {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.read(c)
		}()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return p.active
}

// write writes one frame; a zero deadline leaves the connection's as is.
func (c *conn) write(typ uint8, payload []byte, deadline time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !deadline.IsZero() {
		c.tls.SetWriteDeadline(deadline)
	}
	b, _ := Header{Version: c.version, Type: typ, Len: uint32(len(payload))}.AppendBinary(c.wbuf[:0])
	// One TLS record for a small frame; a large one is cut into records
	// anyway.
	if len(payload) <= 16<<10 {
		b = append(b, payload...)
		payload = nil
	}
	c.wbuf = b[:0]
	if _, err := c.tls.Write(b); err != nil {
		return err
	}
	if len(payload) > 0 {
		if _, err := c.tls.Write(payload); err != nil {
			return err
		}
	}
	return nil
}
