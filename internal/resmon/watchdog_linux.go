package resmon

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// watchdog pets a watchdog device while resmon may keep resources up: the
// backstop for a resmon that can no longer terminate them (stuck in a
// Terminate, or frozen itself). On a device, a missed pet reboots the node
// at the end of the device's timeout.
type watchdog struct {
	f      *os.File
	period time.Duration
	log    *slog.Logger
	stop   chan struct{}
	done   chan struct{}
}

// filePetPeriod is the pet period of a file that is not a watchdog device
// (WDIOC_GETTIMEOUT fails): tests use a regular file or a pipe.
const filePetPeriod = time.Second

// openWatchdog opens path, pets it at once and then every third of its
// timeout while mayPet says so.
func openWatchdog(path string, mayPet func() bool, log *slog.Logger) (*watchdog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("resmon: open watchdog: %w", err)
	}
	w := &watchdog{f: f, period: filePetPeriod, log: log.With("watchdog", path), stop: make(chan struct{}), done: make(chan struct{})}
	if t, err := unix.IoctlGetInt(int(f.Fd()), unix.WDIOC_GETTIMEOUT); err == nil && t > 0 {
		w.period = time.Duration(t) * time.Second / 3
	} else {
		w.log.Info("watchdog: not a watchdog device (WDIOC_GETTIMEOUT failed); petting every second", "err", err)
	}
	if err := w.pet(); err != nil {
		f.Close()
		return nil, err
	}
	go w.run(mayPet)
	return w, nil
}

// pet writes one byte (not 'V', which would arm the magic close).
func (w *watchdog) pet() error {
	if _, err := w.f.Write([]byte{'.'}); err != nil {
		return fmt.Errorf("resmon: pet the watchdog: %w", err)
	}
	return nil
}

func (w *watchdog) run(mayPet func() bool) {
	defer close(w.done)
	t := time.NewTicker(w.period)
	defer t.Stop()
	withheld := false
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		if !mayPet() {
			if !withheld {
				w.log.Error("watchdog: not petting it: the lease expired and a resource is still online")
			}
			withheld = true
			continue
		}
		if withheld {
			w.log.Warn("watchdog: petting it again")
			withheld = false
		}
		if err := w.pet(); err != nil {
			w.log.Error("watchdog", "err", err)
		}
	}
}

// close stops petting, writes the magic 'V' (the driver disarms instead of
// rebooting) and closes the device: a clean exit.
func (w *watchdog) close() {
	close(w.stop)
	<-w.done
	if _, err := w.f.Write([]byte{'V'}); err != nil {
		w.log.Error("watchdog: magic close", "err", err)
	}
	w.f.Close()
}
