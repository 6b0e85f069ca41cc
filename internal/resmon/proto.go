package resmon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// The protocol between clusterd and resmon: one JSON object per line on a
// stream (a unix socketpair; resmon's fd 3).
//
//	clusterd -> resmon
//	  {"op":"lease","until_ns":N}     N: absolute CLOCK_MONOTONIC deadline; 0: revoked now
//	  {"op":"online","resource":R,"type":T,"props":{...},
//	   "looks_alive_ms":..,"is_alive_ms":..,"pending_timeout_ms":..}
//	  {"op":"offline","resource":R}
//	  {"op":"terminate","resource":R}
//	resmon -> clusterd
//	  {"op":"hello","pid":N,"types":[...]}   once, first
//	  {"op":"state","resource":R,"state":S,"reason":"..."}
//
// Props are strings, integers, bools and lists of strings (db.Value).

// The ops.
const (
	OpLease     = "lease"
	OpOnline    = "online"
	OpOffline   = "offline"
	OpTerminate = "terminate"
	OpHello     = "hello"
	OpState     = "state"
)

// MaxLine bounds one message, newline included.
const MaxLine = 1 << 20

// ErrProtocol is matched (errors.Is) by every error about a message itself
// (bad JSON, unknown op, missing field, line too long): the stream is still
// usable, the next line is read next.
var ErrProtocol = errors.New("resmon: protocol error")

// ProtocolError is one bad message.
type ProtocolError struct {
	Msg string
}

func (e *ProtocolError) Error() string        { return "resmon: protocol: " + e.Msg }
func (e *ProtocolError) Is(target error) bool { return target == ErrProtocol }

func protoErr(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// Message is one line in either direction. Which fields count depends on
// Op (see above).
type Message struct {
	Op string
	// lease
	UntilNs int64
	// online, offline, terminate, state
	Resource string
	// online
	Type                                      string
	Props                                     resources.Props
	LooksAliveMs, IsAliveMs, PendingTimeoutMs int64
	// hello
	PID   int
	Types []string
	// state
	State  resources.State
	Reason string
	Class  resources.FailureClass // Failed only; soft is not sent
}

// wire is a Message's JSON form.
type wire struct {
	Op               string         `json:"op"`
	UntilNs          *int64         `json:"until_ns,omitempty"`
	Resource         string         `json:"resource,omitempty"`
	Type             string         `json:"type,omitempty"`
	Props            map[string]any `json:"props,omitempty"`
	LooksAliveMs     int64          `json:"looks_alive_ms,omitempty"`
	IsAliveMs        int64          `json:"is_alive_ms,omitempty"`
	PendingTimeoutMs int64          `json:"pending_timeout_ms,omitempty"`
	PID              int            `json:"pid,omitempty"`
	Types            []string       `json:"types,omitempty"`
	State            string         `json:"state,omitempty"`
	Reason           string         `json:"reason,omitempty"`
	Class            string         `json:"class,omitempty"`
}

// Encode returns m as one line, newline included.
func Encode(m Message) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	w := wire{Op: m.Op}
	switch m.Op {
	case OpLease:
		w.UntilNs = &m.UntilNs
	case OpOnline:
		w.Resource, w.Type = m.Resource, m.Type
		w.LooksAliveMs, w.IsAliveMs, w.PendingTimeoutMs = m.LooksAliveMs, m.IsAliveMs, m.PendingTimeoutMs
		w.Props = make(map[string]any, len(m.Props))
		for k, v := range m.Props {
			j, ok := clusterapi.JSONValue(v)
			if !ok {
				return nil, fmt.Errorf("resmon: encode online %s: property %s has no type", m.Resource, k)
			}
			w.Props[k] = j
		}
	case OpOffline, OpTerminate:
		w.Resource = m.Resource
	case OpHello:
		w.PID, w.Types = m.PID, m.Types
		if w.Types == nil {
			w.Types = []string{}
		}
	case OpState:
		w.Resource, w.State, w.Reason = m.Resource, m.State.String(), m.Reason
		if m.Class != resources.FailSoft {
			w.Class = m.Class.String()
		}
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("resmon: encode %s: %w", m.Op, err)
	}
	if len(b)+1 > MaxLine {
		return nil, fmt.Errorf("resmon: encode %s %s: %d bytes, more than the %d a line may hold", m.Op, m.Resource, len(b)+1, MaxLine)
	}
	return append(b, '\n'), nil
}

// Decode parses one line (without or with its newline).
func Decode(line []byte) (Message, error) {
	if len(line) > MaxLine {
		return Message{}, protoErr("line of %d bytes: more than %d", len(line), MaxLine)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var w wire
	if err := dec.Decode(&w); err != nil {
		return Message{}, protoErr("bad JSON: %v", err)
	}
	if rest := bytes.TrimSpace(line[dec.InputOffset():]); len(rest) > 0 {
		return Message{}, protoErr("bad JSON: %d bytes after the object", len(rest))
	}
	// Only the op's own fields are kept: what another op would carry is
	// ignored.
	m := Message{Op: w.Op}
	switch w.Op {
	case OpLease:
		if w.UntilNs == nil {
			return Message{}, protoErr("lease without until_ns")
		}
		m.UntilNs = *w.UntilNs
	case OpOffline, OpTerminate:
		m.Resource = w.Resource
	case OpHello:
		m.PID, m.Types = w.PID, w.Types
	case OpOnline:
		m.Resource, m.Type = w.Resource, w.Type
		m.LooksAliveMs, m.IsAliveMs, m.PendingTimeoutMs = w.LooksAliveMs, w.IsAliveMs, w.PendingTimeoutMs
		m.Props = make(resources.Props, len(w.Props))
		keys := make([]string, 0, len(w.Props))
		for k := range w.Props {
			keys = append(keys, k)
		}
		sort.Strings(keys) // the first bad one, always the same
		for _, k := range keys {
			v, err := clusterapi.Value(w.Props[k])
			if err != nil {
				return Message{}, protoErr("online %s: property %s: %v", w.Resource, k, err)
			}
			m.Props[k] = v
		}
	case OpState:
		m.Resource, m.Reason = w.Resource, w.Reason
		s, err := resources.ParseState(w.State)
		if err != nil {
			return Message{}, protoErr("state of %s: %v", w.Resource, err)
		}
		m.State = s
		if w.Class != "" {
			c, err := resources.ParseFailureClass(w.Class)
			if err != nil {
				return Message{}, protoErr("state of %s: %v", w.Resource, err)
			}
			m.Class = c
		}
	}
	if err := m.check(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// check says what a message of its op lacks.
func (m Message) check() error {
	switch m.Op {
	case OpLease:
		if m.UntilNs < 0 {
			return protoErr("lease until_ns %d is negative", m.UntilNs)
		}
	case OpOnline:
		if m.Resource == "" || m.Type == "" {
			return protoErr("online needs resource and type")
		}
		if m.LooksAliveMs <= 0 || m.IsAliveMs <= 0 || m.PendingTimeoutMs <= 0 {
			return protoErr("online %s: looks_alive_ms, is_alive_ms and pending_timeout_ms must be positive", m.Resource)
		}
	case OpOffline, OpTerminate:
		if m.Resource == "" {
			return protoErr("%s needs resource", m.Op)
		}
	case OpHello:
		if m.PID <= 0 {
			return protoErr("hello needs a positive pid")
		}
	case OpState:
		if m.Resource == "" {
			return protoErr("state needs resource")
		}
		if m.State > resources.Failed {
			return protoErr("state of %s: %v", m.Resource, m.State)
		}
		if m.Class != resources.FailSoft && m.State != resources.Failed {
			return protoErr("state of %s: a %v failure class on state %v", m.Resource, m.Class, m.State)
		}
		if m.Class > resources.FailFatal {
			return protoErr("state of %s: %v", m.Resource, m.Class)
		}
	case "":
		return protoErr("message without op")
	default:
		return protoErr("unknown op %q", m.Op)
	}
	return nil
}

// Reader reads messages off a stream.
type Reader struct {
	br   *bufio.Reader
	line int
}

// NewReader reads from r.
func NewReader(r io.Reader) *Reader { return &Reader{br: bufio.NewReaderSize(r, 64<<10)} }

// Read returns the next message. An error matching ErrProtocol concerns
// that line only (the reader is at the next one); any other error (io.EOF)
// ends the stream. Empty lines are skipped.
func (r *Reader) Read() (Message, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			return Message{}, err
		}
		r.line++
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m, err := Decode(line)
		if err != nil {
			return Message{}, fmt.Errorf("line %d: %w", r.line, err)
		}
		return m, nil
	}
}

// readLine returns one line without its newline; a line longer than
// MaxLine is skipped up to its newline and reported. A last line without a
// newline is an io.ErrUnexpectedEOF.
func (r *Reader) readLine() ([]byte, error) {
	var buf []byte
	for {
		frag, err := r.br.ReadSlice('\n')
		if len(buf)+len(frag) > MaxLine {
			n := len(buf) + len(frag)
			for err == bufio.ErrBufferFull {
				frag, err = r.br.ReadSlice('\n')
				n += len(frag)
			}
			if err != nil {
				return nil, err
			}
			r.line++
			return nil, fmt.Errorf("line %d: %w", r.line, protoErr("line of %d bytes: the limit is %d", n, MaxLine))
		}
		buf = append(buf, frag...)
		switch {
		case err == nil:
			return buf[:len(buf)-1], nil
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(buf) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// CommandMessage converts a failover manager's command.
func CommandMessage(c resources.Command) (Message, error) {
	m := Message{Resource: c.Resource}
	switch c.Op {
	case resources.CmdOnline:
		m.Op, m.Type, m.Props = OpOnline, c.Type, c.Props
		m.LooksAliveMs, m.IsAliveMs, m.PendingTimeoutMs = c.LooksAliveMs, c.IsAliveMs, c.PendingTimeoutMs
	case resources.CmdOffline:
		m.Op = OpOffline
	case resources.CmdTerminate:
		m.Op = OpTerminate
	default:
		return Message{}, fmt.Errorf("resmon: command %v: unknown op", c)
	}
	return m, nil
}
