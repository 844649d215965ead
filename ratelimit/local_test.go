package ratelimit

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// The tests that move time run in a synctest bubble, where time.Now is a
// fake clock that time.Sleep advances at once, so a Local on its default
// clock sees exactly the time the test lets pass. Only the tests of a
// clock that steps back, which no bubble does, give it a clock of their
// own through LocalOptions.Now.

// backClock returns a clock that reads time.Now less *back, so that a test
// can step it back by adding to *back. It is for a single goroutine.
func backClock() (now func() time.Time, back *time.Duration) {
	back = new(time.Duration)
	return func() time.Time { return time.Now().Add(-*back) }, back
}

func mustAllow(t *testing.T, l *Local, key string) Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	return d
}

func TestLimitWithDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Limit
		want Limit
	}{
		{"Zero", Limit{}, Limit{Period: time.Second}},
		{"EventsOnly", Limit{Events: 5}, Limit{Events: 5, Period: time.Second, Burst: 5}},
		{"NegativePeriod", Limit{Events: 5, Period: -time.Minute}, Limit{Events: 5, Period: time.Second, Burst: 5}},
		{"NegativeBurst", Limit{Events: 5, Period: time.Minute, Burst: -1}, Limit{Events: 5, Period: time.Minute, Burst: 5}},
		{"AllSet", Limit{Events: 5, Period: time.Minute, Burst: 9}, Limit{Events: 5, Period: time.Minute, Burst: 9}},
		{"Unlimited", Limit{Events: -3, Period: time.Minute}, Limit{Events: -3, Period: time.Minute, Burst: -3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.in.WithDefaults(); got != tt.want {
				t.Errorf("%+v.WithDefaults() = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestLimitUnlimited(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		events int
		want   bool
	}{{-1, true}, {0, true}, {1, false}, {math.MaxInt, false}} {
		if got := (Limit{Events: tt.events}).Unlimited(); got != tt.want {
			t.Errorf("Limit{Events: %d}.Unlimited() = %v, want %v", tt.events, got, tt.want)
		}
	}
}

// TestLocalTokenBucket pins the token-bucket arithmetic: each step moves the
// clock and then makes one call on the same key. rate.Limiter computes in
// floating point, so RetryAfter is compared to within a microsecond, and
// steps that land on a refill boundary wait the RetryAfter actually given.
func TestLocalTokenBucket(t *testing.T) {
	t.Parallel()
	const waitRetry = -1 // a step's advance: the previous RetryAfter
	type step struct {
		advance   time.Duration
		allowed   bool
		remaining int
		retry     time.Duration
	}
	tests := []struct {
		name  string
		limit Limit
		steps []step
	}{
		{
			name:  "TwoPerHour",
			limit: Limit{Events: 2, Period: time.Hour},
			steps: []step{
				{0, true, 1, 0},
				{0, true, 0, 0},
				{0, false, 0, 30 * time.Minute},
				{10 * time.Minute, false, 0, 20 * time.Minute},
				{waitRetry, true, 0, 0},
				{time.Hour, true, 1, 0},
			},
		},
		{
			name:  "BurstAboveEvents",
			limit: Limit{Events: 1, Period: time.Second, Burst: 3},
			steps: []step{
				{0, true, 2, 0},
				{0, true, 1, 0},
				{0, true, 0, 0},
				{0, false, 0, time.Second},
				{waitRetry, true, 0, 0},
			},
		},
		{
			name:  "BurstOfOne",
			limit: Limit{Events: 10, Period: time.Second, Burst: 1},
			steps: []step{
				{0, true, 0, 0},
				{0, false, 0, 100 * time.Millisecond},
				{40 * time.Millisecond, false, 0, 60 * time.Millisecond},
				{waitRetry, true, 0, 0},
			},
		},
		{
			name:  "IdleRefillsNoFurtherThanBurst",
			limit: Limit{Events: 2, Period: time.Second},
			steps: []step{
				{0, true, 1, 0},
				{24 * time.Hour, true, 1, 0},
				{0, true, 0, 0},
				{0, false, 0, 500 * time.Millisecond},
			},
		},
		{
			name:  "DefaultPeriodIsOneSecond",
			limit: Limit{Events: 4},
			steps: []step{
				{0, true, 3, 0},
				{0, true, 2, 0},
				{0, true, 1, 0},
				{0, true, 0, 0},
				{0, false, 0, 250 * time.Millisecond},
				{time.Second, true, 3, 0},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				l := NewLocal(tt.limit, nil)
				var prev Decision
				for i, s := range tt.steps {
					if s.advance == waitRetry {
						s.advance = prev.RetryAfter
					}
					time.Sleep(s.advance)
					got := mustAllow(t, l, "k")
					want := Decision{Allowed: s.allowed, Remaining: s.remaining, RetryAfter: s.retry}
					if got.Allowed != want.Allowed || got.Remaining != want.Remaining ||
						(got.RetryAfter-want.RetryAfter).Abs() > time.Microsecond {
						t.Fatalf("step %d (after +%v): got %+v, want %+v", i, s.advance, got, want)
					}
					prev = got
				}
			})
		})
	}
}

// TestLocalRetryAfterIsExact checks both sides of RetryAfter for rates whose
// token arithmetic is inexact in floating point: waiting a nanosecond less
// is not enough, waiting exactly RetryAfter is.
func TestLocalRetryAfterIsExact(t *testing.T) {
	t.Parallel()
	tests := []Limit{
		{Events: 3, Period: time.Second},
		{Events: 7, Period: time.Minute},
		{Events: 1000, Period: time.Second},
		{Events: 3, Period: 10 * time.Second, Burst: 2},
		{Events: 1_000_000, Period: time.Second, Burst: 3},
	}
	for _, limit := range tests {
		t.Run(fmt.Sprintf("%dPer%vBurst%d", limit.Events, limit.Period, limit.Burst), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				l := NewLocal(limit, nil)
				// Several rounds, so that the bucket's fractional state varies.
				for round := range 5 {
					var d Decision
					for d = mustAllow(t, l, "k"); d.Allowed; d = mustAllow(t, l, "k") {
					}
					if d.RetryAfter <= 0 || d.RetryAfter > limit.Period {
						t.Fatalf("round %d: RetryAfter %v out of (0, %v]", round, d.RetryAfter, limit.Period)
					}
					time.Sleep(d.RetryAfter - 1)
					if early := mustAllow(t, l, "k"); early.Allowed {
						t.Fatalf("round %d: allowed 1ns before RetryAfter %v", round, d.RetryAfter)
					}
					time.Sleep(time.Nanosecond)
					if got := mustAllow(t, l, "k"); !got.Allowed {
						t.Fatalf("round %d: denied %+v after waiting RetryAfter %v", round, got, d.RetryAfter)
					}
					time.Sleep(time.Duration(round) * limit.Period / 7)
				}
			})
		})
	}
}

func TestLocalUnlimitedTracksNoKeys(t *testing.T) {
	t.Parallel()
	for _, limit := range []Limit{{}, {Events: -5, Period: time.Hour, Burst: 2}} {
		l := NewLocal(limit, nil)
		for i := range 100 {
			got := mustAllow(t, l, fmt.Sprint(i))
			if want := (Decision{Allowed: true, Remaining: math.MaxInt}); got != want {
				t.Fatalf("%+v: got %+v, want %+v", limit, got, want)
			}
		}
		if n := l.Len(); n != 0 {
			t.Errorf("%+v: Len() = %d after unlimited calls, want 0", limit, n)
		}
	}
}

// TestLocalIdleEviction checks that a key is forgotten once its bucket has
// refilled, and not before: forgetting it earlier would hand it a full
// bucket too soon.
func TestLocalIdleEviction(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// One shard so that every call sweeps the keys under test.
		l := newLocal(Limit{Events: 2, Period: time.Minute}, &LocalOptions{MaxKeys: 100}, 1)

		mustAllow(t, l, "a")
		mustAllow(t, l, "a") // a's bucket is empty; it is full again 60s later
		time.Sleep(59 * time.Second)
		mustAllow(t, l, "b")
		if n := l.Len(); n != 2 {
			t.Fatalf("Len() = %d while a refills, want 2", n)
		}
		if d := mustAllow(t, l, "a"); !d.Allowed || d.Remaining != 0 {
			t.Fatalf("a after 59s: %+v, want allowed with 0 remaining (state kept)", d)
		}

		// a was last used at 59s; 60s later it is full and may go.
		time.Sleep(60 * time.Second)
		mustAllow(t, l, "c")
		if n := l.Len(); n != 1 {
			t.Fatalf("Len() = %d after a and b refilled, want 1 (only c)", n)
		}
		if d := mustAllow(t, l, "a"); !d.Allowed || d.Remaining != 1 {
			t.Fatalf("a after eviction: %+v, want allowed with 1 remaining", d)
		}
	})
}

// TestLocalMaxKeys checks the documented behaviour past the cap: the least
// recently used key is evicted and starts over with a full bucket.
func TestLocalMaxKeys(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLocal(Limit{Events: 1, Period: time.Hour}, &LocalOptions{MaxKeys: 3}, 1)

		for _, k := range []string{"a", "b", "c"} {
			mustAllow(t, l, k)
		}
		// Using a makes b the least recently used.
		if d := mustAllow(t, l, "a"); d.Allowed {
			t.Fatalf("a: %+v, want denied", d)
		}
		mustAllow(t, l, "d") // evicts b
		if n := l.Len(); n != 3 {
			t.Fatalf("Len() = %d, want the cap 3", n)
		}
		tests := []struct {
			key     string
			allowed bool
		}{
			{"a", false}, // kept: used recently
			{"b", true},  // evicted: starts over (and evicts c)
			{"d", false}, // kept
			{"c", true},  // evicted by b
		}
		for _, tt := range tests {
			if d := mustAllow(t, l, tt.key); d.Allowed != tt.allowed {
				t.Errorf("%s: %+v, want Allowed=%v", tt.key, d, tt.allowed)
			}
		}
	})
}

func TestLocalMaxKeysAcrossShards(t *testing.T) {
	t.Parallel()
	tests := []struct{ maxKeys, keys int }{
		{5, 1000},
		{64, 1000},
		{100, 10_000},
		{1000, 500},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("Max%d", tt.maxKeys), func(t *testing.T) {
			t.Parallel()
			l := NewLocal(Limit{Events: 1, Period: time.Hour}, &LocalOptions{MaxKeys: tt.maxKeys})
			for i := range tt.keys {
				mustAllow(t, l, fmt.Sprint("key-", i))
			}
			if n, most := l.Len(), min(tt.maxKeys, tt.keys); n > most || n == 0 {
				t.Errorf("Len() = %d after %d keys, want in [1, %d]", n, tt.keys, most)
			}
		})
	}
}

// TestLocalClockBackwards checks what a clock stepping back does. time.Now
// never does that to Local (it compares monotonic readings), but a fake or
// wall clock might: rate.Limiter then refills nothing until the clock is
// back where it was, and RetryAfter must say so rather than promise a token
// the limiter will not give.
func TestLocalClockBackwards(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		now, back := backClock()
		l := NewLocal(Limit{Events: 1, Period: time.Minute}, &LocalOptions{Now: now})
		mustAllow(t, l, "k")
		*back += time.Hour // the clock steps back
		d := mustAllow(t, l, "k")
		if want := time.Hour + time.Minute; d.Allowed || (d.RetryAfter-want).Abs() > time.Microsecond {
			t.Fatalf("after the clock stepped back 1h: %+v, want denied with RetryAfter %v", d, want)
		}
		time.Sleep(d.RetryAfter)
		if d := mustAllow(t, l, "k"); !d.Allowed {
			t.Errorf("after waiting RetryAfter: %+v, want allowed", d)
		}
	})
}

// TestLocalClockBackwardsKeepsState checks that idle eviction measures
// idleness from the latest time a key was seen, so a clock stepping back
// cannot make a still-refilling key look idle and be forgotten.
func TestLocalClockBackwardsKeepsState(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		now, back := backClock()
		l := newLocal(Limit{Events: 1, Period: time.Minute}, &LocalOptions{MaxKeys: 10, Now: now}, 1)
		mustAllow(t, l, "a")
		*back += time.Hour // the clock steps back
		if d := mustAllow(t, l, "a"); d.Allowed {
			t.Fatalf("a after the clock stepped back: %+v, want denied", d)
		}
		time.Sleep(time.Minute) // a Period after the denied call, still before a's event
		mustAllow(t, l, "b")    // sweeps the shard
		if d := mustAllow(t, l, "a"); d.Allowed {
			t.Errorf("a: %+v, want still denied (state kept)", d)
		}
	})
}

func TestLocalConcurrentKeys(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const (
			workers = 16
			keys    = 50
			events  = 10
		)
		l := NewLocal(Limit{Events: events, Period: time.Hour}, nil)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			allowed = map[string]int{}
		)
		for w := range workers {
			wg.Go(func() {
				for i := range keys * events {
					k := fmt.Sprint((i + w) % keys)
					d, err := l.Allow(context.Background(), k)
					if err != nil {
						t.Errorf("Allow: %v", err)
						return
					}
					if d.Allowed {
						mu.Lock()
						allowed[k]++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		for i := range keys {
			if got := allowed[fmt.Sprint(i)]; got != events {
				t.Errorf("key %d: %d allowed, want %d", i, got, events)
			}
		}
	})
}
