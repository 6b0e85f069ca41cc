package genericservice

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// TypeName is the type's name in the database.
const TypeName = "generic_service"

// DefaultStopTimeout is stop_timeout_ms's default (systemd's own
// DefaultTimeoutStopSec).
const DefaultStopTimeout = 90 * time.Second

const (
	// callWait bounds one D-Bus call made without a caller's context
	// (LooksAlive, Terminate, the watch's reads) and a connection.
	callWait = 2 * time.Second
	// killWait bounds the wait for a stop job after SIGKILL.
	killWait = 5 * time.Second
)

// Type is the generic_service type.
type Type struct{}

// Name is "generic_service".
func (Type) Name() string { return TypeName }

// Open checks the properties; it does not talk to systemd (Online
// connects).
func (Type) Open(name string, props resources.Props, log *slog.Logger) (resources.Instance, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	unit := props.Str("unit", "")
	if unit == "" {
		return nil, fmt.Errorf("%s %s: property unit: required", TypeName, name)
	}
	if typeInterface(unit) == "" && !map[string]bool{"target": true, "slice": true, "device": true}[suffix(unit)] {
		return nil, fmt.Errorf("%s %s: property unit: %q is not a unit name (NAME.service, NAME.target, ...)", TypeName, name, unit)
	}
	stop := time.Duration(props.Int("stop_timeout_ms", DefaultStopTimeout.Milliseconds())) * time.Millisecond
	if stop <= 0 {
		return nil, fmt.Errorf("%s %s: property stop_timeout_ms: must be positive", TypeName, name)
	}
	return &svc{unit: unit, stopTimeout: stop, log: log.With("unit", unit), fails: make(chan error, 1)}, nil
}

type svc struct {
	unit        string
	stopTimeout time.Duration
	log         *slog.Logger
	fails       chan error

	mu         sync.Mutex
	conn       *sd.Conn
	connEnd    chan struct{}      // closed when conn is dropped: ends its watch goroutine
	connCancel context.CancelFunc // ends conn's lifetime context
	changed    chan struct{}      // the unit's ActiveState changed (Online's wait)
	id         string             // the unit's own name, as signals name it
	armed      bool               // online: a change away from active is a failure
}

// connect returns the connection to systemd, dialling a new one (dial)
// if there is none or it broke. A new connection subscribes to the units'
// property changes.
func (s *svc) connect(ctx context.Context) (*sd.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.Connected() {
		return s.conn, nil
	}
	s.dropLocked()
	c, cancel, err := dial(ctx, s.log)
	if err != nil {
		return nil, err
	}
	if err := c.Subscribe(); err != nil {
		c.Close()
		cancel()
		return nil, fmt.Errorf("subscribe to systemd's signals: %w", err)
	}
	updates := make(chan *sd.PropertiesUpdate, 256)
	errs := make(chan error, 1)
	c.SetPropertiesSubscriber(updates, errs)
	s.conn, s.connEnd, s.connCancel = c, make(chan struct{}), cancel
	if s.changed == nil {
		s.changed = make(chan struct{}, 1)
	}
	go s.watch(c, s.connEnd, updates, errs)
	return c, nil
}

// dial connects to systemd: its private socket first (root, no
// dbus-daemon needed), else the system bus. godbus closes a connection
// when the context it was made with ends, so the connection gets a
// context of its own (cancel ends it), and ctx bounds only the dial.
func dial(ctx context.Context, log *slog.Logger) (*sd.Conn, context.CancelFunc, error) {
	life, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	c, err := sd.NewSystemdConnectionContext(life)
	if err != nil {
		var berr error
		if c, berr = sd.NewSystemConnectionContext(life); berr != nil {
			cancel()
			return nil, nil, fmt.Errorf("connect to systemd: private socket /run/systemd/private: %v; system bus: %w", err, berr)
		}
		log.Info("connected to systemd through the system bus", "private_socket_err", err)
	}
	if !stop() {
		c.Close()
		cancel()
		return nil, nil, fmt.Errorf("connect to systemd: %w", context.Cause(ctx))
	}
	return c, cancel, nil
}

// dropLocked closes the connection.
func (s *svc) dropLocked() {
	if s.conn != nil {
		s.conn.Close()
		s.connCancel()
		close(s.connEnd)
		s.conn, s.connEnd, s.connCancel = nil, nil, nil
	}
}

// watch reads the property changes of one connection until it is
// dropped. A change of the unit's ActiveState wakes Online's wait and,
// while armed, is checked: leaving active is a failure.
func (s *svc) watch(c *sd.Conn, end <-chan struct{}, updates <-chan *sd.PropertiesUpdate, errs <-chan error) {
	for {
		select {
		case <-end:
			return
		case err := <-errs:
			// Changes were dropped (the channel was full): look again.
			s.log.Warn("systemd's property changes overflowed; reading the unit's state", "err", err)
		case u := <-updates:
			s.mu.Lock()
			mine := u.UnitName == s.id || u.UnitName == s.unit
			s.mu.Unlock()
			if _, ok := u.Changed["ActiveState"]; !mine || !ok {
				continue
			}
		}
		select {
		case s.changed <- struct{}{}:
		default:
		}
		s.checkArmed(c)
	}
}

// checkArmed reads the unit's state and reports a failure if it is online
// and no longer up.
func (s *svc) checkArmed(c *sd.Conn) {
	s.mu.Lock()
	armed := s.armed
	s.mu.Unlock()
	if !armed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	st, err := s.read(ctx, c)
	if err != nil {
		// LooksAlive polls too, and reconnects: it decides.
		s.log.Warn("could not read the unit's state after a change", "err", err)
		return
	}
	fail := st.leftActive(s.unit)
	if fail == nil {
		return
	}
	s.mu.Lock()
	if !s.armed {
		s.mu.Unlock()
		return
	}
	s.armed = false
	s.mu.Unlock()
	s.log.Warn("unit left active", "active_state", st.ActiveState, "sub_state", st.SubState, "result", st.Result)
	select {
	case s.fails <- fail:
	default:
	}
}

// read returns the unit's state.
func (s *svc) read(ctx context.Context, c *sd.Conn) (unitState, error) {
	p, err := c.GetUnitPropertiesContext(ctx, s.unit)
	if err != nil {
		return unitState{}, fmt.Errorf("read the properties of unit %s: %w", s.unit, callClass(err))
	}
	st := unitState{}
	str := func(m map[string]any, k string) string { v, _ := m[k].(string); return v }
	st.ID, st.LoadState = str(p, "Id"), str(p, "LoadState")
	st.ActiveState, st.SubState = str(p, "ActiveState"), str(p, "SubState")
	if le, ok := p["LoadError"].([]any); ok && len(le) == 2 {
		st.LoadErrorMsg, _ = le[1].(string)
	}
	if iface := typeInterface(s.unit); iface != "" && st.LoadState == "loaded" {
		tp, err := c.GetUnitTypePropertiesContext(ctx, s.unit, iface)
		if err != nil {
			return st, fmt.Errorf("read the %s properties of unit %s: %w", iface, s.unit, err)
		}
		st.Result, st.Restart = str(tp, "Result"), str(tp, "Restart")
		st.RemainAfter, _ = tp["RemainAfterExit"].(bool)
		st.MainPID, _ = tp["ExecMainPID"].(uint32)
		st.MainCode, _ = tp["ExecMainCode"].(int32)
		st.MainStatus, _ = tp["ExecMainStatus"].(int32)
	}
	s.mu.Lock()
	s.id = st.ID
	s.mu.Unlock()
	return st, nil
}

// Online resets the unit's failed state (and with it systemd's start rate
// limit: the cluster's restart policy governs), starts it with
// StartUnit(unit, "replace") and waits for the job and for the unit to be
// active. A unit this node does not have is a hard failure.
func (s *svc) Online(ctx context.Context) error {
	s.disarm()
	select {
	case <-s.fails: // a stale failure of an earlier run
	default:
	}
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	st, err := s.read(ctx, c)
	if err != nil {
		return err
	}
	if err := st.loadFailure(s.unit); err != nil {
		return err
	}
	if st.ActiveState == "failed" {
		if err := c.ResetFailedUnitContext(ctx, s.unit); err != nil {
			s.log.Warn("reset-failed", "err", err)
		}
	}
	done := make(chan string, 1)
	if _, err := c.StartUnitContext(ctx, s.unit, "replace", done); err != nil {
		return fmt.Errorf("start unit %s: %w", s.unit, callClass(err))
	}
	var result string
	select {
	case result = <-done:
	case <-ctx.Done():
		st, _ := s.read(context.Background(), c)
		return fmt.Errorf("start unit %s: no job result: %w; unit %s", s.unit, ctx.Err(), st.describe())
	}
	for {
		st, err := s.read(ctx, c)
		if err != nil {
			return err
		}
		if result != "done" {
			return jobFailure("start", s.unit, result, st)
		}
		ok, err := st.settled(s.unit)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		// Activating: wait for the next change of ActiveState.
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("unit %s still not active: %w; %s", s.unit, ctx.Err(), st.describe())
		}
	}
	// Armed first, then looked at once more: a change between the two is
	// either seen here or reported by the watch.
	s.mu.Lock()
	s.armed = true
	s.mu.Unlock()
	st, err = s.read(ctx, c)
	if err == nil {
		err = st.leftActive(s.unit)
	}
	if err != nil {
		s.disarm()
		return err
	}
	s.log.Info("unit active", "sub_state", st.SubState, "main_pid", st.MainPID)
	return nil
}

func (s *svc) disarm() {
	s.mu.Lock()
	s.armed = false
	s.mu.Unlock()
}

// Offline stops the unit (StopUnit, "replace") and waits for the job: up
// to stop_timeout_ms, then every process of the unit gets SIGKILL and the
// job gets killWait more. ctx ending first returns (resmon terminates).
func (s *svc) Offline(ctx context.Context) error {
	s.disarm()
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	done := make(chan string, 1)
	if _, err := c.StopUnitContext(ctx, s.unit, "replace", done); err != nil {
		return fmt.Errorf("stop unit %s: %w", s.unit, err)
	}
	t := time.NewTimer(s.stopTimeout)
	defer t.Stop()
	var result string
	select {
	case result = <-done:
	case <-ctx.Done():
		return fmt.Errorf("stop unit %s: %w", s.unit, ctx.Err())
	case <-t.C:
		s.log.Warn("unit still stopping after stop_timeout_ms: SIGKILL to all its processes", "stop_timeout", s.stopTimeout)
		if err := c.KillUnitWithTarget(ctx, s.unit, sd.All, int32(syscall.SIGKILL)); err != nil {
			s.log.Warn("kill", "err", err)
		}
		select {
		case result = <-done:
		case <-time.After(killWait):
			return fmt.Errorf("stop unit %s: no job result %v after SIGKILL", s.unit, killWait)
		case <-ctx.Done():
			return fmt.Errorf("stop unit %s: %w", s.unit, ctx.Err())
		}
	}
	st, err := s.read(ctx, c)
	if err != nil {
		return err
	}
	if st.ActiveState != "inactive" && st.ActiveState != "failed" {
		return jobFailure("stop", s.unit, result, st)
	}
	s.log.Info("unit stopped", "job_result", result, "active_state", st.ActiveState, "result", st.Result)
	return nil
}

// Terminate sends SIGKILL to every process of the unit (KillUnit) and then
// queues a stop (StopUnit, not waited for): the stop also cancels a
// restart systemd may have scheduled. Each call is bounded by callWait.
func (s *svc) Terminate() {
	s.disarm()
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	c, err := s.connect(ctx)
	if err != nil {
		s.log.Error("terminate: could not reach systemd", "err", err)
		return
	}
	err = c.KillUnitWithTarget(ctx, s.unit, sd.All, int32(syscall.SIGKILL))
	switch errorName(err) {
	case "org.freedesktop.systemd1.NoSuchUnit":
		s.log.Debug("terminate: the unit is not loaded: nothing runs", "err", err)
		return
	case "org.freedesktop.systemd1.NoSuchProcess", "":
		if err != nil {
			s.log.Warn("terminate: kill", "err", err)
		}
	default:
		s.log.Warn("terminate: kill", "err", err)
	}
	if _, err := c.StopUnitContext(ctx, s.unit, "replace", nil); err != nil {
		s.log.Error("terminate: stop", "err", err)
		return
	}
	s.log.Info("unit terminated: SIGKILL to its processes, stop queued")
}

// LooksAlive: ActiveState is active (or reloading).
func (s *svc) LooksAlive() error {
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	p, err := c.GetUnitPropertyContext(ctx, s.unit, "ActiveState")
	if err != nil {
		return fmt.Errorf("read ActiveState of unit %s: %w", s.unit, err)
	}
	st := unitState{}
	st.ActiveState, _ = p.Value.Value().(string)
	if st.looksAlive() {
		return nil
	}
	// Read it all for the reason.
	if full, err := s.read(ctx, c); err == nil {
		st = full
	}
	return st.leftActive(s.unit)
}

// IsAlive: LooksAlive, and the substate is what an up unit of its type
// shows (a service running, or exited with RemainAfterExit=).
func (s *svc) IsAlive(ctx context.Context) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	st, err := s.read(ctx, c)
	if err != nil {
		return err
	}
	return st.isAlive(s.unit)
}

// Failures reports the unit leaving active while online.
func (s *svc) Failures() <-chan error { return s.fails }

// Close drops the connection to systemd; the unit is left as it is.
func (s *svc) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = false
	s.dropLocked()
}
