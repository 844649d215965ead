// Package redislimit is a ratelimit.Limiter kept in Redis, so that every
// gateway node sharing one Redis shares each key's allowance.
//
// It implements GCRA (the generic cell rate algorithm), which behaves
// exactly like a token bucket of Limit.Burst tokens refilled at Events per
// Period, but stores a single number per key: the theoretical arrival time
// (TAT) of the key's next event. Each decision is one Lua script run
// atomically by Redis, so concurrent callers on any number of nodes never
// admit more than the limit. Keys expire (PEXPIRE) once their bucket would
// be full again, so Redis memory holds only keys active within about one
// Period.
package redislimit

import (
	"context"
	_ "embed"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/http-tunnel/tunnel/ratelimit"
)

// DefaultPrefix is the Redis key prefix used when Options.Prefix is empty.
const DefaultPrefix = "ratelimit:"

// expirySlack is how long a key outlives the moment its bucket is full
// again. Expiry runs on Redis's clock while the algorithm runs on the
// gateway nodes' clocks; the slack keeps a node whose clock is a little
// behind from seeing a key vanish while, by its clock, the key still owes
// time. It costs only a second more of memory per active key.
const expirySlack = time.Second

// gcra is the script; see gcra.lua for its contract.
//
//go:embed gcra.lua
var gcraSource string

// gcra is shared by every Limiter: it is immutable apart from the digest
// go-redis caches, which is the same for all.
var gcra = redis.NewScript(gcraSource)

// Options configures New. The zero value (or a nil pointer) is ready to use
// and gives the defaults each field describes.
type Options struct {
	// Prefix is prepended to every key to form its Redis key. Empty means
	// DefaultPrefix. Limiters with different Limits on one Redis need
	// different prefixes (say "ratelimit:connect:" and
	// "ratelimit:request:"); otherwise a key's state is read under the
	// wrong Limit.
	Prefix string

	// Now returns the current time. Nil means time.Now. It is intended for
	// tests, which drive a fake clock (see ratelimittest.Clock); production
	// code leaves it nil.
	//
	// The time is taken on the gateway node, not on the Redis server, and
	// sent with each call; nodes sharing a Redis should keep their clocks
	// in sync (NTP): a node whose clock is ahead by d sees every key d
	// fuller than it is.
	Now func() time.Time
}

// Limiter is a ratelimit.Limiter whose state lives in Redis.
//
// Time is handled in whole microseconds: the interval between events,
// Period/Events, is rounded down to a microsecond (so the rate may be higher
// than asked by less than a microsecond per event) and is at least one, which
// caps a key at one million events per second.
//
// Decision.Remaining is the number of whole tokens left in the key's bucket
// right after this decision, exact at that instant; concurrent callers on
// the same key may already have taken some. Decision.RetryAfter is the time
// until the bucket holds one whole token again.
//
// A Limiter is safe for concurrent use by multiple goroutines. It holds no
// connection of its own; closing the client is the caller's job. Use New to
// create one; the zero value is not usable.
type Limiter struct {
	client redis.Scripter
	limit  ratelimit.Limit
	// interval is the emission interval T = Period/Events in microseconds:
	// the time one token takes to refill.
	interval int64
	prefix   string
	now      func() time.Time
}

var _ ratelimit.Limiter = (*Limiter)(nil)

// New returns a Limiter enforcing l on every key, with its state in the
// Redis that client talks to. client is typically a redis.UniversalClient
// (a *redis.Client, *redis.ClusterClient or *redis.Ring); each key's state
// is one Redis key, so Redis Cluster works. opts may be nil; New copies it.
func New(client redis.Scripter, l ratelimit.Limit, opts *Options) *Limiter {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l = l.WithDefaults()
	lim := &Limiter{client: client, limit: l, prefix: o.Prefix, now: o.Now}
	if !l.Unlimited() {
		lim.interval = max(l.Period.Microseconds()/int64(l.Events), 1)
	}
	return lim
}

// Allow consumes one token of key's bucket if it holds one, in one atomic
// round trip to Redis. ctx bounds that round trip. Unlimited Limits are
// answered without contacting Redis.
func (l *Limiter) Allow(ctx context.Context, key string) (ratelimit.Decision, error) {
	if l.limit.Unlimited() {
		return ratelimit.Decision{Allowed: true, Remaining: math.MaxInt}, nil
	}
	res, err := gcra.Run(ctx, l.client, []string{l.prefix + key},
		l.now().UnixMicro(), l.interval, l.limit.Burst, expirySlack.Milliseconds()).Int64Slice()
	if err != nil {
		return ratelimit.Decision{}, fmt.Errorf("redislimit: allow %q: %w", key, err)
	}
	if len(res) != 3 {
		return ratelimit.Decision{}, fmt.Errorf("redislimit: allow %q: script returned %d values, want 3", key, len(res))
	}
	if res[0] == 0 {
		return ratelimit.Decision{RetryAfter: max(time.Duration(res[1])*time.Microsecond, 1)}, nil
	}
	return ratelimit.Decision{Allowed: true, Remaining: int(res[2])}, nil
}
