package daemon

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/quorumdisk"
)

// serveLog answers GET /v1/log: the recovery log as this node reads it on
// its own path to the quorum LUN, on the request's goroutine (reads only,
// beside the disk worker; the device is safe for concurrent use), so the
// loop is not involved. A record being appended meanwhile may be missing
// from the end.
func (d *Daemon) serveLog(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	l, err := d.readLog(ctx)
	if err != nil {
		httpError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (d *Daemon) readLog(ctx context.Context) (clusterapi.Log, error) {
	if d.cfg.Device == nil {
		return clusterapi.Log{}, fmt.Errorf("read the recovery log: %w: this node has no quorum LUN", ErrNotServing)
	}
	bd, err := quorumdisk.NewSCSIBlocks(ctx, d.cfg.Device)
	if err != nil {
		return clusterapi.Log{}, fmt.Errorf("read the recovery log: %w", err)
	}
	qd, err := quorumdisk.Open(ctx, bd)
	if err != nil {
		return clusterapi.Log{}, fmt.Errorf("read the recovery log: open the quorum disk: %w", err)
	}
	rp, err := qd.ReadLog(ctx)
	if err != nil {
		return clusterapi.Log{}, fmt.Errorf("read the recovery log: %w", err)
	}
	return clusterapi.LogOf(rp), nil
}
