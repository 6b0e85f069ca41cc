package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/heartbeat"
	"github.com/wolfpack-ha/wolfpack/internal/api"
	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

// The admin API's JSON types live in internal/api, shared with the CLI and
// the test rigs; these names keep the daemon's code as it was.
type (
	Status        = api.Status
	NetworkStatus = api.NetworkStatus
	Counters      = api.Counters
)

// snapshot builds the status on the loop goroutine.
func (d *Daemon) snapshot() Status {
	ep, m := d.node.Membership()
	det := d.node.Detector()
	s := Status{
		Node: int(d.cfg.Self), Name: d.self.Name, Incarnation: d.inc,
		State: d.node.State().String(), Stage: strings.ToLower(d.node.Stage().String()), Round: d.node.Round(),
		Epoch: ep.String(), Members: ids(m), Registered: d.node.Registered(), QuorumOwner: d.node.Owner(),
		Alive: ids(det.Alive()), Networks: map[string]NetworkStatus{},
		UptimeMS: d.cfg.Now().Sub(d.startedAt).Milliseconds(),
	}
	for k, n := range d.cfg.Networks {
		ns := NetworkStatus{Up: []int{}}
		if k < len(d.counters.sendErrors) {
			ns.SendErrors = d.counters.sendErrors[k]
		}
		for _, id := range det.Alive().IDs() {
			if pv, ok := det.Peer(id); ok && k < len(pv.NetworksUp) && pv.NetworksUp[k] {
				ns.Up = append(ns.Up, int(id))
			}
		}
		s.Networks[n.Name] = ns
	}
	c := det.Counters()
	s.Counters = Counters{
		HeartbeatAccepted: c.Accepted, HeartbeatDropped: map[string]uint64{},
		RegroupAccepted: d.counters.regroupAccepted, RegroupDropped: map[string]uint64{},
		Regroups: d.regroups,
	}
	for r := heartbeat.DropMalformed; r <= heartbeat.DropWrongNetwork; r++ {
		s.Counters.HeartbeatDropped[r.String()] = c.Drops(r)
	}
	for k, v := range d.counters.regroupDropped {
		s.Counters.RegroupDropped[k] = v
	}
	g := d.node.GUP()
	l, term := g.Locker()
	s.GUP = api.GUPStatus{Seq: g.Applied(), Locker: int(l), Term: term, IsLocker: g.IsLocker(), Pending: g.Pending(),
		Connected: []int{}, Dropped: d.counters.gupDropped, Streams: api.StreamCounters{Refused: map[string]uint64{}}}
	if d.mesh != nil {
		s.GUP.Connected = ids(d.mesh.Connected())
		c := d.mesh.Counters()
		s.GUP.Streams = api.StreamCounters{Sent: c.Sent, Received: c.Received, Dropped: c.Dropped, Connections: c.Connections,
			Refused: map[string]uint64{}, BadRecords: c.BadRecords, DecodeErrors: c.DecodeErrors}
		for r, v := range c.Refused {
			if v > 0 {
				s.GUP.Streams.Refused[stream.Reason(r).String()] = v
			}
		}
	}
	return s
}

// Status asks the running loop for its status.
func (d *Daemon) Status(ctx context.Context) (Status, error) {
	reply := make(chan Status, 1)
	select {
	case d.status <- reply:
	case <-d.stopped:
		return Status{}, errors.New("daemon: not running")
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	select {
	case s := <-reply:
		return s, nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

type adminServer struct {
	srv  *http.Server
	path string
	done chan struct{}
}

// serveAdmin serves the admin API over HTTP on the unix socket
// cfg.AdminSocket (mode 0660; a stale socket file is replaced).
func (d *Daemon) serveAdmin() (*adminServer, error) {
	path := d.cfg.AdminSocket
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.StatusPath, func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		s, err := d.Status(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s)
	})
	d.dbHandlers(mux)
	a := &adminServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		path: path,
		done: make(chan struct{}),
	}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Warn("admin server", "err", err.Error())
		}
	}()
	return a, nil
}

func (a *adminServer) close() {
	a.srv.Close()
	<-a.done
	os.Remove(a.path)
}
