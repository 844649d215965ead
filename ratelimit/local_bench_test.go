package ratelimit_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/ratelimit"
)

// BenchmarkLocalAllow measures Allow from parallel goroutines. Keys=1 is
// the worst case for lock contention; the many-key cases spread over the
// shards, and the one past MaxKeys also pays for eviction on every new key.
func BenchmarkLocalAllow(b *testing.B) {
	tests := []struct {
		name    string
		keys    int
		maxKeys int
	}{
		{"Keys=1", 1, 0},
		{"Keys=65536", 1 << 16, 0},
		{"Keys=1048576/MaxKeys=65536", 1 << 20, 1 << 16},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			keys := make([]string, tt.keys)
			for i := range keys {
				keys[i] = "203.0." + strconv.Itoa(i>>8) + "." + strconv.Itoa(i&0xff)
			}
			// A high rate so that most calls are allowed and the benchmark
			// measures the bookkeeping, not only the denial path.
			lim := ratelimit.NewLocal(ratelimit.Limit{Events: 1_000_000, Period: time.Second},
				&ratelimit.LocalOptions{MaxKeys: tt.maxKeys})
			ctx := context.Background()
			var next atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				// Each goroutine walks the keys from its own offset with a
				// stride, so goroutines rarely hit the same key at once.
				i := int(next.Add(7919))
				for pb.Next() {
					if _, err := lim.Allow(ctx, keys[i%len(keys)]); err != nil {
						b.Fatal(err)
					}
					i += 31
				}
			})
		})
	}
}
