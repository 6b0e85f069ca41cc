package boot

import (
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Reaper owns every wait4 of the process. PID 1 inherits orphans (daemons
// started in the background whose parent exited) and must reap them, so it
// cannot also let os/exec wait for its own children: one loop reaps every
// child and hands the status of the ones it started to their waiters.
// A child is registered under mu while it is forked, so a child that exits at
// once is never mistaken for an orphan. Use ProcessReaper: a second reaper
// would steal the first one's children.
type Reaper struct {
	mu      sync.Mutex
	waiting map[int]chan unix.WaitStatus
}

// ProcessReaper returns the one reaper of the process, starting it on the
// first call.
var ProcessReaper = sync.OnceValue(newReaper)

func newReaper() *Reaper {
	r := &Reaper{waiting: make(map[int]chan unix.WaitStatus)}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	go func() {
		for range sig {
			r.drain()
		}
	}()
	return r
}

func (r *Reaper) drain() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.mu.Lock()
		ch := r.waiting[pid]
		delete(r.waiting, pid)
		r.mu.Unlock()
		if ch != nil {
			ch <- ws
		}
	}
}

// Start forks and execs argv with attr; the channel receives its wait
// status once it exits.
func (r *Reaper) Start(path string, argv []string, attr *syscall.ProcAttr) (int, <-chan unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.waiting[pid] = ch
	return pid, ch, nil
}
