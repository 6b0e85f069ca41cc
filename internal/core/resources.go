package core

import (
	"errors"
	"strings"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// The failover manager runs inside the node core: it reads the database
// GUP applies, proposes its ownership and state changes through GUP, and
// holds this node's resources under the lease that the disk heartbeat
// renews (docs/resources.md).
//
// The lease. Every disk heartbeat write that the target accepts proves
// that this node's key was still registered when the write was issued,
// so nobody had preempted it yet. The write renews the lease to its
// issue time plus LeaseTicks; resmon, a separate process, terminates
// every resource when the lease runs out. A node that removes this one
// from the membership does so only after the arbitration preempted its
// key, so its install comes after the last write this node can have had
// accepted: waiting LeaseTicks (plus slack) after that install, it knows
// this node's resources are gone.

// Lease is a lease renewal for resmon: resources may stay online until
// Ticks ticks after tick From (the tick at which the disk write that
// renewed it was issued). Revoke: no lease, terminate everything now.
type Lease struct {
	From   int64
	Ticks  int
	Revoke bool
}

// DefaultLeaseTicks is the lease (300 ms).
const DefaultLeaseTicks = resources.DefaultLeaseTicks

func (n *Node) newFM() error {
	if n.cfg.DB == nil || n.cfg.NoGUP {
		return nil
	}
	fm, err := resources.New(resources.Config{
		Self: n.cfg.Self, Name: n.cfg.Name, Incarnation: n.cfg.Incarnation, DB: n.cfg.DB,
		LeaseTicks: n.cfg.LeaseTicks, WaitTicks: n.cfg.LeaseWaitTicks,
		Logger: n.log.With("core", "failover"),
	})
	n.fm = fm
	n.fmReqs = map[uint64]string{}
	return err
}

// leaseValid: an active member whose lease has not run out.
func (n *Node) leaseValid() bool {
	return n.rg.Member() && n.rg.Registered() && n.halted == "" && n.now < n.leaseUntil
}

// renewLease follows an accepted disk heartbeat write issued at tick from.
func (n *Node) renewLease(from int64) {
	if n.halted != "" || !n.rg.Member() {
		return
	}
	n.leaseUntil = from + int64(n.cfg.LeaseTicks)
	n.ready.Lease = &Lease{From: from, Ticks: n.cfg.LeaseTicks}
}

// revokeLease: this node stopped being an active member.
func (n *Node) revokeLease() {
	if n.leaseUntil == 0 && n.leaseRevoked {
		return
	}
	n.leaseUntil, n.leaseRevoked = 0, true
	n.ready.Lease = &Lease{Revoke: true}
}

// syncFM tells the failover manager the membership, the lease and the
// database, and moves its output into Ready: commands for resmon,
// proposals to GUP, events.
func (n *Node) syncFM() {
	if n.fm == nil {
		return
	}
	active := n.rg.Member() && n.rg.Registered() && n.halted == ""
	if !active && n.leaseUntil > 0 {
		n.revokeLease()
	}
	if active {
		n.leaseRevoked = false
	}
	epoch, m := n.rg.Membership()
	if n.fmInstalled {
		n.fm.SetEpoch(epoch.String())
	}
	n.proposeEvents()
	n.drainGUP() // the events' requests go out with this step, not the next tick's
	n.fm.SetLease(n.leaseValid())
	n.fm.SetMembership(active, m, n.fmInstalled)
	n.fmInstalled = false
	n.fm.DBChanged()
	// The nodes an administrator evicted, as the database says: regroup
	// removes those that are members and refuses their joins.
	n.rg.SetEvicted(n.fm.Model().Evicted)
	for n.fm.HasReady() {
		r := n.fm.Ready()
		n.ready.Resources = append(n.ready.Resources, r.Commands...)
		n.ready.Failover = append(n.ready.Failover, r.Events...)
		for _, p := range r.Proposals {
			req, err := n.gup.Propose(p.Data)
			if err != nil {
				n.fm.ProposalDone(p.Key, err)
				continue
			}
			n.fmReqs[req] = p.Key
		}
		n.drainGUP()
	}
}

// fmCompletion hands the failover manager the outcome of one of its
// proposals; it reports whether the completion was one.
func (n *Node) fmCompletion(req uint64, errText string) bool {
	key, ok := n.fmReqs[req]
	if !ok {
		return false
	}
	delete(n.fmReqs, req)
	var err error
	if errText != "" {
		err = errors.New(errText)
		if strings.Contains(errText, db.ErrPrecondition.Error()) {
			err = errors.Join(db.ErrPrecondition, err)
		}
	}
	n.fm.ProposalDone(key, err)
	return true
}

// StepResource takes resmon's report on a resource.
func (n *Node) StepResource(s resources.Status) {
	if n.fm != nil {
		n.fm.StepStatus(s)
	}
	n.process()
}

// ResmonDown tells the node that resmon exited (its resources count as
// failed); ResmonUp that a new one runs.
func (n *Node) ResmonDown(reason string) {
	if n.fm != nil {
		n.fm.ResmonDown(reason)
	}
	n.process()
}

// ResmonUp tells the node that a (new) resmon runs.
func (n *Node) ResmonUp() {
	if n.fm != nil {
		n.fm.ResmonUp()
	}
	n.process()
}

// SetClock gives the wall clock (Unix ms) and the local hour of day, for
// failover counts and failback windows.
func (n *Node) SetClock(unixMs int64, hour int) {
	n.ev.wall = unixMs
	if n.fm != nil {
		n.fm.SetClock(unixMs, hour)
	}
}

// Failover is the failover manager (nil without a database), for status
// (read only).
func (n *Node) Failover() *resources.Manager { return n.fm }

// Drain starts a planned stop's first half: this node's groups move away
// (or go offline) and it claims nothing more; Drained reports when it is
// done (true without a failover manager).
func (n *Node) Drain() {
	if n.fm != nil {
		n.fm.Drain()
	}
	n.process()
}

// Drained reports whether a drain finished.
func (n *Node) Drained() bool { return n.fm == nil || n.fm.Drained() }
