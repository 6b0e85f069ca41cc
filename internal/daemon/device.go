package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi"
)

// OpenDevice opens the quorum LUN: iscsi://host[:port]/target-iqn/lun
// through the userspace initiator as initiatorName (logged in now), or a
// Linux SCSI device node (/dev/sdX, /dev/sgN) through SG_IO. onReconnect,
// if set, is told of every iSCSI re-login (Daemon.PathReplaced).
func OpenDevice(ctx context.Context, addr, initiatorName string, log *slog.Logger, onReconnect func(iscsi.ReconnectInfo)) (scsi.Device, error) {
	switch {
	case strings.HasPrefix(addr, "iscsi://"):
		s, err := iscsi.Open(ctx, addr, iscsi.Config{
			InitiatorName: initiatorName,
			LoginTimeout:  5 * time.Second,
			Logger:        log,
			OnReconnect:   onReconnect,
		})
		if err != nil {
			return nil, fmt.Errorf("open quorum device: %w", err)
		}
		return s, nil
	case strings.HasPrefix(addr, "/dev/"):
		dev, err := scsi.OpenSGIO(addr)
		if err != nil {
			return nil, fmt.Errorf("open quorum device: %w", err)
		}
		return dev, nil
	}
	return nil, fmt.Errorf("open quorum device %q: want iscsi://host[:port]/target-iqn/lun, /dev/sdX or /dev/sgN", addr)
}

// PathReplaced is told that the iSCSI session to the quorum LUN was logged
// in again. Safe from any goroutine. When the target started a new session
// (not a reinstated connection), tgt no longer admits this node under its
// registration; re-registering could undo a fence that happened meanwhile,
// so a member self-fences instead and comes back by joining again
// (docs/clusterd.md).
func (d *Daemon) PathReplaced(info iscsi.ReconnectInfo) {
	f := func() {
		if info.SameSession {
			d.log.Warn("quorum path reconnected, same session", "cause", fmt.Sprint(info.Cause))
			return
		}
		d.log.Warn("quorum path reconnected, new session", "cause", fmt.Sprint(info.Cause))
		d.node.DiskSessionReplaced()
	}
	select {
	case d.calls <- f:
	case <-d.stopped:
	}
}
