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
	s    *Sim
	n    *node
	gen  uint64 // bumps cancel in-flight operations
	busy bool   // a claim is running: the quorum check waits
}

var ctx = context.Background()

func (a *arbiter) key() uint64 { return Key(a.s.cfg.ClusterTag, a.n.id) }

// step schedules f after one disk command latency, unless cancelled.
func (a *arbiter) step(extra int64, f func()) {
	gen, inc := a.gen, a.n.inc
	a.s.after(extra+a.s.diskLatency(), func() {
		if a.gen != gen || a.n.inc != inc || !a.n.running {
			return
		}
		f()
		a.s.dirty = true
	})
}

func (a *arbiter) cancel() { a.gen++; a.busy = false }

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
	a.busy = true
	a.s.tracef(a.n.id, "arbiter: claim round %d for %v (%v)", req.Round, req.Members, req.Class)
	done := func(won bool, reason string) {
		a.busy = false
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

func (a *arbiter) register() {
	a.step(0, func() {
		err := scsi.RegisterAndIgnore(ctx, a.n.nexus, a.key())
		a.s.tracef(a.n.id, "arbiter: register %#x: %v", a.key(), err)
		a.n.rg.DiskRegistered(err)
		a.s.flush(a.n)
	})
}

func (a *arbiter) unregister() {
	a.step(0, func() {
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
		return // transport: try again next interval
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
				a.step(0, func() {
					err := scsi.Preempt(ctx, a.n.nexus, a.key(), victim, scsi.WriteExclusiveRegistrantsOnly)
					a.s.tracef(a.n.id, "arbiter: defend: preempt %#x: %v", victim, err)
				})
				return
			}
		}
	case !res.Held && members.Min() == a.n.id:
		a.step(0, func() { _ = scsi.Reserve(ctx, a.n.nexus, a.key(), scsi.WriteExclusiveRegistrantsOnly) })
	}
}
