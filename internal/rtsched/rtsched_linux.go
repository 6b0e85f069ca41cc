// Package rtsched keeps clusterd and resmon on time on a busy machine, as
// corosync does: every thread of the process at SCHED_RR, its memory
// locked, and the programs it starts (applications, agents, fsck) back at
// normal scheduling (docs/clusterd.md, "Real-time scheduling").
package rtsched

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// MaxPriority is the highest SCHED_RR priority Linux accepts.
const MaxPriority = 99

// Result says what Realtime did.
type Result struct {
	// Threads is how many threads were set to SCHED_RR.
	Threads int
	// Locked is whether mlockall succeeded; LockErr why not.
	Locked  bool
	LockErr error
}

// Realtime sets every thread of the calling process to SCHED_RR at prio
// (1..MaxPriority) and locks its memory. sched_setattr acts on one thread,
// so it walks /proc/self/task until a pass finds none left to change;
// threads created later inherit the policy from the thread that creates
// them. Memory is locked with MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT: a page
// is locked when first touched, so the Go heap's large reservations cost
// nothing until used (plain MCL_FUTURE would fault in every new mapping
// whole). An error means the scheduling was refused (no CAP_SYS_NICE, or
// no real-time budget in this cgroup); a refused mlockall is only reported
// in Result, the scheduling stands without it.
func Realtime(prio int) (Result, error) {
	var r Result
	if prio < 1 || prio > MaxPriority {
		return r, fmt.Errorf("rtsched: priority %d: want 1..%d", prio, MaxPriority)
	}
	n, err := setThreads("self", prio)
	r.Threads = n
	if err != nil {
		return r, err
	}
	r.LockErr = LockMemory()
	r.Locked = r.LockErr == nil
	return r, nil
}

// LockMemory locks the process's memory as Realtime does: every page as
// it is first touched, now and later (mlockall with MCL_ONFAULT).
func LockMemory() error {
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT); err != nil {
		return fmt.Errorf("rtsched: lock memory: %w", os.NewSyscallError("mlockall", err))
	}
	return nil
}

// SetProcess sets every thread of process pid to SCHED_RR at prio, as
// Realtime does for its caller, without locking its memory: for a test
// rig's helpers (tgtd standing in for a storage array). It returns how
// many threads it set.
func SetProcess(pid, prio int) (int, error) {
	if prio < 1 || prio > MaxPriority {
		return 0, fmt.Errorf("rtsched: priority %d: want 1..%d", prio, MaxPriority)
	}
	return setThreads(strconv.Itoa(pid), prio)
}

// setThreads sets every thread of /proc/PROC to SCHED_RR at prio: all or
// none.
func setThreads(proc string, prio int) (int, error) {
	want := unix.SchedAttr{Policy: unix.SCHED_RR, Priority: uint32(prio)}
	done := map[int]bool{}
	for pass := 0; pass < 10; pass++ {
		tids, err := threads(proc)
		if err != nil {
			return 0, err
		}
		changed := false
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			a := want
			if err := unix.SchedSetAttr(tid, &a, 0); err != nil {
				if errors.Is(err, unix.ESRCH) {
					continue // the thread exited meanwhile
				}
				for tid := range done { // all or none
					unix.SchedSetAttr(tid, &unix.SchedAttr{Policy: 0}, 0)
				}
				return 0, fmt.Errorf("rtsched: SCHED_RR priority %d on thread %d of %s: %w", prio, tid, proc, os.NewSyscallError("sched_setattr", err))
			}
			done[tid] = true
			changed = true
		}
		if !changed {
			break
		}
	}
	return len(done), nil
}

func threads(proc string) ([]int, error) {
	ents, err := os.ReadDir("/proc/" + proc + "/task")
	if err != nil {
		return nil, fmt.Errorf("rtsched: list threads of %s: %w", proc, err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// Policy is a thread's or process's scheduling policy and real-time
// priority (sched_getattr; pid 0 is the calling thread).
func Policy(pid int) (policy string, prio int, err error) {
	a, err := unix.SchedGetAttr(pid, 0)
	if err != nil {
		return "", 0, fmt.Errorf("rtsched: policy of %d: %w", pid, os.NewSyscallError("sched_getattr", err))
	}
	return PolicyName(a.Policy), int(a.Priority), nil
}

// PolicyName names a policy as /proc/PID/sched and chrt do.
func PolicyName(p uint32) string {
	switch p {
	case 0:
		return "SCHED_OTHER"
	case unix.SCHED_FIFO:
		return "SCHED_FIFO"
	case unix.SCHED_RR:
		return "SCHED_RR"
	case unix.SCHED_BATCH:
		return "SCHED_BATCH"
	case unix.SCHED_IDLE:
		return "SCHED_IDLE"
	case unix.SCHED_DEADLINE:
		return "SCHED_DEADLINE"
	}
	return "policy " + strconv.FormatUint(uint64(p), 10)
}

// Start is cmd.Start with the child at normal scheduling (SCHED_OTHER,
// nice 0) even when the caller runs real-time: a program resmon starts
// must not inherit the priority that keeps the membership and the lease
// on time, or a busy application would starve them.
//
// How: os/exec forks (clone with CLONE_VFORK) on the calling thread, and
// a child of a thread with SCHED_RESET_ON_FORK starts at SCHED_OTHER. So
// Start locks the goroutine to its thread, adds the flag to that thread's
// own policy, starts cmd, and takes the flag off again before it unlocks.
// The flag cannot be set for the whole process: Go's runtime creates its
// threads with clone too, and they would lose the real-time policy. The
// thread is kept, not discarded (a goroutine that exits locked ends its
// thread): PR_SET_PDEATHSIG, which genericapp and ocf ask for, fires when
// the thread that started the child exits. New runtime threads are not
// created from a locked thread (Go hands that to a template thread), so
// none inherits the flag meanwhile. A caller at normal scheduling starts
// cmd as it is.
//
// If the flag cannot be taken off again (it can: the same policy was just
// set with it) the thread keeps it, later runtime threads cloned from it
// start at SCHED_OTHER, and log (nil: discarded) gets a warning; cmd has
// started, so that is not an error of Start's.
func Start(cmd *exec.Cmd, log *slog.Logger) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	a, err := unix.SchedGetAttr(0, 0)
	if err != nil || (a.Policy != unix.SCHED_RR && a.Policy != unix.SCHED_FIFO) || a.Flags&unix.SCHED_FLAG_RESET_ON_FORK != 0 {
		return cmd.Start()
	}
	orig := unix.SchedAttr{Policy: a.Policy, Priority: a.Priority}
	reset := orig
	reset.Flags = unix.SCHED_FLAG_RESET_ON_FORK
	if err := unix.SchedSetAttr(0, &reset, 0); err != nil {
		return fmt.Errorf("rtsched: start %s at normal scheduling: %w", cmd.Path, os.NewSyscallError("sched_setattr", err))
	}
	err = cmd.Start()
	if e := unix.SchedSetAttr(0, &orig, 0); e != nil && log != nil {
		log.Warn("real-time scheduling: a thread keeps SCHED_RESET_ON_FORK", "thread", unix.Gettid(),
			"policy", PolicyName(orig.Policy), "priority", orig.Priority, "started", cmd.Path,
			"err", os.NewSyscallError("sched_setattr", e).Error())
	}
	return err
}
