package observability

import (
	"testing"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// TestNamesArePinned fails when a metric or span name changes: dashboards,
// alarms and queries depend on them.
func TestNamesArePinned(t *testing.T) {
	pinned := map[string]string{
		MetricConnectionEstablished: "ConnectionEstablished",
		MetricConnectionClosed:      "ConnectionClosed",
		MetricRequestForwarded:      "RequestForwarded",
		MetricRequestLatency:        "RequestLatency",
		MetricErrorOccurred:         "ErrorOccurred",
		MetricActiveTunnels:         "ActiveTunnels",
		MetricCacheHits:             "CacheHits",
		MetricCacheMisses:           "CacheMisses",
		MetricStoreLatency:          "StoreOperationLatency",
		MetricRateLimited:           "RateLimitRejections",
		MetricBytesIn:               "BytesIn",
		MetricBytesOut:              "BytesOut",
		SpanRequest:                 "tunnel.request",
		SpanCache:                   "tunnel.cache",
		SpanStore:                   "tunnel.store",
		SpanForward:                 "tunnel.forward",
		SpanDeliver:                 "tunnel.deliver",
		SpanLocal:                   "tunnel.local",
		ScopeName:                   "github.com/http-tunnel/tunnel",
	}
	for got, want := range pinned {
		if got != want {
			t.Errorf("name %q, want %q", got, want)
		}
	}
}
