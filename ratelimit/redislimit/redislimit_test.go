package redislimit_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/ratelimit/ratelimittest"
	"github.com/http-tunnel/tunnel/ratelimit/redislimit"
	"github.com/http-tunnel/tunnel/store/redisstore/redistest"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

func TestConformance(t *testing.T) {
	client := redistest.Client(t)
	prefix := redistest.Prefix(t, client)
	ratelimittest.Run(t, func(t *testing.T, l ratelimit.Limit, now func() time.Time) ratelimit.Limiter {
		return redislimit.New(client, l, &redislimit.Options{Prefix: prefix, Now: now})
	})
}

// TestMatchesLocal runs the same calls against the Redis limiter and the
// in-process token bucket: GCRA is meant to be that token bucket, decision
// for decision. Intervals are whole microseconds so both compute exactly.
func TestMatchesLocal(t *testing.T) {
	client := redistest.Client(t)
	tests := []struct {
		name  string
		limit ratelimit.Limit
		// gaps are the clock moves between calls, cycled through.
		gaps []time.Duration
	}{
		{"FivePerSecond", ratelimit.Limit{Events: 5, Period: time.Second},
			[]time.Duration{0, 0, 0, 50 * time.Millisecond, 0, 210 * time.Millisecond, 0, 0, time.Second}},
		{"BurstAboveEvents", ratelimit.Limit{Events: 2, Period: time.Second, Burst: 6},
			[]time.Duration{0, 0, 0, 0, 0, 0, 0, 300 * time.Millisecond, 700 * time.Millisecond, 0, 2 * time.Second}},
		{"BurstOfOne", ratelimit.Limit{Events: 4, Period: time.Minute, Burst: 1},
			[]time.Duration{0, 5 * time.Second, 10 * time.Second, 0, 15 * time.Second, 45 * time.Second}},
		{"ThousandPerSecond", ratelimit.Limit{Events: 1000, Period: time.Second, Burst: 10},
			[]time.Duration{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3 * time.Millisecond, 500 * time.Microsecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := ratelimittest.NewClock(time.Now().Truncate(time.Second))
			local := ratelimit.NewLocal(tt.limit, &ratelimit.LocalOptions{Now: clock.Now})
			remote := redislimit.New(client, tt.limit, &redislimit.Options{Prefix: redistest.Prefix(t, client), Now: clock.Now})
			ctx := context.Background()
			for i := range 5 * len(tt.gaps) {
				clock.Advance(tt.gaps[i%len(tt.gaps)])
				want, err := local.Allow(ctx, "k")
				if err != nil {
					t.Fatal(err)
				}
				got, err := remote.Allow(ctx, "k")
				if err != nil {
					t.Fatal(err)
				}
				if got.Allowed != want.Allowed || got.Remaining != want.Remaining ||
					(got.RetryAfter-want.RetryAfter).Abs() > time.Microsecond {
					t.Fatalf("call %d: redis %+v, local token bucket %+v", i, got, want)
				}
			}
		})
	}
}

// TestKeyExpiry checks what bounds Redis memory: a key lives until its
// bucket is full again (plus a second of slack), and no longer.
func TestKeyExpiry(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		limit ratelimit.Limit
		calls int
		ttl   time.Duration // how long until the bucket is full again
	}{
		{"OneOfTwoPerMinute", ratelimit.Limit{Events: 2, Period: time.Minute}, 1, 30 * time.Second},
		{"TwoOfTwoPerMinute", ratelimit.Limit{Events: 2, Period: time.Minute}, 2, time.Minute},
		{"DeniedCallsDoNotExtend", ratelimit.Limit{Events: 1, Period: time.Hour}, 5, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := redistest.Prefix(t, client)
			clock := ratelimittest.NewClock(time.Now())
			lim := redislimit.New(client, tt.limit, &redislimit.Options{Prefix: prefix, Now: clock.Now})
			for range tt.calls {
				if _, err := lim.Allow(ctx, "k"); err != nil {
					t.Fatal(err)
				}
			}
			pttl, err := client.PTTL(ctx, prefix+"k").Result()
			if err != nil {
				t.Fatal(err)
			}
			// Real time passes between the write and PTTL, so allow a
			// little less than the full figure.
			if most, least := tt.ttl+time.Second, tt.ttl+time.Second-5*time.Second; pttl > most || pttl < least {
				t.Errorf("PTTL = %v, want about %v (bucket full again) + 1s", pttl, tt.ttl)
			}
		})
	}
}

func TestPrefixSeparatesLimiters(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t)
	ctx := context.Background()
	l := ratelimit.Limit{Events: 1, Period: time.Hour}
	p1, p2 := redistest.Prefix(t, client), redistest.Prefix(t, client)
	a := redislimit.New(client, l, &redislimit.Options{Prefix: p1})
	b := redislimit.New(client, l, &redislimit.Options{Prefix: p2})
	for _, lim := range []*redislimit.Limiter{a, b} {
		if d, err := lim.Allow(ctx, "k"); err != nil || !d.Allowed {
			t.Fatalf("first call under its own prefix: %+v, %v; want allowed", d, err)
		}
	}
	if n, err := client.Exists(ctx, p1+"k", p2+"k").Result(); err != nil || n != 2 {
		t.Errorf("EXISTS prefix+key for both prefixes = %d, %v; want 2", n, err)
	}
}

func TestDefaultPrefix(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t)
	ctx := context.Background()
	key := "redislimit-test-default-prefix-" + rand.Text()
	lim := redislimit.New(client, ratelimit.Limit{Events: 1, Period: time.Minute}, nil)
	if _, err := lim.Allow(ctx, key); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Del(context.Background(), redislimit.DefaultPrefix+key) })
	if n, err := client.Exists(ctx, redislimit.DefaultPrefix+key).Result(); err != nil || n != 1 {
		t.Errorf("EXISTS %q = %d, %v; want 1", redislimit.DefaultPrefix+key, n, err)
	}
}

// TestScriptCacheFlushed checks the EVAL fallback: after SCRIPT FLUSH (or a
// failover to a replica that never saw the script) EVALSHA fails with
// NOSCRIPT and the limiter must still answer. Flushing the shared server's
// script cache is harmless to other tests, whose clients fall back too.
func TestScriptCacheFlushed(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t)
	ctx := context.Background()
	lim := redislimit.New(client, ratelimit.Limit{Events: 2, Period: time.Hour}, &redislimit.Options{Prefix: redistest.Prefix(t, client)})
	for i := range 3 {
		if err := client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		d, err := lim.Allow(ctx, "k")
		if err != nil {
			t.Fatalf("call %d after SCRIPT FLUSH: %v", i, err)
		}
		if want := i < 2; d.Allowed != want {
			t.Fatalf("call %d after SCRIPT FLUSH: %+v, want Allowed=%v", i, d, want)
		}
	}
}

// TestBackendDown needs no server: it points at a port nothing listens on.
func TestBackendDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()

	tests := []struct {
		name    string
		limit   ratelimit.Limit
		wantErr bool
	}{
		{"LimitedFails", ratelimit.Limit{Events: 1, Period: time.Second}, true},
		// Unlimited never asks Redis, so an outage cannot affect it.
		{"UnlimitedSucceeds", ratelimit.Limit{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := redislimit.New(client, tt.limit, nil).Allow(ctx, "k")
			if (err != nil) != tt.wantErr {
				t.Fatalf("Allow with Redis down: %+v, %v; want error %v", d, err, tt.wantErr)
			}
			if !tt.wantErr && (d != ratelimit.Decision{Allowed: true, Remaining: math.MaxInt}) {
				t.Errorf("unlimited decision %+v", d)
			}
		})
	}
}

func TestCanceledContextWraps(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := redislimit.New(client, ratelimit.Limit{Events: 1}, nil).Allow(ctx, "k")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Allow with canceled ctx: %v, want an error wrapping context.Canceled", err)
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	client := redistest.Client(b)
	lim := redislimit.New(client, ratelimit.Limit{Events: 1_000_000, Period: time.Second},
		&redislimit.Options{Prefix: redistest.Prefix(b, client)})
	keys := make([]string, 1<<12)
	for i := range keys {
		keys[i] = fmt.Sprint("203.0.", i>>8, ".", i&0xff)
	}
	ctx := context.Background()
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			if _, err := lim.Allow(ctx, keys[i%len(keys)]); err != nil {
				b.Fatal(err)
			}
			i += 31
		}
	})
}
