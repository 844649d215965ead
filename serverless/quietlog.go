package serverless

import (
	"context"
	"log/slog"
)

// quietLogger is the logger of a Handler given none: slog.Default (looked
// up at each record, so that a later slog.SetDefault applies), passing on
// warnings and errors only. A library says nothing below WARN in its host
// program's log unless asked. It is the same rule, and the same code, as
// the root package's default logger, which is unexported.
var quietLogger = slog.New(warnOnly{})

// warnOnly is quietLogger's handler. It keeps the attributes and groups
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
