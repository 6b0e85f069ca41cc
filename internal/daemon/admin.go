package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/heartbeat"
	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

// The admin API's JSON types live in clusterapi, shared with the CLI and
// the test rigs; these names keep the daemon's code as it was.
type (
	Status        = clusterapi.Status
	NetworkStatus = clusterapi.NetworkStatus
	Counters      = clusterapi.Counters
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
	s.Cluster, s.QuorumDevice = d.cfg.ClusterName, d.cfg.QuorumDevice
	for _, n := range d.cfg.Nodes {
		if n.ID == d.cfg.Self {
			continue
		}
		ps := clusterapi.PeerStatus{Node: int(n.ID), Name: n.Name, NetworksUp: []string{}}
		if pv, ok := det.Peer(n.ID); ok {
			ps.Alive, ps.Incarnation = pv.Alive, pv.Incarnation
			for k, up := range pv.NetworksUp {
				if up && k < len(d.cfg.Networks) {
					ps.NetworksUp = append(ps.NetworksUp, d.cfg.Networks[k].Name)
				}
			}
		}
		s.Peers = append(s.Peers, ps)
	}
	g := d.node.GUP()
	l, term := g.Locker()
	s.GUP = clusterapi.GUPStatus{Seq: g.Applied(), Locker: int(l), Term: term, IsLocker: g.IsLocker(), Pending: g.Pending(),
		Connected: []int{}, Dropped: d.counters.gupDropped, Streams: clusterapi.StreamCounters{Refused: map[string]uint64{}}}
	if d.mesh != nil {
		s.GUP.Connected = ids(d.mesh.Connected())
		c := d.mesh.Counters()
		s.GUP.Streams = clusterapi.StreamCounters{Sent: c.Sent, Received: c.Received, Dropped: c.Dropped, Connections: c.Connections,
			Refused: map[string]uint64{}, BadRecords: c.BadRecords, DecodeErrors: c.DecodeErrors}
		for r, v := range c.Refused {
			if v > 0 {
				s.GUP.Streams.Refused[stream.Reason(r).String()] = v
			}
		}
	}
	return s
}

// errNotRunning answers a status request after the loop stopped.
var errNotRunning = errors.New("daemon: not running")

// Status asks the running loop for its status.
func (d *Daemon) Status(ctx context.Context) (Status, error) {
	reply := make(chan Status, 1)
	select {
	case d.status <- reply:
	case <-d.stopped:
		return Status{}, errNotRunning
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

// Role is what a caller of the admin API may do: read (every GET), or
// also write (an operator).
type Role uint8

// The roles; RoleNone is a refused caller's.
const (
	RoleNone Role = iota
	RoleReadOnly
	RoleOperator
)

func (r Role) String() string {
	switch r {
	case RoleReadOnly:
		return "read-only"
	case RoleOperator:
		return "operator"
	}
	return "none"
}

// Identify names the caller of a request on one listener: its role, or an
// error saying why it is refused (answered 403 with that error). The unix
// socket's is socketRole (SO_PEERCRED); a listener with client
// certificates supplies one that maps the certificate to a role.
type Identify func(*http.Request) (Role, error)

// route is one endpoint of the admin API. The table adminRoutes is what the
// server serves, and what TestOpenAPIMatchesRoutes holds
// docs/api/openapi.yaml to.
type route struct {
	method string
	path   string // a net/http pattern's path, as OpenAPI writes it: /v1/db/{kind}
	write  bool   // the operator role only
	serve  func(d *Daemon, w http.ResponseWriter, r *http.Request)
}

var adminRoutes = []route{
	{http.MethodGet, clusterapi.StatusPath, false, (*Daemon).serveStatus},
	{http.MethodGet, clusterapi.MetricsPath, false, (*Daemon).serveMetrics},
	{http.MethodGet, clusterapi.DBPath, false, (*Daemon).serveDBInfo},
	{http.MethodPost, clusterapi.DBPath, true, (*Daemon).serveCommit},
	{http.MethodGet, clusterapi.DBPath + "/watch", false, (*Daemon).serveWatch},
	{http.MethodGet, clusterapi.DBPath + "/{kind}", false, (*Daemon).serveList},
	{http.MethodGet, clusterapi.DBPath + "/{kind}/{name}", false, (*Daemon).serveGet},
	{http.MethodGet, clusterapi.EventsPath, false, (*Daemon).serveEvents},
	{http.MethodGet, clusterapi.LogPath, false, (*Daemon).serveLog},
	{http.MethodPost, clusterapi.LeavePath, true, (*Daemon).serveLeave},
}

// writeJSON answers code with v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers code with the API's error shape.
func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, clusterapi.ErrorBody{Error: msg, Code: errCode})
}

// roleKey holds the caller's Role in a request's context.
type roleKey struct{}

// adminHandler serves adminRoutes to the callers identify admits: a caller
// it refuses gets 403 for any request; a read-only caller's write gets 403
// naming its role; an unknown path 404 and a known path with another
// method 405, each with the API's error shape.
func (d *Daemon) adminHandler(identify Identify) http.Handler {
	mux := http.NewServeMux()
	byPath := map[string][]route{}
	var paths []string
	for _, rt := range adminRoutes {
		if byPath[rt.path] == nil {
			paths = append(paths, rt.path)
		}
		byPath[rt.path] = append(byPath[rt.path], rt)
	}
	for _, p := range paths {
		rs := byPath[p]
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			var allow []string
			for _, rt := range rs {
				if rt.method != r.Method {
					allow = append(allow, rt.method)
					continue
				}
				if role, _ := r.Context().Value(roleKey{}).(Role); rt.write && role < RoleOperator {
					writeError(w, http.StatusForbidden, clusterapi.CodeForbidden,
						fmt.Sprintf("%s %s needs the operator role; this caller's is %s", r.Method, rt.path, role))
					return
				}
				rt.serve(d, w, r)
				return
			}
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, clusterapi.CodeMethodNotAllowed,
				fmt.Sprintf("%s %s: the method is not allowed (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, clusterapi.CodeNotFound, fmt.Sprintf("no endpoint %s (the API's paths are under /v1/)", r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, err := identify(r)
		if err != nil {
			writeError(w, http.StatusForbidden, clusterapi.CodeForbidden, err.Error())
			return
		}
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), roleKey{}, role)))
	})
}

// peerKey holds the peer credentials of an admin socket connection in its
// context.
type peerKey struct{}

// peer is who is at the other end of a unix socket connection.
type peer struct {
	uid uint32
	err error
}

// socketRole is the unix socket's Identify: the operator role for root and
// for the user clusterd runs as (root, in production; the tests' user),
// nobody else.
func socketRole(r *http.Request) (Role, error) {
	p, ok := r.Context().Value(peerKey{}).(peer)
	switch {
	case !ok:
		return RoleNone, errors.New("the admin socket did not identify its caller")
	case p.err != nil:
		return RoleNone, fmt.Errorf("the admin socket could not identify its caller: %w", p.err)
	}
	self := uint32(os.Geteuid())
	if p.uid == 0 || p.uid == self {
		return RoleOperator, nil
	}
	owner := "root's"
	if self != 0 {
		owner = fmt.Sprintf("uid %d's", self)
	}
	return RoleNone, fmt.Errorf("the admin socket is %s: uid %d refused", owner, p.uid)
}

func (d *Daemon) serveStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	s, err := d.Status(ctx)
	if err != nil {
		httpError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s)
}

// certRole is the TCP listener's Identify: the role its verified client
// certificate names in its subject's organization (O), "operator" or
// "read-only" (both: operator); a certificate naming neither is refused.
func certRole(r *http.Request) (Role, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return RoleNone, errors.New("the admin API on TCP needs a verified client certificate")
	}
	leaf := r.TLS.VerifiedChains[0][0]
	role := RoleNone
	for _, o := range leaf.Subject.Organization {
		switch o {
		case RoleOperator.String():
			role = max(role, RoleOperator)
		case RoleReadOnly.String():
			role = max(role, RoleReadOnly)
		}
	}
	if role == RoleNone {
		return RoleNone, fmt.Errorf("the client certificate of %q (issuer %q) names no role: its subject's organization (O) is %q, want %s or %s",
			leaf.Subject.CommonName, leaf.Issuer.CommonName, leaf.Subject.Organization, RoleOperator, RoleReadOnly)
	}
	return role, nil
}

// RemoteAPI serves the admin API on TCP with TLS 1.3: every client must
// present a certificate signed by one of ClientCAs (refused at the
// handshake otherwise), whose subject's organization names its role
// (certRole).
type RemoteAPI struct {
	Listen    string
	ClientCAs []*x509.Certificate
	Cert      tls.Certificate
}

type adminServer struct {
	srv  *http.Server
	path string // the unix socket's, removed by close
	done chan struct{}
}

// serveAdmin serves the admin API over HTTP on the unix socket
// cfg.AdminSocket: mode 0600, and every connection's peer checked
// (socketRole). A stale socket file is replaced.
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
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return d.startAdmin(l, path, &http.Server{
		Handler: d.adminHandler(socketRole),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		},
	}), nil
}

// serveRemoteAdmin serves the admin API on cfg.RemoteAPI's TCP address
// with TLS; a refused handshake is logged (a warning naming the client's
// address and why).
func (d *Daemon) serveRemoteAdmin() (*adminServer, error) {
	ra := d.cfg.RemoteAPI
	pool := x509.NewCertPool()
	for _, c := range ra.ClientCAs {
		pool.AddCert(c)
	}
	l, err := net.Listen("tcp", ra.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin API on %s: %w", ra.Listen, err)
	}
	log := d.log.With("listener", l.Addr().String())
	tl := tls.NewListener(l, &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{ra.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})
	log.Info("admin API on TCP with TLS")
	return d.startAdmin(tl, "", &http.Server{
		Handler:  d.adminHandler(certRole),
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}), nil
}

// startAdmin serves srv on l until close.
func (d *Daemon) startAdmin(l net.Listener, path string, srv *http.Server) *adminServer {
	srv.ReadHeaderTimeout = 5 * time.Second
	a := &adminServer{srv: srv, path: path, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Warn("admin server", "err", err.Error())
		}
	}()
	return a
}

func (a *adminServer) close() {
	a.srv.Close()
	<-a.done
	if a.path != "" {
		os.Remove(a.path)
	}
}

// serveLeave starts a planned stop of this node, as SIGTERM does: its
// groups move away (the drain), then it leaves the membership and
// clusterd exits 0. The body is {} (4 KiB at most). It answers once the
// stop began; the caller follows the
// drain in the database (clusterapi's Leave).
func (d *Daemon) serveLeave(w http.ResponseWriter, r *http.Request) {
	var req clusterapi.LeaveRequest
	if !readJSON(w, r, 4096, &req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := d.call(ctx, func() { d.stopReq = true }); err != nil {
		httpError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, clusterapi.LeaveResult{Node: d.self.Name, Stopping: true})
}
