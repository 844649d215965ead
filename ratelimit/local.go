package ratelimit

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys is the number of keys a Local tracks at most when
// LocalOptions.MaxKeys is zero. At roughly 200 bytes plus the key's length
// per key, that is about 20 MB for short keys.
const DefaultMaxKeys = 100_000

// localShards is the most shards a Local splits its keys over. Each shard
// has its own lock, so parallel Allow calls on different keys rarely wait
// for each other; 64 keeps that true on large machines for a few KB.
const localShards = 64

// LocalOptions configures NewLocal. The zero value (or a nil pointer) is
// ready to use and gives the defaults each field describes.
type LocalOptions struct {
	// MaxKeys caps how many keys the limiter tracks at once, which bounds
	// its memory. Zero or negative means DefaultMaxKeys.
	//
	// Keys idle long enough for their bucket to refill are dropped first;
	// that never changes a decision, since a new key starts with a full
	// bucket. Past the cap, a new key evicts the least recently used key of
	// its shard even if that key's bucket is not full: the evicted key
	// starts over with a full bucket, so under a flood of distinct keys the
	// limiter errs towards allowing, never towards denying a key it has not
	// seen. The cap is split evenly over the shards, so eviction order is
	// only approximately least recently used across the whole limiter, and
	// a shard may start evicting a little before MaxKeys keys in total.
	MaxKeys int

	// Now returns the current time. Nil means time.Now. It is intended for
	// tests that drive one fake clock for several limiters, such as the
	// conformance suite (see ratelimittest.Clock) and the comparison of
	// redislimit with Local; production code leaves it nil. A test of a
	// Local alone can instead leave it nil and run in a testing/synctest
	// bubble, whose fake clock time.Now reads.
	Now func() time.Time
}

// Local is an in-process token-bucket Limiter: each key has its own
// golang.org/x/time/rate.Limiter that refills at Events per Period and
// holds at most Burst tokens. It suits a single gateway node and tests;
// gateways that share limits between nodes use a distributed backend such
// as ratelimit/redislimit.
//
// Memory is bounded by LocalOptions.MaxKeys. Local starts no goroutines, so
// it needs no Close: idle keys are dropped during later Allow calls.
//
// Decision.Remaining is exact for the key at the moment of the decision:
// the whole tokens left in its bucket. Decision.RetryAfter is the time until
// the bucket holds one whole token again.
//
// A Local is safe for concurrent use by multiple goroutines. Use NewLocal to
// create one; the zero value is not usable.
type Local struct {
	limit Limit
	rate  rate.Limit
	// fill is how long a key must stay idle for its bucket to be full
	// again, whatever it held before; after that a key can be forgotten.
	fill   time.Duration
	now    func() time.Time
	seed   maphash.Seed
	shards []localShard
}

// localShard holds the keys whose hash falls on it, in least-recently-used
// order, under one lock.
type localShard struct {
	mu       sync.Mutex
	keys     map[string]*localEntry
	lru      localEntry // sentinel: lru.next is the most recently used entry
	capacity int
	// Padding keeps neighbouring shards' locks on different cache lines,
	// so that cores working on different shards do not slow each other.
	_ [64]byte
}

type localEntry struct {
	key        string
	lim        *rate.Limiter
	last       time.Time // the last Allow for this key
	prev, next *localEntry
}

var _ Limiter = (*Local)(nil)

// NewLocal returns a Local enforcing l on every key. opts may be nil; NewLocal
// copies it, so later changes have no effect.
func NewLocal(l Limit, opts *LocalOptions) *Local {
	return newLocal(l, opts, localShards)
}

// newLocal is NewLocal with the number of shards as a parameter, so that
// in-package tests can watch eviction within a single shard.
func newLocal(l Limit, opts *LocalOptions, shards int) *Local {
	var o LocalOptions
	if opts != nil {
		o = *opts
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.Now == nil {
		o.Now = time.Now
	}

	l = l.WithDefaults()
	lim := &Local{limit: l, now: o.Now, seed: maphash.MakeSeed()}
	if l.Unlimited() {
		return lim
	}
	lim.rate = rate.Limit(float64(l.Events) / l.Period.Seconds())
	lim.fill = durationForTokens(lim.rate, float64(l.Burst))

	n := min(shards, o.MaxKeys)
	lim.shards = make([]localShard, n)
	for i := range lim.shards {
		s := &lim.shards[i]
		s.keys = make(map[string]*localEntry)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
		// Spread the remainder so the shards add up to MaxKeys exactly.
		s.capacity = o.MaxKeys / n
		if i < o.MaxKeys%n {
			s.capacity++
		}
	}
	return lim
}

// Allow consumes one token of key's bucket if it holds one. It does no I/O
// and never returns an error; ctx is not used.
func (l *Local) Allow(ctx context.Context, key string) (Decision, error) {
	if l.limit.Unlimited() {
		return Decision{Allowed: true, Remaining: math.MaxInt}, nil
	}
	s := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]

	s.mu.Lock()
	// Reading the clock under the lock keeps each shard's LRU order in
	// time order, which idle eviction relies on to stop at the first
	// entry that is not idle.
	now := l.now()
	e := s.entry(key, now, l)
	allowed := e.lim.AllowN(now, 1)
	tokens := e.lim.TokensAt(now)
	var retry time.Duration
	if !allowed {
		retry = retryAfter(e.lim, l.rate, now, tokens)
	}
	s.mu.Unlock()

	if !allowed {
		return Decision{RetryAfter: max(retry, 1)}, nil
	}
	return Decision{Allowed: true, Remaining: max(int(tokens), 0)}, nil
}

// Len returns the number of keys the limiter tracks now. It is at most
// LocalOptions.MaxKeys; idle keys may be counted until a later Allow on
// their shard drops them.
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.keys)
		s.mu.Unlock()
	}
	return n
}

// entry returns key's entry, created with a full bucket if missing, and
// marks it most recently used at now. It drops idle entries on the way and
// evicts the least recently used one when the shard is full. s.mu must be
// held.
func (s *localShard) entry(key string, now time.Time, l *Local) *localEntry {
	for e := s.lru.prev; e != &s.lru && now.Sub(e.last) >= l.fill; e = s.lru.prev {
		s.remove(e)
	}
	e, ok := s.keys[key]
	if ok {
		s.unlink(e)
	} else {
		if len(s.keys) >= s.capacity {
			s.remove(s.lru.prev)
		}
		e = &localEntry{key: key, lim: rate.NewLimiter(l.rate, l.limit.Burst)}
		s.keys[key] = e
	}
	// last only moves forward, so that it is never earlier than the
	// limiter's own last event even if the clock steps back: idle eviction
	// must not forget a bucket that is still refilling.
	if ok && now.Before(e.last) {
		now = e.last
	}
	e.last = now
	e.next, e.prev = s.lru.next, &s.lru
	e.next.prev, s.lru.next = e, e
	return e
}

func (s *localShard) remove(e *localEntry) {
	s.unlink(e)
	delete(s.keys, e.key)
}

func (s *localShard) unlink(e *localEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// retryAfter returns the shortest wait after now at which lim, which has
// just denied an event at now, would allow one. rate.Limiter works in
// floating point, so the quotient "missing tokens / rate" can be off by a
// nanosecond either way; searching with the limiter's own answer makes
// "wait RetryAfter, then you are allowed; any less, you are not" exact.
// lim's lock must not be held.
func retryAfter(lim *rate.Limiter, r rate.Limit, now time.Time, tokens float64) time.Duration {
	allowed := func(d time.Duration) bool { return allowedAt(lim, r, now.Add(d)) }
	// Bracket the answer in (lo, hi] around the estimate, then bisect.
	guess := max(durationForTokens(r, 1-tokens), 1)
	lo, hi := time.Duration(0), guess
	if allowed(guess) {
		for step := time.Duration(1); ; step *= 2 {
			if probe := guess - step; probe <= 0 || !allowed(probe) {
				lo = max(probe, 0)
				break
			}
			hi = guess - step
		}
	} else {
		lo = guess
		for step := time.Duration(1); ; step *= 2 {
			if hi = guess + step; hi < 0 {
				// The clock stepped back further than a Duration spans.
				return math.MaxInt64
			}
			if allowed(hi) {
				break
			}
			lo = hi
		}
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if allowed(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// allowedAt reports whether lim.AllowN(t, 1) would succeed, without
// consuming a token. It mirrors the limiter's own test: a shortfall worth
// less than a nanosecond of refill counts as none.
func allowedAt(lim *rate.Limiter, r rate.Limit, t time.Time) bool {
	short := 1 - lim.TokensAt(t)
	return short <= 0 || time.Duration(short/float64(r)*float64(time.Second)) == 0
}

// durationForTokens returns the shortest duration in which a bucket
// refilling at r gains at least tokens, as rate.Limiter converts durations
// to tokens, or math.MaxInt64 if that is longer than a Duration can hold.
func durationForTokens(r rate.Limit, tokens float64) time.Duration {
	f := math.Round(tokens / float64(r) * float64(time.Second))
	if f >= math.MaxInt64/2 {
		return math.MaxInt64
	}
	d := time.Duration(f)
	for step := time.Duration(1); d.Seconds()*float64(r) < tokens; step *= 2 {
		d += step
	}
	return d
}
