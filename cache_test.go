package tunnel_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// countingStore counts the reads of tunnel records a gateway makes of its
// store; the node's once-a-second read of its sentinel record (an ID no
// tunnel can have) is not one.
type countingStore struct {
	store.Store
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, id string) (store.Record, error) {
	if !strings.HasPrefix(id, "_") {
		c.gets.Add(1)
	}
	return c.Store.Get(ctx, id)
}

// noCache is a cache that never hits: the baseline.
type noCache struct{}

func (noCache) Get(context.Context, string) (store.Record, bool) { return store.Record{}, false }
func (noCache) Add(context.Context, store.Record)                {}
func (noCache) Remove(context.Context, string)                   {}

// cacheLoad runs requests round-robin over tunnels through a gateway with
// cache, and returns the store reads it made.
func cacheLoad(tb testing.TB, cache store.Cache, tunnels, requests int) int64 {
	tb.Helper()
	st := &countingStore{Store: store.NewMemory()}
	gw := tunneltest.NewGateway(tb, &tunnel.Server{Routing: tunnel.RoutePath, Store: st, Cache: cache, Logger: quiet})
	urls := make([]string, tunnels)
	for i := range urls {
		ln := gw.Listen(tb)
		tunneltest.Serve(tb, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		urls[i] = ln.URL()
	}
	tb.Logf("%d tunnels up", tunnels)
	c := newClient(tb)
	st.gets.Store(0)
	for n := 0; n < requests; n++ {
		if status, _, _ := get(tb, c, fmt.Sprintf("%s/r%d", urls[n%tunnels], n)); status != 200 {
			tb.Fatalf("request %d: %d", n, status)
		}
	}
	return st.gets.Load()
}

func TestCacheCutsStoreReads(t *testing.T) {
	t.Parallel()
	const tunnels, requests = 100, 1000
	lru := store.NewLRU(0, 0)
	withCache := cacheLoad(t, lru, tunnels, requests)
	without := cacheLoad(t, noCache{}, tunnels, requests)
	stats := lru.Stats()
	hitRate := float64(stats.Hits) / float64(stats.Hits+stats.Misses)
	drop := 1 - float64(withCache)/float64(without)
	t.Logf("store reads: %d with the cache, %d without (%.0f%% fewer); hit rate %.1f%%", withCache, without, 100*drop, 100*hitRate)
	if without != requests {
		t.Errorf("without a cache: %d store reads for %d requests", without, requests)
	}
	if drop < 0.6 {
		t.Errorf("the cache cut store reads by %.0f%%, want at least 60%%", 100*drop)
	}
	if hitRate < 0.8 {
		t.Errorf("hit rate %.1f%%, want at least 80%%", 100*hitRate)
	}
}

// BenchmarkStoreReads measures store reads per public request with and
// without the default cache, 100 tunnels under steady load.
func BenchmarkStoreReads(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache func() store.Cache
	}{
		{"lru", func() store.Cache { return store.NewLRU(0, 0) }},
		{"none", func() store.Cache { return noCache{} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cache := bc.cache()
			reads := cacheLoad(b, cache, 100, b.N)
			b.ReportMetric(float64(reads)/float64(b.N), "store-reads/op")
			if lru, ok := cache.(*store.LRU); ok {
				s := lru.Stats()
				b.ReportMetric(100*float64(s.Hits)/float64(s.Hits+s.Misses), "hit-%")
			}
		})
	}
}
