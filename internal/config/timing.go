package config

import (
	"slices"
	"strings"
	"time"
)

// Duration is a duration as the node file writes it, a Go duration
// string ("100ms", "1.5s"); Timing.Resolve parses it. (A string type, so
// that a TOML integer is refused by the decoder, with its position, rather
// than read as nanoseconds.)
type Duration string

// DurationOf writes d as a Duration.
func DurationOf(d time.Duration) *Duration {
	s := Duration(d.String())
	return &s
}

// Timing is the [timing] section: a profile by name and per-field
// overrides of it. A nil field takes the profile's value.
type Timing struct {
	// Profile is "default" (also when empty) or "fast" (Profiles).
	Profile             string    `toml:"profile,omitempty"`
	HeartbeatInterval   *Duration `toml:"heartbeat_interval,omitempty"`
	HeartbeatThreshold  *int      `toml:"heartbeat_threshold,omitempty"`
	QuorumCheckInterval *Duration `toml:"quorum_check_interval,omitempty"`
	JoinWindow          *Duration `toml:"join_window,omitempty"`
	DefenceDelay        *Duration `toml:"defence_delay,omitempty"`
	FormDelay           *Duration `toml:"form_delay,omitempty"`
	Lease               *Duration `toml:"lease,omitempty"`
}

// Timings are the effective timings: a profile with the node file's
// overrides applied (docs/clusterd.md, "Timing profiles"; the meaning of
// each in docs/membership.md, "Timings").
type Timings struct {
	// Profile is the profile's name.
	Profile string
	// HeartbeatInterval is the period of heartbeats on every network (and
	// of the disk heartbeat).
	HeartbeatInterval time.Duration
	// HeartbeatThreshold is how many intervals of silence on every network
	// make a peer suspected.
	HeartbeatThreshold int
	// QuorumCheckInterval is how often a member checks its key and the
	// reservation on the quorum LUN.
	QuorumCheckInterval time.Duration
	// JoinWindow is how long a starting node looks for a sponsor before it
	// tries to form (plus regroup's stagger of 200 ms per node id above 1).
	JoinWindow time.Duration
	// DefenceDelay is the arbiter's wait before it preempts a holder that
	// may be alive (by class, docs/membership.md).
	DefenceDelay time.Duration
	// FormDelay is how long a forming node waits on a used LUN before it
	// preempts; it is longer than QuorumCheckInterval, so that a live
	// owner removes the forming node's key first.
	FormDelay time.Duration
	// Lease is how long a node's resources stay online after the last
	// disk heartbeat the LUN accepted; a node that takes over waits this
	// long (plus a slack) after it removed the old owner's key
	// (docs/resources.md, "What storage cannot fence: the lease"). It
	// must be the same on every node.
	Lease time.Duration
}

// DefaultProfile is the profile of a node file without timing.profile.
const DefaultProfile = "default"

// Profiles are the timing profiles by name. "default" is the timing every
// measurement in BENCHMARKS.md that names no profile was taken with.
// "fast": heartbeat 30 ms × 4 and a 120 ms lease, held by the CPU-hog soak
// with clusterd at real-time priority (BENCHMARKS.md, "False-suspicion
// soak" and "Race against keepalived", run D; docs/clusterd.md, "Timing
// profiles").
var Profiles = map[string]Timings{
	"default": {
		Profile:             "default",
		HeartbeatInterval:   100 * time.Millisecond,
		HeartbeatThreshold:  5,
		QuorumCheckInterval: time.Second,
		// A live member answers a join probe within a round trip (probes
		// go every 100 ms; a member in a regroup answers "busy", which
		// restarts the window), so 500 ms is five probes unanswered; a
		// node that forms wrongly registers and waits the form delay,
		// and the owner's quorum check removes its key first
		// (docs/membership.md, "Timings").
		JoinWindow:   500 * time.Millisecond,
		DefenceDelay: 150 * time.Millisecond,
		FormDelay:    1500 * time.Millisecond,
		Lease:        300 * time.Millisecond,
	},
	"fast": {
		Profile:             "fast",
		HeartbeatInterval:   30 * time.Millisecond,
		HeartbeatThreshold:  4,
		QuorumCheckInterval: 500 * time.Millisecond,
		JoinWindow:          500 * time.Millisecond,
		DefenceDelay:        80 * time.Millisecond,
		FormDelay:           time.Second,
		Lease:               120 * time.Millisecond,
	},
}

// ProfileNames lists the profiles, sorted.
func ProfileNames() []string {
	names := make([]string, 0, len(Profiles))
	for n := range Profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// formMargin is how much longer than the quorum check the form delay is
// at least when it is not set.
const formMargin = 500 * time.Millisecond

// Bounds of the timing fields.
var (
	heartbeatIntervalRange   = [2]time.Duration{10 * time.Millisecond, 10 * time.Second}
	quorumCheckIntervalRange = [2]time.Duration{100 * time.Millisecond, time.Minute}
	joinWindowRange          = [2]time.Duration{100 * time.Millisecond, time.Minute}
	defenceDelayRange        = [2]time.Duration{10 * time.Millisecond, 10 * time.Second}
	formDelayRange           = [2]time.Duration{100 * time.Millisecond, 5 * time.Minute}
	leaseRange               = [2]time.Duration{30 * time.Millisecond, time.Minute}
)

// leaseBeats is how many disk heartbeats a lease covers at least when it
// is not set: a lease renewed by every beat survives one slow beat.
const leaseBeats = 3

// Resolve applies t's overrides to its profile and checks the result. An
// error names the key (timing.KEY).
func (t Timing) Resolve() (Timings, error) {
	name := cmpOr(t.Profile, DefaultProfile)
	eff, ok := Profiles[name]
	if !ok {
		return Timings{}, invalid("timing.profile", "unknown profile %q, want one of %s", t.Profile, strings.Join(ProfileNames(), ", "))
	}
	for _, f := range []struct {
		key  string
		v    *Duration
		dst  *time.Duration
		span [2]time.Duration
	}{
		{"timing.heartbeat_interval", t.HeartbeatInterval, &eff.HeartbeatInterval, heartbeatIntervalRange},
		{"timing.quorum_check_interval", t.QuorumCheckInterval, &eff.QuorumCheckInterval, quorumCheckIntervalRange},
		{"timing.join_window", t.JoinWindow, &eff.JoinWindow, joinWindowRange},
		{"timing.defence_delay", t.DefenceDelay, &eff.DefenceDelay, defenceDelayRange},
		{"timing.form_delay", t.FormDelay, &eff.FormDelay, formDelayRange},
		{"timing.lease", t.Lease, &eff.Lease, leaseRange},
	} {
		if f.v == nil {
			continue
		}
		d, err := time.ParseDuration(string(*f.v))
		switch {
		case err != nil:
			return Timings{}, invalid(f.key, "%q is not a duration such as \"100ms\" or \"1.5s\"", *f.v)
		case d < f.span[0] || d > f.span[1]:
			return Timings{}, invalid(f.key, "%v, want %v..%v", d, f.span[0], f.span[1])
		}
		*f.dst = d
	}
	if t.HeartbeatThreshold != nil {
		eff.HeartbeatThreshold = *t.HeartbeatThreshold
		if eff.HeartbeatThreshold < 2 || eff.HeartbeatThreshold > 100 {
			return Timings{}, invalid("timing.heartbeat_threshold", "%d, want 2..100", eff.HeartbeatThreshold)
		}
	}
	switch {
	case t.FormDelay == nil:
		eff.FormDelay = max(eff.FormDelay, eff.QuorumCheckInterval+formMargin)
	case eff.FormDelay <= eff.QuorumCheckInterval:
		return Timings{}, invalid("timing.form_delay", "%v is not longer than timing.quorum_check_interval (%v): a live owner must remove a forming node's key first",
			eff.FormDelay, eff.QuorumCheckInterval)
	}
	switch {
	case t.Lease == nil:
		eff.Lease = max(eff.Lease, leaseBeats*eff.HeartbeatInterval)
	case eff.Lease < 2*eff.HeartbeatInterval:
		return Timings{}, invalid("timing.lease", "%v is shorter than two disk heartbeats (timing.heartbeat_interval %v): one late beat would take every resource offline",
			eff.Lease, eff.HeartbeatInterval)
	}
	return eff, nil
}
