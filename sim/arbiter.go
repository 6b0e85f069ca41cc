package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/scsi"
)

// The simulator's quorum arbiter stands in for quorumdisk's state machine
// behind regroup's small interface: regroup emits an Arbitration (make
// these members the only registrants, waiting as the class says) and
// Register/Unregister, and consumes ArbitrationDone, DiskRegistered and
// QuorumLost. Every PERSISTENT RESERVE command is a separate simulator
// event against the node's own memtarget nexus, so the target serialises
// concurrent claims for real: whoever's PREEMPT lands first removes the
// other's key, and the other's next command fails with RESERVATION
// CONFLICT.

// Key returns node id's reservation key: cluster tag (4 bytes) + id (4).
func Key(tag uint32, id regroup.NodeID) uint64 { return uint64(tag)<<32 | uint64(id) }

type arbiter struct {
	s     *Sim
	n     *node
	gen   uint64 // bumps cancel in-flight operations
	busy  bool   // a claim is running: the quorum check waits
	round uint64 // the claim's round, 0 for other operations
}

var ctx = context.Background()

func (a *arbiter) key() uint64 { return Key(a.s.cfg.ClusterTag, a.n.id) }

// step schedules a claim's next command after one disk command latency,
// unless the claim was cancelled or is no longer wanted.
func (a *arbiter) step(extra int64, f func()) { a.schedule(extra, true, f) }

// op schedules a command that is not part of a claim (register, quorum
// check): only a crash or halt cancels it.
func (a *arbiter) op(f func()) { a.schedule(0, false, f) }

func (a *arbiter) schedule(extra int64, claim bool, f func()) {
	gen, inc := a.gen, a.n.inc
	var run func()
	run = func() {
		if a.n.inc != inc || !a.n.running || claim && a.gen != gen {
			return
		}
		if claim && a.round != 0 && !a.n.rg.WantsArbitration(a.round) {
			a.s.tracef(a.n.id, "arbiter: round %d no longer wanted", a.round)
			a.round, a.busy = 0, false
			return
		}
		if a.n.frozen { // a stopped process issues no command
			a.s.after(Millisecond, run)
			return
		}
		f()
		a.s.dirty = true
	}
	a.s.after(extra+a.s.diskLatency(), run)
}

func (a *arbiter) cancel() { a.gen++; a.busy = false; a.round = 0 }

func (a *arbiter) keys() ([]uint64, error) {
	k, err := scsi.ReadKeys(ctx, a.n.nexus)
	return k.Keys, err
}

func (a *arbiter) reservation() (scsi.Reservation, error) {
	return scsi.ReadReservation(ctx, a.n.nexus)
}

// claim runs one Arbitration.
func (a *arbiter) claim(req regroup.Arbitration) {
	a.cancel()
	a.busy, a.round = true, req.Round
	a.s.tracef(a.n.id, "arbiter: claim round %d for %v (%v)", req.Round, req.Members, req.Class)
	done := func(won bool, reason string) {
		a.busy, a.round = false, 0
		a.s.tracef(a.n.id, "arbiter: round %d won=%v %s", req.Round, won, reason)
		a.n.rg.ArbitrationDone(req.Round, won, reason)
		a.s.flush(a.n)
	}
	start := func() {
		keys, err := a.keys()
		if err != nil {
			done(false, fmt.Sprintf("read keys: %v", err))
			return
		}
		if !slices.Contains(keys, a.key()) {
			done(false, "this node's key is not registered: fenced")
			return
		}
		res, err := a.reservation()
		if err != nil {
			done(false, fmt.Sprintf("read reservation: %v", err))
			return
		}
		holder := res.Held && res.Key == a.key()
		d := a.s.cfg.DefenceDelay
		var wait int64
		switch req.Class {
		case regroup.ClassMajority:
		case regroup.ClassUncontested:
			if !holder {
				wait = d
			}
		case regroup.ClassContested:
			wait = 2 * d
			if holder {
				wait = d
			}
		case regroup.ClassForm:
			if res.Held || len(keys) > 1 {
				wait = a.s.cfg.FormDelay
			}
		}
		a.step(wait, func() { a.fence(req, done) })
	}
	if req.Class == regroup.ClassForm {
		a.step(0, func() {
			if err := scsi.RegisterAndIgnore(ctx, a.n.nexus, a.key()); err != nil {
				done(false, fmt.Sprintf("register: %v", err))
				return
			}
			a.step(0, start)
		})
		return
	}
	a.step(0, start)
}

// fence preempts every key outside the members, one command per event,
// then makes sure a member holds the reservation.
func (a *arbiter) fence(req regroup.Arbitration, done func(bool, string)) {
	keys, err := a.keys()
	if err != nil {
		done(false, fmt.Sprintf("read keys: %v", err))
		return
	}
	if !slices.Contains(keys, a.key()) {
		done(false, "this node's key was removed while it waited: another partition won")
		return
	}
	for _, k := range keys {
		if !a.memberKey(k, req.Members) {
			victim := k
			a.step(0, func() {
				err := scsi.Preempt(ctx, a.n.nexus, a.key(), victim, scsi.WriteExclusiveRegistrantsOnly)
				if err != nil && !errors.Is(err, scsi.ErrReservationConflict) {
					done(false, fmt.Sprintf("preempt %#x: %v", victim, err))
					return
				}
				a.s.tracef(a.n.id, "arbiter: preempt %#x: %v", victim, err)
				a.fence(req, done) // re-read: a conflict means the victim or we are gone
			})
			return
		}
	}
	res, err := a.reservation()
	if err != nil {
		done(false, fmt.Sprintf("read reservation: %v", err))
		return
	}
	if res.Held {
		if !a.memberKey(res.Key, req.Members) {
			done(false, fmt.Sprintf("reservation held by %#x outside the membership", res.Key))
			return
		}
		done(true, "")
		return
	}
	a.step(0, func() {
		if err := scsi.Reserve(ctx, a.n.nexus, a.key(), scsi.WriteExclusiveRegistrantsOnly); err != nil {
			done(false, fmt.Sprintf("reserve: %v", err))
			return
		}
		done(true, "")
	})
}

func (a *arbiter) memberKey(k uint64, members regroup.NodeSet) bool {
	return k>>32 == uint64(a.s.cfg.ClusterTag) && members.Has(regroup.NodeID(k&0xffffffff))
}

// register puts a joined node's key on the disk, then checks that the
// reservation is held by a member of the membership it joined: if not, its
// sponsor's partition was fenced while the join ran, and the key comes off
// again at once (registration itself is not protected by the target).
func (a *arbiter) register() {
	fail := func(err error) {
		a.s.tracef(a.n.id, "arbiter: register: %v", err)
		a.n.rg.DiskRegistered(err)
		a.s.flush(a.n)
	}
	a.op(func() {
		if err := scsi.RegisterAndIgnore(ctx, a.n.nexus, a.key()); err != nil {
			fail(err)
			return
		}
		a.op(func() {
			res, err := a.reservation()
			if err != nil {
				fail(err)
				return
			}
			if _, members := a.n.rg.Membership(); res.Held && !a.memberKey(res.Key, members) {
				a.op(func() { _ = scsi.RegisterAndIgnore(ctx, a.n.nexus, 0) })
				fail(fmt.Errorf("reservation holder %#x is outside membership %v: the sponsor's partition was fenced", res.Key, members))
				return
			}
			a.s.tracef(a.n.id, "arbiter: registered %#x", a.key())
			a.n.rg.DiskRegistered(nil)
			a.s.flush(a.n)
		})
	})
}

func (a *arbiter) unregister() {
	a.op(func() {
		err := scsi.RegisterAndIgnore(ctx, a.n.nexus, 0)
		a.s.tracef(a.n.id, "arbiter: unregister: %v", err)
	})
}

// check is the periodic quorum check (QuorumCheckInterval): a member whose
// key is gone self-fences; the reservation holder defends by removing the
// keys of non-members (a node trying to form, a pruned node); a leader
// that finds no reservation takes it.
func (a *arbiter) check() {
	if a.busy || !a.n.rg.Member() || !a.n.rg.Registered() {
		return
	}
	keys, err := a.keys()
	if err != nil {
		// A member that cannot confirm its registration cannot tell a
		// dead path from being fenced: it stops, like a fenced one.
		a.s.tracef(a.n.id, "arbiter: quorum check: %v", err)
		a.n.rg.QuorumLost(fmt.Sprintf("quorum disk unreachable: %v", err))
		a.s.flush(a.n)
		return
	}
	if !slices.Contains(keys, a.key()) {
		a.s.tracef(a.n.id, "arbiter: quorum check: key gone")
		a.n.rg.QuorumLost("this node's key is no longer registered on the quorum disk")
		a.s.flush(a.n)
		return
	}
	res, err := a.reservation()
	if err != nil {
		return
	}
	_, members := a.n.rg.Membership()
	switch {
	case res.Held && res.Key == a.key():
		for _, k := range keys {
			if !a.memberKey(k, members) {
				victim := k
				a.op(func() {
					err := scsi.Preempt(ctx, a.n.nexus, a.key(), victim, scsi.WriteExclusiveRegistrantsOnly)
					a.s.tracef(a.n.id, "arbiter: defend: preempt %#x: %v", victim, err)
				})
				return
			}
		}
	case !res.Held && members.Min() == a.n.id:
		a.op(func() { _ = scsi.Reserve(ctx, a.n.nexus, a.key(), scsi.WriteExclusiveRegistrantsOnly) })
	}
}
