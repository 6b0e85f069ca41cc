package genericservice

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
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
	return &svc{unit: unit, stopTimeout: stop, log: log.With("unit", unit), fails: make(chan error, 1), changed: make(chan struct{}, 1)}, nil
}

type svc struct {
	unit        string
	stopTimeout time.Duration
	log         *slog.Logger
	fails       chan error

	mu         sync.Mutex
	conn       *sd.Conn           // calls and job results
	sig        *dbus.Conn         // the units' PropertiesChanged signals
	connEnd    chan struct{}      // closed when conn is dropped: ends its watch goroutine
	connCancel context.CancelFunc // ends conn's lifetime context
	changed    chan struct{}      // the unit's ActiveState changed (Online's wait)
	id         string             // the unit's own name, as signals name it
	armed      bool               // online: a change away from active is a failure
}

// connect returns the connection to systemd, dialling a new one (dial)
// if there is none or it broke.
func (s *svc) connect(ctx context.Context) (*sd.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.Connected() && s.sig.Connected() {
		return s.conn, nil
	}
	s.dropLocked()
	c, sig, cancel, err := dial(ctx, s.log)
	if err != nil {
		return nil, err
	}
	signals := make(chan *dbus.Signal, 64)
	sig.Signal(signals)
	s.conn, s.sig, s.connEnd, s.connCancel = c, sig, make(chan struct{}), cancel
	go s.watch(c, s.connEnd, signals)
	return c, nil
}

const (
	systemdBus  = "org.freedesktop.systemd1"
	systemdPath = dbus.ObjectPath("/org/freedesktop/systemd1")
	privateAddr = "unix:path=/run/systemd/private"
)

// dial connects to systemd: its private socket first (root, no
// dbus-daemon needed), else the system bus. It makes go-systemd's
// connection for the calls and job results, and one of its own for the
// unit's PropertiesChanged signals (go-systemd's properties subscriber
// races with its dispatch goroutine). godbus closes a connection when the
// context it was made with ends, so the connections get a context of
// their own (cancel ends it), and ctx bounds only the dial.
func dial(ctx context.Context, log *slog.Logger) (*sd.Conn, *dbus.Conn, context.CancelFunc, error) {
	life, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	fail := func(err error) (*sd.Conn, *dbus.Conn, context.CancelFunc, error) {
		cancel()
		return nil, nil, nil, err
	}
	private := true
	c, err := sd.NewSystemdConnectionContext(life)
	if err != nil {
		var berr error
		if c, berr = sd.NewSystemConnectionContext(life); berr != nil {
			return fail(fmt.Errorf("connect to systemd: private socket %s: %v; system bus: %w", privateAddr, err, berr))
		}
		private = false
		log.Info("connected to systemd through the system bus", "private_socket_err", err)
	}
	sig, err := dialSignals(life, private)
	if err != nil {
		c.Close()
		return fail(fmt.Errorf("connect to systemd for its signals: %w", err))
	}
	if !stop() {
		c.Close()
		sig.Close()
		return fail(fmt.Errorf("connect to systemd: %w", context.Cause(ctx)))
	}
	return c, sig, cancel, nil
}

// dialSignals opens the connection for the units' PropertiesChanged
// signals: authenticated as this uid (EXTERNAL). systemd sends every
// signal to each connection on its private socket (a Subscribe call there
// gets no answer); on the system bus the connection adds a match rule and
// subscribes.
func dialSignals(life context.Context, private bool) (*dbus.Conn, error) {
	if private {
		sig, err := dbus.Dial(privateAddr, dbus.WithContext(life))
		if err != nil {
			return nil, err
		}
		if err := sig.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			sig.Close()
			return nil, err
		}
		return sig, nil
	}
	sig, err := dbus.SystemBusPrivate(dbus.WithContext(life))
	if err == nil {
		err = sig.Auth(nil)
	}
	if err == nil {
		err = sig.Hello()
	}
	if err == nil {
		err = sig.AddMatchSignalContext(life, dbus.WithMatchInterface("org.freedesktop.DBus.Properties"),
			dbus.WithMatchMember("PropertiesChanged"), dbus.WithMatchSender(systemdBus))
	}
	if err == nil {
		// On the bus, systemd sends its signals to subscribers only.
		err = sig.Object(systemdBus, systemdPath).CallWithContext(life, "org.freedesktop.systemd1.Manager.Subscribe", 0).Store()
	}
	if err != nil && sig != nil {
		sig.Close()
	}
	return sig, err
}

// dropLocked closes the connections.
func (s *svc) dropLocked() {
	if s.conn != nil {
		s.conn.Close()
		s.sig.Close()
		s.connCancel()
		close(s.connEnd)
		s.conn, s.sig, s.connEnd, s.connCancel = nil, nil, nil, nil
	}
}

// watch reads the signals of one connection until it is dropped. A change
// of the unit's ActiveState wakes Online's wait and, while armed, is
// checked: leaving active is a failure.
func (s *svc) watch(c *sd.Conn, end <-chan struct{}, signals <-chan *dbus.Signal) {
	for {
		select {
		case <-end:
			return
		case sig, ok := <-signals:
			if !ok {
				return // the connection broke; LooksAlive reconnects
			}
			if !s.activeStateChanged(sig) {
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

// activeStateChanged says whether sig is a change of the unit's
// ActiveState: PropertiesChanged of org.freedesktop.systemd1.Unit on its
// object path (that of its own name, which an alias resolves to).
func (s *svc) activeStateChanged(sig *dbus.Signal) bool {
	if sig.Name != "org.freedesktop.DBus.Properties.PropertiesChanged" || len(sig.Body) < 2 {
		return false
	}
	if iface, _ := sig.Body[0].(string); iface != "org.freedesktop.systemd1.Unit" {
		return false
	}
	if changed, _ := sig.Body[1].(map[string]dbus.Variant); changed == nil {
		return false
	} else if _, ok := changed["ActiveState"]; !ok {
		return false
	}
	s.mu.Lock()
	id := s.id
	s.mu.Unlock()
	return sig.Path == unitPath(s.unit) || (id != "" && sig.Path == unitPath(id))
}

// unitPath is the unit's object path.
func unitPath(name string) dbus.ObjectPath {
	return dbus.ObjectPath("/org/freedesktop/systemd1/unit/" + sd.PathBusEscape(name))
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

// state connects (or reuses the connection) and reads the unit's state.
func (s *svc) state(ctx context.Context) (*sd.Conn, unitState, error) {
	c, err := s.connect(ctx)
	if err != nil {
		return nil, unitState{}, err
	}
	st, err := s.read(ctx, c)
	return c, st, err
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
	c, st, err := s.state(ctx)
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
		rctx, cancel := context.WithTimeout(context.Background(), callWait)
		defer cancel()
		st, _ := s.read(rctx, c)
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
	_, st, err := s.state(ctx)
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
