package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// The admin API's database endpoints (clusterapi's DBPath).

// dbTimeout bounds a database request that names no deadline.
const dbTimeout = 30 * time.Second

// maxTxBody bounds the JSON body of POST /v1/db.
const maxTxBody = db.MaxTxLen

// httpError answers err with its status and code: 503 not serving, 504
// timeout, 400 a transaction that is not well formed, else 500.
func httpError(w http.ResponseWriter, err error) {
	code, errCode := http.StatusInternalServerError, clusterapi.CodeInternal
	switch {
	case errors.Is(err, ErrNotServing), errors.Is(err, errNotRunning):
		code, errCode = http.StatusServiceUnavailable, clusterapi.CodeNotServing
	case errors.Is(err, context.DeadlineExceeded):
		code, errCode = http.StatusGatewayTimeout, clusterapi.CodeTimeout
	case errors.Is(err, clusterapi.ErrBadTx):
		code, errCode = http.StatusBadRequest, clusterapi.CodeBadRequest
	}
	writeError(w, code, errCode, err.Error())
}

// readJSON decodes the request's body, at most limit bytes of one JSON
// value with no unknown field, into v. It answers a body over the limit
// with 413 and bad JSON with 400 (the decoder's message), and then
// returns false.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = terr
			if err == nil {
				err = errors.New("data after the JSON value")
			}
		}
	}
	var mb *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &mb):
		writeError(w, http.StatusRequestEntityTooLarge, clusterapi.CodeTooLarge,
			fmt.Sprintf("the request body is larger than the limit of %d bytes", mb.Limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, clusterapi.CodeBadRequest, "bad JSON: the request body is empty")
	default:
		writeError(w, http.StatusBadRequest, clusterapi.CodeBadRequest, "bad JSON: "+err.Error())
	}
	return false
}

func (d *Daemon) serveCommit(w http.ResponseWriter, r *http.Request) {
	var t clusterapi.Tx
	if !readJSON(w, r, maxTxBody, &t) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	tx, err := t.DBTx()
	var enc []byte
	if err == nil {
		enc, err = tx.MarshalBinary()
	}
	switch {
	case errors.Is(err, db.ErrInvalid):
		// A well-formed transaction that the database's checks refuse (a
		// value out of range or of the wrong type, a bad name): refused
		// as one refused when applied, 409 with this node's seq (the
		// CLI's exit 3), nothing changed.
		seq, _ := d.ReadDB(ctx, true, func(*db.DB) {})
		writeJSON(w, http.StatusConflict, clusterapi.ErrorBody{Error: err.Error(), Code: clusterapi.CodeTxFailed, Seq: seq})
		return
	case err != nil:
		httpError(w, err)
		return
	}
	seq, outcome, err := d.Commit(ctx, enc)
	switch {
	case err != nil:
		httpError(w, err)
	case outcome != "":
		writeJSON(w, http.StatusConflict, clusterapi.ErrorBody{Error: outcome, Code: clusterapi.CodeTxFailed, Seq: seq})
	default:
		writeJSON(w, http.StatusOK, clusterapi.TxResult{Seq: seq})
	}
}

func (d *Daemon) serveDBInfo(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	var info clusterapi.DBInfo
	err := d.call(ctx, func() {
		g := d.node.GUP()
		l, t := g.Locker()
		info = clusterapi.DBInfo{Seq: g.Applied(), Objects: d.db.Len(), Locker: int(l), Term: t, IsLocker: g.IsLocker()}
	})
	if err != nil {
		httpError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (d *Daemon) serveWatch(w http.ResponseWriter, r *http.Request) {
	ch, cancel, err := d.Watch(r.Context())
	if err != nil {
		httpError(w, err)
		return
	}
	defer cancel()
	streamLines(w, r, ch, nil, func(enc *json.Encoder, cs []db.Change) bool {
		for _, c := range cs {
			if enc.Encode(clusterapi.FromChange(c)) != nil {
				return false
			}
		}
		return true
	})
}

// streamLines answers 200 with JSON lines (application/x-ndjson): what
// first writes, then what each writes of every batch of changes from ch,
// flushed after each, until the client goes, the daemon stops (ch closed)
// or a write fails (false).
func streamLines(w http.ResponseWriter, r *http.Request, ch <-chan []db.Change,
	first func(*json.Encoder) bool, each func(*json.Encoder, []db.Change) bool) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	flush := func() {
		if fl != nil {
			fl.Flush()
		}
	}
	enc := json.NewEncoder(w)
	if first != nil && !first(enc) {
		return
	}
	flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case cs, ok := <-ch:
			if !ok || !each(enc, cs) {
				return
			}
			flush()
		}
	}
}

func (d *Daemon) serveList(w http.ResponseWriter, r *http.Request) {
	k, err := db.ParseKind(r.PathValue("kind"))
	if err != nil {
		writeError(w, http.StatusNotFound, clusterapi.CodeNotFound, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	res := clusterapi.ListResult{Objects: []clusterapi.Object{}}
	seq, err := d.ReadDB(ctx, r.URL.Query().Get("stale") != "", func(x *db.DB) {
		for _, o := range x.List(k) {
			res.Objects = append(res.Objects, clusterapi.FromObject(o))
		}
	})
	if err != nil {
		httpError(w, err)
		return
	}
	res.Seq = seq
	writeJSON(w, http.StatusOK, res)
}

func (d *Daemon) serveGet(w http.ResponseWriter, r *http.Request) {
	k, err := db.ParseKind(r.PathValue("kind"))
	if err != nil {
		writeError(w, http.StatusNotFound, clusterapi.CodeNotFound, err.Error())
		return
	}
	name := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	var o db.Object
	var found bool
	seq, err := d.ReadDB(ctx, r.URL.Query().Get("stale") != "", func(x *db.DB) { o, found = x.Get(k, name) })
	switch {
	case err != nil:
		httpError(w, err)
	case !found:
		writeJSON(w, http.StatusNotFound, clusterapi.ErrorBody{Error: fmt.Sprintf("no %v named %q", k, name), Code: clusterapi.CodeNotFound, Seq: seq})
	default:
		writeJSON(w, http.StatusOK, clusterapi.ObjectResult{Seq: seq, Object: clusterapi.FromObject(o)})
	}
}
