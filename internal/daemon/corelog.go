package daemon

import (
	"context"
	"log/slog"
)

// coreHandler passes a protocol core's records on with the core's name in
// front of the message ("regroup: halt"), so that they never read as the
// daemon's own event records (docs/clusterd.md lists those), and at most
// at Info level unless they are warnings.
type coreHandler struct {
	name string
	h    slog.Handler
}

func coreLogger(l *slog.Logger, name string) *slog.Logger {
	return slog.New(coreHandler{name: name, h: l.Handler()})
}

func (c coreHandler) Enabled(ctx context.Context, lv slog.Level) bool { return c.h.Enabled(ctx, lv) }

func (c coreHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, c.name+": "+r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool { nr.AddAttrs(a); return true })
	return c.h.Handle(ctx, nr)
}

func (c coreHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return coreHandler{name: c.name, h: c.h.WithAttrs(as)}
}

func (c coreHandler) WithGroup(g string) slog.Handler {
	return coreHandler{name: c.name, h: c.h.WithGroup(g)}
}
