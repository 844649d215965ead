package observability

import (
	"context"
	"sort"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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

// TestInstrumentsRecordUnderTheirNames records on every instrument and
// checks that each metric comes out under its pinned name and unit.
func TestInstrumentsRecordUnderTheirNames(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	in, err := NewInstruments(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	in.ConnectionEstablished.Add(ctx, 1)
	in.ConnectionClosed.Add(ctx, 1)
	in.RequestForwarded.Add(ctx, 1)
	in.RequestLatency.Record(ctx, 1.5)
	in.ErrorOccurred.Add(ctx, 1)
	in.ActiveTunnels.Add(ctx, 1)
	in.CacheHits.Add(ctx, 1)
	in.CacheMisses.Add(ctx, 1)
	in.StoreLatency.Record(ctx, 0.5)
	in.RateLimited.Add(ctx, 1)
	in.BytesIn.Add(ctx, 10)
	in.BytesOut.Add(ctx, 20)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	units := map[string]string{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != ScopeName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			units[m.Name] = m.Unit
		}
	}
	var names []string
	for n := range units {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) != 12 {
		t.Fatalf("got %d metrics %v, want 12", len(names), names)
	}
	for name, unit := range map[string]string{
		MetricRequestLatency: "ms", MetricStoreLatency: "ms", MetricBytesIn: "By", MetricBytesOut: "By",
	} {
		if units[name] != unit {
			t.Errorf("%s unit %q, want %q", name, units[name], unit)
		}
	}
}
