package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/internal/api"
)

// The admin API's database endpoints (internal/api's DBPath).

// dbTimeout bounds a database request that names no deadline.
const dbTimeout = 30 * time.Second

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotServing):
		code = http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	case errors.Is(err, api.ErrBadTx):
		code = http.StatusBadRequest
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (d *Daemon) dbHandlers(mux *http.ServeMux) {
	mux.HandleFunc("POST "+api.DBPath, func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
		defer cancel()
		body, err := io.ReadAll(io.LimitReader(r.Body, db.MaxTxLen+1))
		if err != nil {
			httpError(w, fmt.Errorf("read the transaction: %w", err))
			return
		}
		if len(body) > db.MaxTxLen {
			httpError(w, fmt.Errorf("%w: larger than %d bytes", api.ErrBadTx, db.MaxTxLen))
			return
		}
		var t api.Tx
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		dec.UseNumber()
		if err := dec.Decode(&t); err != nil {
			httpError(w, fmt.Errorf("%w: %v", api.ErrBadTx, err))
			return
		}
		tx, err := t.DBTx()
		if err != nil {
			httpError(w, err)
			return
		}
		enc, err := tx.MarshalBinary()
		if err != nil {
			httpError(w, fmt.Errorf("%w: %v", api.ErrBadTx, err))
			return
		}
		seq, outcome, err := d.Commit(ctx, enc)
		switch {
		case err != nil:
			httpError(w, err)
		case outcome != "":
			writeJSON(w, http.StatusConflict, api.TxResult{Seq: seq, Error: outcome})
		default:
			writeJSON(w, http.StatusOK, api.TxResult{Seq: seq})
		}
	})
	mux.HandleFunc("GET "+api.DBPath, func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
		defer cancel()
		var info api.DBInfo
		err := d.call(ctx, func() {
			g := d.node.GUP()
			l, t := g.Locker()
			info = api.DBInfo{Seq: g.Applied(), Objects: d.db.Len(), Locker: int(l), Term: t, IsLocker: g.IsLocker()}
		})
		if err != nil {
			httpError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, info)
	})
	mux.HandleFunc("GET "+api.DBPath+"/watch", func(w http.ResponseWriter, r *http.Request) {
		ch, cancel, err := d.Watch(r.Context())
		if err != nil {
			httpError(w, err)
			return
		}
		defer cancel()
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		fl, _ := w.(http.Flusher)
		if fl != nil {
			fl.Flush()
		}
		enc := json.NewEncoder(w)
		for {
			select {
			case <-r.Context().Done():
				return
			case cs, ok := <-ch:
				if !ok {
					return
				}
				for _, c := range cs {
					if enc.Encode(api.FromChange(c)) != nil {
						return
					}
				}
				if fl != nil {
					fl.Flush()
				}
			}
		}
	})
	mux.HandleFunc("GET "+api.DBPath+"/{kind}", func(w http.ResponseWriter, r *http.Request) {
		k, err := db.ParseKind(r.PathValue("kind"))
		if err != nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
		defer cancel()
		res := api.ListResult{Objects: []api.Object{}}
		seq, err := d.ReadDB(ctx, r.URL.Query().Get("stale") != "", func(x *db.DB) {
			for _, o := range x.List(k) {
				res.Objects = append(res.Objects, api.FromObject(o))
			}
		})
		if err != nil {
			httpError(w, err)
			return
		}
		res.Seq = seq
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("GET "+api.DBPath+"/{kind}/{name}", func(w http.ResponseWriter, r *http.Request) {
		k, err := db.ParseKind(r.PathValue("kind"))
		if err != nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
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
			writeJSON(w, http.StatusNotFound, map[string]any{"seq": seq, "error": fmt.Sprintf("no %v named %q", k, name)})
		default:
			writeJSON(w, http.StatusOK, api.ObjectResult{Seq: seq, Object: api.FromObject(o)})
		}
	})
}
