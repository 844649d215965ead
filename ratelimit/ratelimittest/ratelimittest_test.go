package ratelimittest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/leakcheck"

	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/ratelimit/ratelimittest"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// TestRunLocal runs the suite against the in-process limiter, which is also
// how the suite itself is tested: a suite that rejects a correct limiter,
// or that cannot drive its clock, fails here.
func TestRunLocal(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T, l ratelimit.Limit, now func() time.Time) ratelimit.Limiter {
		return ratelimit.NewLocal(l, &ratelimit.LocalOptions{Now: now})
	})
}

func TestClock(t *testing.T) {
	t.Parallel()
	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name    string
		advance []time.Duration
		want    time.Time
	}{
		{"Frozen", nil, base},
		{"Forward", []time.Duration{time.Second, 2 * time.Millisecond}, base.Add(time.Second + 2*time.Millisecond)},
		{"Backward", []time.Duration{time.Hour, -2 * time.Hour}, base.Add(-time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := ratelimittest.NewClock(base)
			for _, d := range tt.advance {
				c.Advance(d)
			}
			if got := c.Now(); !got.Equal(tt.want) {
				t.Errorf("Now() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClockStripsMonotonic(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := ratelimittest.NewClock(now)
	if got, want := c.Now().String(), now.Round(0).String(); got != want {
		t.Errorf("Now() = %s, want %s without a monotonic reading", got, want)
	}
}

func TestClockConcurrent(t *testing.T) {
	t.Parallel()
	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c := ratelimittest.NewClock(base)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			c.Advance(time.Millisecond)
			_ = c.Now()
		})
	}
	wg.Wait()
	if got, want := c.Now(), base.Add(50*time.Millisecond); !got.Equal(want) {
		t.Errorf("after 50 concurrent advances: Now() = %v, want %v", got, want)
	}
}

func TestZeroClock(t *testing.T) {
	t.Parallel()
	var c ratelimittest.Clock
	if got := c.Now(); !got.IsZero() {
		t.Errorf("zero Clock: Now() = %v, want the zero time", got)
	}
}
