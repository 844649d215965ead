// Package ratelimittest is the conformance suite every ratelimit.Limiter
// implementation runs, so that the gateway can swap backends without
// changing what clients see.
//
// A backend's test calls Run with a constructor. The suite drives time
// through a fake Clock it owns, so every limiter must take its clock from
// the function it is given. Subtests run in parallel and use keys with a
// random prefix, so several packages may run the suite against one shared
// server at once; a constructor must therefore not clear shared state.
package ratelimittest

import (
	"context"
	"crypto/rand"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/ratelimit"
)

// NewLimiter builds the limiter under test. It must enforce l, read the
// time only from now, and release what it holds with t.Cleanup.
type NewLimiter func(t *testing.T, l ratelimit.Limit, now func() time.Time) ratelimit.Limiter

// callTimeout bounds each Allow the suite makes, so that a hung backend
// fails the test instead of stalling it until the global test timeout.
const callTimeout = 30 * time.Second

// Run runs the conformance suite against the limiters newLimiter builds.
//
// The suite checks that a key is allowed exactly Limit.Events times within
// a window and then denied with 0 < RetryAfter <= Period; that keys are
// independent; that a key is allowed again after the clock moves by the
// RetryAfter it was given, window after window; that Events <= 0 means
// unlimited; that concurrent calls on one key admit exactly Events under a
// frozen clock; and that a canceled context yields either an error wrapping
// it or an ordinary decision.
//
// Limits use Burst = Events (or zero), so token-bucket and fixed-window
// limiters are held to the same counts. Periods are a second or longer and
// the clock only moves forward, because backends whose state expires in
// real time (Redis PEXPIRE, DynamoDB TTL) see real time pass, not the fake
// clock's.
func Run(t *testing.T, newLimiter NewLimiter) {
	t.Helper()
	prefix := "ratelimittest-" + rand.Text()[:12] + "/"

	// setup gives each subtest its own clock, limiter and key namespace.
	setup := func(t *testing.T, l ratelimit.Limit) (*Clock, ratelimit.Limiter, func(string) string) {
		t.Helper()
		clock := NewClock(start())
		lim := newLimiter(t, l, clock.Now)
		if lim == nil {
			t.Fatal("newLimiter returned nil")
		}
		key := func(k string) string { return prefix + t.Name() + "/" + k }
		return clock, lim, key
	}

	t.Run("AllowsUpToLimitThenDenies", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name  string
			limit ratelimit.Limit
		}{
			{"OnePerHour", ratelimit.Limit{Events: 1, Period: time.Hour}},
			{"FivePerMinute", ratelimit.Limit{Events: 5, Period: time.Minute}},
			{"BurstEqualsEvents", ratelimit.Limit{Events: 4, Period: time.Minute, Burst: 4}},
			{"DefaultPeriod", ratelimit.Limit{Events: 3}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				_, lim, key := setup(t, tt.limit)
				k := key("k")
				exhaust(t, lim, k, tt.limit)
				// A second denial must not be counted against the key or
				// change its shape.
				denied(t, lim, k, tt.limit)
			})
		}
	})

	t.Run("KeysAreIndependent", func(t *testing.T) {
		t.Parallel()
		// Pairs of keys that a limiter building storage keys by naive
		// concatenation could confuse.
		tests := []struct {
			name string
			a, b string
		}{
			{"Distinct", "203.0.113.7", "203.0.113.8"},
			{"Separator", "k", "k#1"},
			{"Colon", "k", "k:"},
			{"Empty", "", "x"},
			{"Unicode", "tunnel/ü", "tunnel/u"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				l := ratelimit.Limit{Events: 2, Period: time.Hour}
				_, lim, key := setup(t, l)
				exhaust(t, lim, key(tt.a), l)
				exhaust(t, lim, key(tt.b), l)
				denied(t, lim, key(tt.a), l)
			})
		}
	})

	t.Run("AllowedAgainAfterRetryAfter", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name  string
			limit ratelimit.Limit
		}{
			{"ThreePerMinute", ratelimit.Limit{Events: 3, Period: time.Minute}},
			{"OnePerSecond", ratelimit.Limit{Events: 1, Period: time.Second}},
			{"TenPerHour", ratelimit.Limit{Events: 10, Period: time.Hour}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				clock, lim, key := setup(t, tt.limit)
				k := key("k")
				// Several rounds: a limiter whose window never resets, or
				// resets into "unlimited", passes the first and fails a
				// later one.
				for round := range 3 {
					exhaust(t, lim, k, tt.limit)
					d := denied(t, lim, k, tt.limit)
					clock.Advance(d.RetryAfter)
					if got := allow(t, lim, k); !got.Allowed {
						t.Fatalf("round %d: denied %+v after waiting RetryAfter %v", round, got, d.RetryAfter)
					}
					// A whole Period later the key has its full allowance
					// again, whatever the algorithm.
					clock.Advance(tt.limit.WithDefaults().Period)
				}
			})
		}
	})

	t.Run("UnlimitedWhenEventsNotPositive", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name  string
			limit ratelimit.Limit
		}{
			{"Zero", ratelimit.Limit{}},
			{"Negative", ratelimit.Limit{Events: -1, Period: time.Hour}},
			{"ZeroWithBurst", ratelimit.Limit{Period: time.Nanosecond, Burst: 1}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				_, lim, key := setup(t, tt.limit)
				for i := range 100 {
					d := allow(t, lim, key("k"))
					want := ratelimit.Decision{Allowed: true, Remaining: math.MaxInt}
					if d != want {
						t.Fatalf("call %d: got %+v, want %+v", i, d, want)
					}
				}
			})
		}
	})

	t.Run("ConcurrentCallsAdmitExactlyEvents", func(t *testing.T) {
		t.Parallel()
		const events, callers = 25, 100
		l := ratelimit.Limit{Events: events, Period: time.Hour, Burst: events}
		_, lim, key := setup(t, l)
		k := key("k")

		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			allowed int
			start   = make(chan struct{})
		)
		for range callers {
			wg.Go(func() {
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
				defer cancel()
				d, err := lim.Allow(ctx, k)
				if err != nil {
					t.Errorf("Allow: %v", err)
					return
				}
				if !d.Allowed && (d.RetryAfter <= 0 || d.RetryAfter > l.Period) {
					t.Errorf("denied with RetryAfter %v, want in (0, %v]", d.RetryAfter, l.Period)
				}
				if d.Allowed {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if allowed != events {
			t.Errorf("%d concurrent callers: %d allowed, want exactly %d", callers, allowed, events)
		}
		denied(t, lim, k, l)
	})

	t.Run("CanceledContext", func(t *testing.T) {
		t.Parallel()
		canceled, cancel := context.WithCancel(context.Background())
		cancel()
		expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel2()
		tests := []struct {
			name string
			ctx  context.Context
		}{
			{"Canceled", canceled},
			{"DeadlineExceeded", expired},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				l := ratelimit.Limit{Events: 1, Period: time.Hour}
				_, lim, key := setup(t, l)
				k := key("k")
				d, err := lim.Allow(tt.ctx, k)
				switch {
				case err != nil:
					if !errors.Is(err, tt.ctx.Err()) {
						t.Fatalf("Allow with done context: error %v does not wrap %v", err, tt.ctx.Err())
					}
				case !d.Allowed:
					t.Fatalf("Allow with done context on a fresh key completed but denied: %+v", d)
				default:
					// The call completed normally, so it counted: the key's
					// one event is spent.
					denied(t, lim, k, l)
				}
			})
		}
	})
}

// start returns where each subtest's clock starts: in the middle of an hour
// (and so of a minute and a second) near now, so that fixed windows are
// partly used up, and near now so that backends which expire state by
// wall-clock timestamps (DynamoDB TTL) clean it up soon after the test.
func start() time.Time {
	return time.Now().UTC().Truncate(time.Hour).Add(17*time.Minute + 29*time.Second + 250*time.Millisecond)
}

// allow calls lim.Allow and fails the test on error.
func allow(t *testing.T, lim ratelimit.Limiter, key string) ratelimit.Decision {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	d, err := lim.Allow(ctx, key)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	return d
}

// exhaust spends key's whole allowance, checking each decision, and then
// checks that the next event is denied.
func exhaust(t *testing.T, lim ratelimit.Limiter, key string, l ratelimit.Limit) {
	t.Helper()
	for i := range l.Events {
		d := allow(t, lim, key)
		if !d.Allowed {
			t.Fatalf("event %d of %d denied: %+v", i+1, l.Events, d)
		}
		if d.RetryAfter != 0 {
			t.Errorf("event %d allowed with RetryAfter %v, want 0", i+1, d.RetryAfter)
		}
		if most := l.Events - 1 - i; d.Remaining < 0 || d.Remaining > most {
			t.Errorf("event %d: Remaining = %d, want in [0, %d]", i+1, d.Remaining, most)
		}
	}
	denied(t, lim, key, l)
}

// denied checks that the next event for key is denied with a RetryAfter in
// (0, Period] and returns the decision.
func denied(t *testing.T, lim ratelimit.Limiter, key string, l ratelimit.Limit) ratelimit.Decision {
	t.Helper()
	d := allow(t, lim, key)
	period := l.WithDefaults().Period
	if d.Allowed {
		t.Fatalf("event %d allowed, want denied after %d per %v: %+v", l.Events+1, l.Events, period, d)
	}
	if d.RetryAfter <= 0 || d.RetryAfter > period {
		t.Errorf("denied with RetryAfter %v, want in (0, %v]", d.RetryAfter, period)
	}
	if d.Remaining != 0 {
		t.Errorf("denied with Remaining %d, want 0", d.Remaining)
	}
	return d
}
