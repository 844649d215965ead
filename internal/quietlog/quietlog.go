// Package quietlog is the default logger of this repository's libraries: a
// library says nothing below WARN in its host program's log unless it is
// given a logger. The root package and the serverless adapter use it.
package quietlog

import (
	"context"
	"log/slog"
)

// New returns the logger of a library given none: the program's default
// logger (slog.Default, looked up at each record, so that a later
// slog.SetDefault applies), passing on warnings and errors only.
func New() *slog.Logger { return slog.New(warnOnly{}) }

// warnOnly is New's handler. It keeps the attributes and groups
// added to it and applies them to the default handler of the moment.
type warnOnly struct {
	ops []func(slog.Handler) slog.Handler
}

func (warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && slog.Default().Handler().Enabled(ctx, l)
}

func (h warnOnly) Handle(ctx context.Context, r slog.Record) error {
	d := slog.Default().Handler()
	for _, op := range h.ops {
		d = op(d)
	}
	return d.Handle(ctx, r)
}

func (h warnOnly) WithAttrs(as []slog.Attr) slog.Handler {
	return warnOnly{ops: append(h.ops[:len(h.ops):len(h.ops)], func(d slog.Handler) slog.Handler { return d.WithAttrs(as) })}
}

func (h warnOnly) WithGroup(name string) slog.Handler {
	return warnOnly{ops: append(h.ops[:len(h.ops):len(h.ops)], func(d slog.Handler) slog.Handler { return d.WithGroup(name) })}
}
