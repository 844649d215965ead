// Package ratelimit defines how a gateway asks whether a request may pass:
// the Limiter interface, the Limit it enforces and the Decision it returns.
//
// The interface lives here, like database/sql's, so that backends
// (ratelimit/redislimit, ratelimit/dynamolimit) import this package and never
// the root tunnel package. This package also provides Local, an in-process
// token-bucket limiter for a single gateway node and for tests. Every Limiter
// implementation should pass the conformance suite in ratelimit/ratelimittest.
//
// A Limiter only decides. What to do when it fails (a backend error) is the
// caller's policy: the gateway fails open by default, see docs/ratelimit.md.
package ratelimit

import (
	"context"
	"time"
)

// DefaultPeriod is the window used when Limit.Period is zero or negative.
const DefaultPeriod = time.Second

// Limit says how many events a key may have per Period, with bursts up to
// Burst. The zero value is unlimited: every event is allowed.
//
// A Limit is a value; limiters copy it when they are created and never see
// later changes.
type Limit struct {
	// Events is the number of events allowed per Period. Zero or negative
	// means no limit: every Allow is allowed without touching a backend.
	Events int

	// Period is the window the Events are counted over. Zero or negative
	// means DefaultPeriod (one second).
	Period time.Duration

	// Burst is the bucket size of token-bucket limiters (Local, redislimit):
	// how many events may arrive at once after a key has been idle. Zero or
	// negative means Events, so that a key may spend a whole Period's
	// allowance at once but never more. Fixed-window limiters (dynamolimit)
	// ignore it: they allow Events per window, however they arrive.
	Burst int
}

// Unlimited reports whether l allows every event, that is whether
// l.Events <= 0.
func (l Limit) Unlimited() bool { return l.Events <= 0 }

// WithDefaults returns a copy of l with Period and Burst filled in as their
// docs describe, so that backends apply the same defaults. Events is left as
// it is: an unlimited Limit stays unlimited.
func (l Limit) WithDefaults() Limit {
	if l.Period <= 0 {
		l.Period = DefaultPeriod
	}
	if l.Burst <= 0 {
		l.Burst = l.Events
	}
	return l
}

// Decision is the answer to one Allow call.
type Decision struct {
	// Allowed reports whether the event was admitted (and counted).
	Allowed bool

	// RetryAfter is, when Allowed is false, how long until the next event
	// for the same key would be allowed if no other event arrives; it is
	// then greater than zero and, unless the limiter's clock stepped back,
	// at most the Limit's Period. It is zero when Allowed is true. It suits
	// an HTTP Retry-After header once rounded up to whole seconds.
	RetryAfter time.Duration

	// Remaining is a best-effort count of the events the key may still have
	// right now, after this one: zero when Allowed is false, and
	// math.MaxInt when the Limit is unlimited. Distributed limiters compute
	// it from the state they just wrote, so concurrent callers may see it
	// change at once; each limiter's doc says how exact it is.
	Remaining int
}

// Limiter decides whether an event for a key may happen now.
//
// Keys are opaque strings chosen by the caller (a client IP, a tunnel ID,
// a token hash); each key has its own allowance and keys never affect one
// another. Implementations must be safe for concurrent use.
type Limiter interface {
	// Allow consumes one event for key if it is allowed. ctx bounds
	// backend I/O. A non-nil error means the backend failed: the Decision
	// is then meaningless and the caller applies its own fail-open or
	// fail-closed policy. An error caused by ctx wraps ctx.Err().
	Allow(ctx context.Context, key string) (Decision, error)
}
