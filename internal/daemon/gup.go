package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup"
	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/dbfile"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

// The daemon carries GUP's messages on the intra-cluster streams
// (internal/stream), keeps the cluster database (gup/db) the core applies
// updates to, saves its local copy (internal/dbfile) and answers the admin
// API's database requests. Every protocol decision is the core's.

// frameGUP is the stream frame type of a GUP message.
const frameGUP = stream.FirstAppType

// saveEvery is how often a changed database is saved to the local copy.
const saveEvery = 200 * time.Millisecond

// dbState adapts the database to GUP: a nil snapshot is the empty one.
type dbState struct{ *db.DB }

func (s dbState) Restore(b []byte) error {
	if b == nil {
		b = db.New().Snapshot()
	}
	return s.DB.Restore(b)
}

type gupFrame struct {
	from    nodes.ID
	payload []byte
}

// pendingWrite is a proposed update's waiter, and when it was proposed.
type pendingWrite struct {
	ch chan txResult
	at time.Time
}

type txResult struct {
	seq     uint64
	outcome string // the transaction's error, if it failed
	err     error  // it was not committed (or not known to be)
}

// ErrNotServing is returned for database requests the node cannot serve
// now (not a member, stopping).
var ErrNotServing = errors.New("daemon: the database is not available on this node now")

// loadLocalCopy restores the node's last local copy, before it joins.
// A damaged copy is moved aside (never deleted) and the node starts empty:
// the locker sends it the state.
func (d *Daemon) loadLocalCopy() {
	path := d.cfg.DBPath
	if path == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		d.log.Warn("state directory", "path", filepath.Dir(path), "err", err)
	}
	seq, snap, err := dbfile.Load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.log.Info("no local copy of the database yet", "path", path)
		return
	case err == nil:
		err = d.node.GUP().Restore(snap)
	}
	if err != nil {
		bad := path + ".bad"
		d.log.Error("local copy of the database unusable: moved aside, starting empty", "path", path, "moved_to", bad, "err", err)
		if rerr := os.Rename(path, bad); rerr != nil {
			d.log.Warn("move the unusable local copy aside", "path", path, "err", rerr)
		}
		return
	}
	d.saved = seq
	d.log.Info("local copy of the database loaded", "path", path, "seq", seq, "objects", d.db.Len())
}

// startStreams starts the mesh; its frames come to the loop.
func (d *Daemon) startStreams() error {
	if d.cfg.Credentials == nil {
		d.log.Warn("no stream credentials: the database is not replicated to or from this node")
		return nil
	}
	m, err := stream.New(stream.Config{
		Credentials: d.cfg.Credentials, ClusterTag: d.cfg.ClusterTag, Incarnation: d.inc,
		Listen: d.cfg.StreamListen, Peers: d.cfg.StreamPeers,
		Handler: func(from nodes.ID, typ uint8, payload []byte) {
			if typ != frameGUP {
				d.log.Warn("stream frame of an unknown type", "peer", int(from), "type", typ)
				return
			}
			select {
			case d.gupIn <- gupFrame{from, payload}:
			case <-d.stopped:
			}
		},
		Logger: d.log.With("part", "stream"),
	})
	if err != nil {
		return fmt.Errorf("daemon: streams: %w", err)
	}
	d.mesh = m
	return nil
}

// stepGUP decodes a frame and hands it to the core (loop goroutine).
func (d *Daemon) stepGUP(f gupFrame) {
	var m gup.Message
	if err := m.UnmarshalBinary(f.payload); err != nil {
		d.counters.gupDropped++
		d.log.Warn("GUP message dropped", "peer", int(f.from), "err", err)
		return
	}
	if m.From != f.from || m.To != d.cfg.Self {
		d.counters.gupDropped++
		d.log.Warn("GUP message dropped", "peer", int(f.from), "err", fmt.Sprintf("claims %d -> %d", m.From, m.To))
		return
	}
	d.node.StepGUP(m)
}

// flushGUP carries out GUP's part of a Ready (loop goroutine).
func (d *Daemon) flushGUP(r gup.Ready) {
	for _, m := range r.Messages {
		if d.mesh == nil {
			break
		}
		b, _ := m.MarshalBinary()
		if err := d.mesh.Send(m.To, frameGUP, b); err != nil {
			d.log.Debug("GUP send", "peer", int(m.To), "err", err)
		}
	}
	for _, c := range r.Completions {
		if w, ok := d.writes[c.Req]; ok {
			delete(d.writes, c.Req)
			d.gupLatency.observe(d.cfg.Now().Sub(w.at))
			w.ch <- txResult{seq: c.Seq, outcome: c.Err}
		}
	}
	for _, rd := range r.Reads {
		if fn, ok := d.reads[rd.ReadID]; ok {
			delete(d.reads, rd.ReadID)
			fn(true)
		}
	}
	for _, e := range r.Events {
		switch e.Kind {
		case gup.EventLocker:
			d.log.Info("locker", "term", e.Term, "seq", e.Seq, "records", e.Records)
		case gup.EventLockerKnown:
			d.log.Info("locker known", "peer", int(e.Node), "term", e.Term)
		case gup.EventLockerLost:
			d.log.Warn("locker lost", "reason", e.Reason)
		case gup.EventReset:
			d.log.Info("database reset", "seq", e.Seq, "reason", e.Reason)
		case gup.EventCheckpoint:
			d.log.Info("checkpoint", "seq", e.Seq)
		case gup.EventLogTrouble:
			d.log.Warn("recovery log", "reason", e.Reason)
		}
	}
	if ch := d.db.TakeChanges(); len(ch) > 0 {
		d.dirty = true
		for id, w := range d.watchers {
			select {
			case w <- ch:
			default: // a watcher that does not keep up is dropped
				close(w)
				delete(d.watchers, id)
			}
		}
	}
}

// maybeSave hands a snapshot to the saver when the database changed and
// the last save is done (loop goroutine).
func (d *Daemon) maybeSave(force bool) {
	if d.cfg.DBPath == "" || !d.dirty || d.saving {
		return
	}
	now := d.cfg.Now()
	if !force && now.Sub(d.savedAt) < saveEvery {
		return
	}
	g := d.node.GUP()
	d.dirty, d.saving, d.savedAt = false, true, now
	job := saveJob{seq: g.Applied(), snap: g.Snapshot()}
	if force {
		d.writeCopy(job)
		d.saving = false
		return
	}
	go func() {
		d.writeCopy(job)
		select {
		case d.savedc <- job.seq:
		case <-d.stopped:
		}
	}()
}

type saveJob struct {
	seq  uint64
	snap []byte
}

func (d *Daemon) writeCopy(j saveJob) {
	if err := dbfile.Save(d.cfg.DBPath, j.seq, j.snap); err != nil {
		d.log.Warn("save the local copy of the database", "path", d.cfg.DBPath, "err", err)
	}
}

// failPending answers every waiting request when the loop stops.
func (d *Daemon) failPending(why string) {
	for req, w := range d.writes {
		w.ch <- txResult{err: fmt.Errorf("%w: %s (the update may or may not have been committed)", ErrNotServing, why)}
		delete(d.writes, req)
	}
	for id, fn := range d.reads {
		delete(d.reads, id)
		fn(false)
	}
	for id, w := range d.watchers {
		close(w)
		delete(d.watchers, id)
	}
}

// Commit hands an encoded transaction to GUP and waits until it is applied
// on this node: its sequence number, and its outcome (the error of a
// transaction that failed and changed nothing).
func (d *Daemon) Commit(ctx context.Context, tx []byte) (seq uint64, outcome string, err error) {
	res := make(chan txResult, 1)
	err = d.call(ctx, func() {
		req, err := d.node.Propose(tx)
		if err != nil {
			res <- txResult{err: fmt.Errorf("%w: %v", ErrNotServing, err)}
			return
		}
		d.writes[req] = pendingWrite{ch: res, at: d.cfg.Now()}
	})
	if err != nil {
		return 0, "", err
	}
	select {
	case r := <-res:
		return r.seq, r.outcome, r.err
	case <-ctx.Done():
		return 0, "", fmt.Errorf("commit: %w (the update may still be committed)", ctx.Err())
	}
}

// ReadDB runs fn on the database, on the loop goroutine. A linearizable
// read first learns the committed sequence number from the locker and
// waits until this node applied it; a stale one reads at once.
func (d *Daemon) ReadDB(ctx context.Context, stale bool, fn func(*db.DB)) (uint64, error) {
	done := make(chan uint64, 1)
	failed := make(chan struct{}, 1)
	var id uint64
	var rerr error
	err := d.call(ctx, func() {
		if stale {
			fn(d.db)
			done <- d.node.GUP().Applied()
			return
		}
		id, rerr = d.node.Read()
		if rerr != nil {
			rerr = fmt.Errorf("%w: %v", ErrNotServing, rerr)
			return
		}
		d.reads[id] = func(ok bool) {
			if !ok {
				failed <- struct{}{}
				return
			}
			fn(d.db)
			done <- d.node.GUP().Applied()
		}
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, err
	}
	select {
	case seq := <-done:
		return seq, nil
	case <-failed:
		return 0, fmt.Errorf("%w: the daemon stopped", ErrNotServing)
	case <-ctx.Done():
		_ = d.call(context.Background(), func() {
			delete(d.reads, id)
			d.node.CancelRead(id)
		})
		return 0, fmt.Errorf("read: %w", ctx.Err())
	}
}

// Watch returns a channel of the database's changes from now on; it is
// closed when the watcher falls behind, or the daemon stops, or cancel is
// called.
func (d *Daemon) Watch(ctx context.Context) (<-chan []db.Change, func(), error) {
	ch := make(chan []db.Change, 256)
	var id int
	err := d.call(ctx, func() {
		d.watchSeq++
		id = d.watchSeq
		d.watchers[id] = ch
	})
	if err != nil {
		return nil, nil, err
	}
	cancel := func() {
		_ = d.call(context.Background(), func() {
			if w, ok := d.watchers[id]; ok {
				close(w)
				delete(d.watchers, id)
			}
		})
	}
	return ch, cancel, nil
}

// call runs f on the loop goroutine.
func (d *Daemon) call(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case d.calls <- func() { f(); close(done) }:
	case <-d.stopped:
		return fmt.Errorf("%w: the daemon stopped", ErrNotServing)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-d.stopped:
		return fmt.Errorf("%w: the daemon stopped", ErrNotServing)
	}
}
