package daemon

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// serveEvents answers GET /v1/events: the cluster-wide event log, which
// lives in the replicated database (docs/events.md), filtered; with
// follow=1 the matching events, then each new one as it is applied here,
// one JSON line each, until the client goes or the daemon stops.
func (d *Daemon) serveEvents(w http.ResponseWriter, r *http.Request) {
	f, follow, err := clusterapi.ParseEventFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, clusterapi.CodeBadRequest, err.Error())
		return
	}
	if !follow {
		ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
		defer cancel()
		var res clusterapi.EventsResult
		res.Seq, err = d.ReadDB(ctx, false, func(x *db.DB) { res.Events = clusterapi.EventLog(x, f) })
		if err != nil {
			httpError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
		return
	}
	// Watch first, then read what is there: nothing falls in between.
	ch, stop, err := d.Watch(r.Context())
	if err != nil {
		httpError(w, err)
		return
	}
	defer stop()
	var backlog []clusterapi.Event
	if _, err := d.ReadDB(r.Context(), true, func(x *db.DB) { backlog = clusterapi.EventLog(x, f) }); err != nil {
		httpError(w, err)
		return
	}
	last := f.Since
	send := func(enc *json.Encoder, evs []clusterapi.Event) bool {
		for _, e := range evs {
			if e.Seq <= last {
				continue
			}
			last = e.Seq
			if enc.Encode(e) != nil {
				return false
			}
		}
		return true
	}
	streamLines(w, r, ch, func(enc *json.Encoder) bool { return send(enc, backlog) },
		func(enc *json.Encoder, cs []db.Change) bool {
			if !hasNewEvent(cs) {
				return true
			}
			g := f
			g.Since = last
			var evs []clusterapi.Event
			_, err := d.ReadDB(r.Context(), true, func(x *db.DB) { evs = clusterapi.EventLog(x, g) })
			return err == nil && send(enc, evs)
		})
}

func hasNewEvent(cs []db.Change) bool {
	for _, c := range cs {
		if c.Kind == db.KindEvent && c.Op == db.Created || c.Op == db.Reset {
			return true
		}
	}
	return false
}
