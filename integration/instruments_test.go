package integration

import (
	"context"
	"sort"
	"testing"

	"github.com/http-tunnel/tunnel/observability"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TestInstrumentsRecordUnderTheirNames records on every instrument and
// checks that each metric comes out under its pinned name and unit.
func TestInstrumentsRecordUnderTheirNames(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	in, err := observability.NewInstruments(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
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
		if sm.Scope.Name != observability.ScopeName {
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
		observability.MetricRequestLatency: "ms", observability.MetricStoreLatency: "ms", observability.MetricBytesIn: "By", observability.MetricBytesOut: "By",
	} {
		if units[name] != unit {
			t.Errorf("%s unit %q, want %q", name, units[name], unit)
		}
	}
}

// TestTracingAndMeteringFollowTheGlobals checks that the gateway's
// shortcut (no spans or metric attributes while nothing records them)
// holds only until a provider is passed in or installed globally.
func TestTracingAndMeteringFollowTheGlobals(t *testing.T) {
	if observability.Tracing(nil) || observability.Metering(nil) {
		t.Fatal("with no provider installed, observability.Tracing and observability.Metering must be false")
	}
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	mp := sdkmetric.NewMeterProvider()
	defer mp.Shutdown(context.Background())
	if !observability.Tracing(tp) || !observability.Metering(mp) {
		t.Fatal("a provider passed in must turn them on")
	}
	prevTP, prevMP := otel.GetTracerProvider(), otel.GetMeterProvider()
	t.Cleanup(func() { // the default providers again, for the next test or -count run
		otel.SetTracerProvider(prevTP)
		otel.SetMeterProvider(prevMP)
	})
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	if !observability.Tracing(nil) || !observability.Metering(nil) {
		t.Fatal("an installed global provider must turn them on")
	}
}
