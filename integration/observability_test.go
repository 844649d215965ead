package integration

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/observability"
	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/tunneltest"
)

func TestTraceCrossesTheTunnel(t *testing.T) {
	t.Parallel()
	gwSpans, agentSpans, clientSpans := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	gwTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(gwSpans))
	agentTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(agentSpans))
	clientTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(clientSpans))

	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, TracerProvider: gwTP})
	var localTraceparent string
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		localTraceparent = r.Header.Get("Traceparent")
		io.WriteString(w, "ok")
	}))
	t.Cleanup(local.Close)
	fw, err := tunnel.Forward(context.Background(), gw.URL, local.URL, tunnel.WithLogger(quiet), tunnel.WithTracerProvider(agentTP))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })

	// The public client starts the trace.
	ctx, root := clientTP.Tracer("test").Start(context.Background(), "public client")
	req, _ := http.NewRequestWithContext(ctx, "GET", fw.URL()+"/traced", nil)
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	root.End()
	fw.Close() // ends the agent's spans before they are read

	byName := func(rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
		t.Helper()
		for _, s := range rec.Ended() {
			if s.Name() == name {
				return s
			}
		}
		t.Fatalf("no %q span", name)
		return nil
	}
	request := byName(gwSpans, observability.SpanRequest)
	cache := byName(gwSpans, observability.SpanCache)
	forward := byName(gwSpans, observability.SpanForward)
	deliver := byName(agentSpans, observability.SpanDeliver)
	localSpan := byName(agentSpans, observability.SpanLocal)

	traceID := root.SpanContext().TraceID()
	for _, s := range []sdktrace.ReadOnlySpan{request, cache, forward, deliver, localSpan} {
		if s.SpanContext().TraceID() != traceID {
			t.Errorf("span %s is in trace %s, want %s", s.Name(), s.SpanContext().TraceID(), traceID)
		}
	}
	parentOf := func(child, parent sdktrace.ReadOnlySpan, parentID trace.SpanID) {
		t.Helper()
		if child.Parent().SpanID() != parentID {
			t.Errorf("%s's parent is %s, want %s", child.Name(), child.Parent().SpanID(), parentID)
		}
	}
	parentOf(request, nil, root.SpanContext().SpanID())
	parentOf(cache, request, request.SpanContext().SpanID())
	parentOf(forward, request, request.SpanContext().SpanID())
	parentOf(deliver, forward, forward.SpanContext().SpanID())
	parentOf(localSpan, deliver, deliver.SpanContext().SpanID())
	if want := localSpan.SpanContext().SpanID().String(); !strings.Contains(localTraceparent, want) {
		t.Errorf("local service got traceparent %q, want it to name span %s", localTraceparent, want)
	}
	attrs := attribute.NewSet(request.Attributes()...)
	if v, _ := attrs.Value(observability.AttrTunnelID); v.AsString() != fw.ID() {
		t.Errorf("request span tunnel.id = %q, want %q", v.AsString(), fw.ID())
	}
	if v, _ := attrs.Value("http.response.status_code"); v.AsInt64() != 200 {
		t.Errorf("request span status = %d", v.AsInt64())
	}
}

// metricValues collects counter sums and histogram counts by metric name
// and one attribute's value.
func metricValues(t *testing.T, reader *sdkmetric.ManualReader, key attribute.Key) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int64)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					v, _ := p.Attributes.Value(key)
					out[m.Name+"/"+v.String()] += p.Value
					out[m.Name] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] += int64(p.Count)
				}
			}
		}
	}
	return out
}

func TestMetricsCountRequestsAndErrors(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	lim := ratelimit.NewLocal(ratelimit.Limit{Events: 5, Period: time.Hour}, nil)
	gw, ev := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, MeterProvider: mp, RequestLimiter: lim})
	ln := listen(t, gw)
	tunneltest.Serve(t, ln, http.HandlerFunc(echo))
	next(t, ev.Connected, "connect")
	c := newClient(t)

	for i := 0; i < 5; i++ {
		resp, err := c.Post(ln.URL()+"/ok", "text/plain", strings.NewReader("12345"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get(t, c, ln.URL()+"/limited")     // the sixth: 429
	get(t, c, gw.URL+"/nosuchtunnel/") // 404
	get(t, c, gw.URL+"/nosuchtunnel/") // 404

	codes := metricValues(t, reader, observability.AttrCode)
	methods := metricValues(t, reader, "http.request.method")
	for _, c := range []struct {
		got  int64
		want int64
		what string
	}{
		{methods[observability.MetricRequestForwarded+"/POST"], 5, "RequestForwarded{POST}"},
		{methods[observability.MetricRequestForwarded], 5, "RequestForwarded"},
		{codes[observability.MetricErrorOccurred+"/tunnel_not_found"], 2, "ErrorOccurred{tunnel_not_found}"},
		{codes[observability.MetricErrorOccurred+"/rate_limited"], 1, "ErrorOccurred{rate_limited}"},
		{codes[observability.MetricRateLimited], 1, "RateLimitRejections"},
		{codes[observability.MetricRequestLatency], 8, "RequestLatency count"},
		{codes[observability.MetricActiveTunnels], 1, "ActiveTunnels"},
		{codes[observability.MetricConnectionEstablished], 1, "ConnectionEstablished"},
		{codes[observability.MetricBytesIn], 25, "BytesIn"},
		// The limiter refuses before the lookup: five lookups of the
		// tunnel (one miss, four hits) and two of the unknown one.
		{codes[observability.MetricCacheMisses], 1 + 2, "CacheMisses"},
		{codes[observability.MetricCacheHits], 4, "CacheHits"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
	if codes[observability.MetricBytesOut] < 25 {
		t.Errorf("BytesOut = %d, want at least the 25 echoed bytes", codes[observability.MetricBytesOut])
	}
}

// BenchmarkObservabilityOverhead compares small requests through a tunnel
// with observability off (no-op providers) and on (every span sampled and
// processed, metrics collected).
func BenchmarkObservabilityOverhead(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			srv := &tunnel.Server{Routing: tunnel.RoutePath}
			if on {
				srv.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(discardProcessor{}))
				srv.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			}
			gw, _ := gateway(b, srv)
			ln := listen(b, gw)
			tunneltest.Serve(b, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
			c := newClient(b)
			url := ln.URL() + "/small"
			b.ReportAllocs()
			b.SetParallelism(8)
			parallelGets(b, c, url)
		})
	}
}

// discardProcessor receives every ended span, as an exporter's processor
// would, and drops it.
type discardProcessor struct{}

func (discardProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (discardProcessor) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (discardProcessor) Shutdown(context.Context) error                  { return nil }
func (discardProcessor) ForceFlush(context.Context) error                { return nil }
