package resmon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/procgroup"
)

// What a resmon that dies leaves behind. A generic application's process
// dies with resmon (Pdeathsig) or is killed by the next one through its
// process group record (procgroup); an address, a systemd unit, an OCF
// agent's daemon or a mounted disk outlive it. So resmon records every
// resource it opens, as the online command that opened it, in the state
// directory, and removes the record when the resource is offline and
// closed. The next resmon, before it says hello, opens every recorded
// resource and terminates it; so does a terminate or an online of a
// resource it has not opened. The failover manager holds such a group on
// the node until the new resmon has reported the resource offline.

// orphanSweepWait bounds the sweep at start: terminates are quick by
// contract, but the hello must not wait on a type that is not.
const orphanSweepWait = 15 * time.Second

const recordPrefix = "res-"

func recordPath(dir, resource string) string {
	return filepath.Join(dir, recordPrefix+url.PathEscape(resource))
}

// saveRecord records that m (an online command) opened its resource.
func saveRecord(dir string, m Message) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("resmon: record %s: %w", m.Resource, err)
	}
	p := recordPath(dir, m.Resource)
	if err := os.WriteFile(p+".tmp", b, 0o600); err != nil {
		return fmt.Errorf("resmon: record %s: %w", m.Resource, err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("resmon: record %s: %w", m.Resource, err)
	}
	return nil
}

func removeRecord(dir, resource string) error {
	if err := os.Remove(recordPath(dir, resource)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("resmon: remove the record of %s: %w", resource, err)
	}
	return nil
}

// loadRecord reads resource's record; ok is false when there is none.
func loadRecord(dir, resource string) (m Message, ok bool, err error) {
	b, err := os.ReadFile(recordPath(dir, resource))
	if errors.Is(err, os.ErrNotExist) {
		return Message{}, false, nil
	}
	if err != nil {
		return Message{}, false, fmt.Errorf("resmon: read the record of %s: %w", resource, err)
	}
	m, err = Decode(b)
	if err == nil && (m.Op != OpOnline || m.Resource != resource) {
		err = fmt.Errorf("%w: not the online command of %s", ErrProtocol, resource)
	}
	if err != nil {
		return Message{}, false, fmt.Errorf("resmon: the record of %s (%s): %w", resource, recordPath(dir, resource), err)
	}
	return m, true, nil
}

// recordedResources lists the resources recorded in dir.
func recordedResources(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("resmon: list the records: %w", err)
	}
	var names []string
	for _, e := range es {
		n, ok := strings.CutPrefix(e.Name(), recordPrefix)
		if !ok || strings.HasSuffix(n, ".tmp") {
			continue
		}
		if name, err := url.PathUnescape(n); err == nil {
			names = append(names, name)
		}
	}
	return names, nil
}

// terminateRecorded terminates what a previous resmon left of resource:
// its recorded instance and its process group. It reports whether there
// was anything.
func (h *host) terminateRecorded(resource string, log *slog.Logger) bool {
	dir := h.opt.StateDir
	found := false
	if n, err := procgroup.KillOrphan(dir, resource); err != nil {
		log.Error("could not kill the process group a previous resmon left", "err", err)
	} else if n != 0 {
		found = true
		log.Warn("killed the process group a previous resmon left", "processes", n)
	}
	m, ok, err := loadRecord(dir, resource)
	if err != nil {
		log.Error("could not read what a previous resmon left; removing the record", "err", err)
		_ = removeRecord(dir, resource)
		return found
	}
	if !ok {
		return found
	}
	typ := h.opt.Types[m.Type]
	if typ == nil {
		log.Error("a previous resmon left a resource of a type this one does not host", "type", m.Type)
		return true
	}
	inst, err := typ.Open(resource, m.Props, log)
	if err != nil {
		log.Error("could not open what a previous resmon left", "err", err)
		return true
	}
	inst.Terminate()
	inst.Close()
	if err := removeRecord(dir, resource); err != nil {
		log.Error("terminated what a previous resmon left, but", "err", err)
	}
	log.Warn("terminated what a previous resmon left", "type", m.Type)
	return true
}

// sweepOrphans terminates every resource a previous resmon recorded, in
// parallel, within orphanSweepWait.
func (h *host) sweepOrphans(ctx context.Context) {
	if h.opt.StateDir == "" {
		return
	}
	names, err := recordedResources(h.opt.StateDir)
	if err != nil {
		h.log.Error("could not sweep what a previous resmon left", "err", err)
		return
	}
	if len(names) == 0 {
		return
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() { h.terminateRecorded(name, h.log.With("resource", name)) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		h.log.Warn("swept what a previous resmon left", "resources", len(names), "took", time.Since(start))
	case <-time.After(orphanSweepWait):
		h.log.Error("a terminate of what a previous resmon left still runs; going on", "waited", orphanSweepWait)
	case <-ctx.Done():
	}
}
