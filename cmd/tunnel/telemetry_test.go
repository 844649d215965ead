package main

import (
	"context"
	"encoding/hex"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/http-tunnel/tunnel/observability"
)

// promMetric is the Prometheus family of one of the library's metrics.
type promMetric struct {
	name string
	typ  dto.MetricType
}

// promMetrics maps each metric the library records (observability.Metric*)
// to the family this binary's Prometheus exporter turns it into: counters
// get _total, and units become suffixes (ms: _milliseconds, By: _bytes;
// {annotations} are dropped). This is the one list of exported names:
// TestPrometheusNames pins it to the exporter, TestGatewayMetrics finds
// its names in a live scrape, TestGrafanaDashboard allows the dashboard no
// other, and docs/observability.md repeats it.
var promMetrics = map[string]promMetric{
	observability.MetricConnectionEstablished: {"ConnectionEstablished_total", dto.MetricType_COUNTER},
	observability.MetricConnectionClosed:      {"ConnectionClosed_total", dto.MetricType_COUNTER},
	observability.MetricRequestForwarded:      {"RequestForwarded_total", dto.MetricType_COUNTER},
	observability.MetricRequestLatency:        {"RequestLatency_milliseconds", dto.MetricType_HISTOGRAM},
	observability.MetricErrorOccurred:         {"ErrorOccurred_total", dto.MetricType_COUNTER},
	observability.MetricActiveTunnels:         {"ActiveTunnels", dto.MetricType_GAUGE},
	observability.MetricCacheHits:             {"CacheHits_total", dto.MetricType_COUNTER},
	observability.MetricCacheMisses:           {"CacheMisses_total", dto.MetricType_COUNTER},
	observability.MetricStoreLatency:          {"StoreOperationLatency_milliseconds", dto.MetricType_HISTOGRAM},
	observability.MetricRateLimited:           {"RateLimitRejections_total", dto.MetricType_COUNTER},
	observability.MetricBytesIn:               {"BytesIn_bytes_total", dto.MetricType_COUNTER},
	observability.MetricBytesOut:              {"BytesOut_bytes_total", dto.MetricType_COUNTER},
}

// promLabels maps the attributes the library's metrics carry to their
// Prometheus label names.
var promLabels = map[attribute.Key]string{
	"http.request.method":       "http_request_method",
	"http.response.status_code": "http_response_status_code",
	observability.AttrCode:      "error_code",
	observability.AttrLimiter:   "tunnel_limiter",
	"db.operation.name":         "db_operation_name",
	observability.AttrTunnelID:  "tunnel_id",
}

// promFamily returns the name of the family that the Prometheus series
// name belongs to: histograms expose _bucket, _sum and _count series.
func promFamily(series string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok {
			for _, m := range promMetrics {
				if m.name == base && m.typ == dto.MetricType_HISTOGRAM {
					return base
				}
			}
		}
	}
	return series
}

// TestPrometheusNames records one value on each instrument of the library,
// alone on a fresh exporter, and checks the family that appears against
// promMetrics, with every attribute's label. A metric renamed in
// observability, a new one, or a change in the exporter's naming fails
// here.
func TestPrometheusNames(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var attrs []attribute.KeyValue
	for key := range promLabels {
		attrs = append(attrs, key.String("x"))
	}
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))

	fields := reflect.TypeFor[observability.Instruments]().NumField()
	seen := map[string]bool{}
	for i := range fields {
		res, err := newResource(ctx, envMap(nil), gatewayService)
		if err != nil {
			t.Fatal(err)
		}
		exp, registry, err := newPrometheusExporter()
		if err != nil {
			t.Fatal(err)
		}
		// A second reader gives the name the instrument was created with.
		manual := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithReader(manual), sdkmetric.WithResource(res))
		in, err := observability.NewInstruments(mp)
		if err != nil {
			t.Fatal(err)
		}
		field := reflect.ValueOf(in).Elem().Field(i)
		switch inst := field.Interface().(type) {
		case metric.Int64Counter:
			inst.Add(ctx, 1, set)
		case metric.Int64UpDownCounter:
			inst.Add(ctx, 1, set)
		case metric.Float64Histogram:
			inst.Record(ctx, 1, set)
		default:
			t.Fatalf("Instruments.%s is a %T; teach this test to record it", reflect.TypeFor[observability.Instruments]().Field(i).Name, inst)
		}

		var rm metricdata.ResourceMetrics
		if err := manual.Collect(ctx, &rm); err != nil || len(rm.ScopeMetrics) != 1 || len(rm.ScopeMetrics[0].Metrics) != 1 {
			t.Fatalf("Instruments.%s: collected %+v, %v; want one metric", reflect.TypeFor[observability.Instruments]().Field(i).Name, rm, err)
		}
		recorded := rm.ScopeMetrics[0].Metrics[0].Name
		want, ok := promMetrics[recorded]
		if !ok {
			t.Errorf("metric %q is not in promMetrics", recorded)
			continue
		}
		seen[recorded] = true

		families, err := registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range families {
			name := f.GetName()
			if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || name == "target_info" {
				continue
			}
			got = append(got, name)
			if name != want.name || f.GetType() != want.typ {
				continue
			}
			labels := map[string]bool{}
			for _, l := range f.GetMetric()[0].GetLabel() {
				labels[l.GetName()] = true
			}
			for key, label := range promLabels {
				if !labels[label] {
					t.Errorf("%s: attribute %s is not label %s; labels %v", name, key, label, labels)
				}
			}
		}
		if !slices.Equal(got, []string{want.name}) {
			t.Errorf("%s exported as %v; promMetrics says %s (%v)", recorded, got, want.name, want.typ)
		}
		if err := mp.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}
	for name := range promMetrics {
		if !seen[name] {
			t.Errorf("promMetrics has %q, which observability.Instruments does not record", name)
		}
	}
}

func TestTracesWanted(t *testing.T) {
	t.Parallel()
	const endpoint = "http://127.0.0.1:4318"
	tests := []struct {
		name    string
		env     map[string]string
		want    bool
		wantErr string
	}{
		{"no variables", nil, false, ""},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, true, ""},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint + "/v1/traces"}, true, ""},
		{"otlp exporter", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true, ""},
		{"none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, false, ""},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false, ""},
		{"metrics endpoint only", map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": endpoint}, false, ""},
		{"other exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false, "otlp only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tracesWanted(envMap(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("tracesWanted = %v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("tracesWanted = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestTracerProviderOff(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{nil, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}} {
		tp, err := newTracerProvider(t.Context(), envMap(env), gatewayService)
		if tp != nil || err != nil {
			t.Errorf("newTracerProvider with %v = %v, %v; want no provider, so that the Server uses the global one", env, tp, err)
		}
	}
}

func TestTracerProviderRefusesMistakes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env     map[string]string
		wantErr string
	}{
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "over HTTP"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT: want an http or https URL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: want an http"},
	} {
		tp, err := newTracerProvider(t.Context(), envMap(tt.env), gatewayService)
		if tp != nil {
			tp.Shutdown(t.Context())
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("newTracerProvider with %v: %v; want an error containing %q", tt.env, err, tt.wantErr)
		}
	}
}

// collector is an OTLP/HTTP trace receiver that keeps every span it gets.
type collector struct {
	srv *httptest.Server

	mu    sync.Mutex
	spans []collectedSpan
}

// collectedSpan is a span as a collector received it.
type collectedSpan struct {
	service string // service.name of its resource
	*tracepb.Span
}

// newCollector starts a collector that accepts exports at path.
func newCollector(t *testing.T, path string) *collector {
	t.Helper()
	c := &collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		req := &coltracepb.ExportTraceServiceRequest{}
		if r.URL.Path != path || r.Header.Get("Content-Type") != "application/x-protobuf" || err != nil || proto.Unmarshal(body, req) != nil {
			t.Errorf("collector got %s %s (%s), %d bytes; want an OTLP protobuf export to %s", r.Method, r.URL.Path, r.Header.Get("Content-Type"), len(body), path)
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, span := range ss.GetSpans() {
					c.spans = append(c.spans, collectedSpan{service: service, Span: span})
				}
			}
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Write(b)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// received returns the spans received so far.
func (c *collector) received() []collectedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.spans)
}

// TestTracerProviderExports checks that, with an endpoint in the
// environment, spans reach it with the service name, and that shutting
// the provider down flushes the batch: nothing is exported before.
func TestTracerProviderExports(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, service string
		env           func(url string) map[string]string
		wantPath      string
		wantService   string
	}{{
		name:        "base endpoint",
		service:     gatewayService,
		env:         func(url string) map[string]string { return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": url + "/"} },
		wantPath:    "/v1/traces",
		wantService: gatewayService,
	}, {
		name:    "traces endpoint and service name",
		service: agentService,
		env: func(url string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url + "/custom/traces", "OTEL_SERVICE_NAME": "edge-7"}
		},
		wantPath:    "/custom/traces",
		wantService: "edge-7",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			col := newCollector(t, tt.wantPath)
			tp, err := newTracerProvider(t.Context(), envMap(tt.env(col.srv.URL)), tt.service)
			if err != nil || tp == nil {
				t.Fatalf("newTracerProvider = %v, %v; want a provider", tp, err)
			}
			fields := otel.GetTextMapPropagator().Fields()
			for _, want := range []string{"traceparent", "baggage"} {
				if !slices.Contains(fields, want) {
					t.Errorf("global propagator fields %v lack %q", fields, want)
				}
			}
			_, span := tp.Tracer("test").Start(context.Background(), "probe")
			span.End()
			if err := shutdownTelemetry(t.Context(), tp.Shutdown); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			spans := col.received()
			if len(spans) != 1 || spans[0].GetName() != "probe" {
				t.Fatalf("once shutdown returned, the collector had %v; want the one span", spans)
			}
			service := spans[0].service
			if service != tt.wantService {
				t.Errorf("service.name = %q; want %q", service, tt.wantService)
			}
		})
	}
}

// TestTracesThroughTunnel runs a gateway and an agent that export traces
// to one collector, sends a request carrying a client's W3C trace context,
// and checks that, once both have exited (flushing their spans), the
// trace runs unbroken from the client through the gateway and the agent
// to the local service: tunnel.request -> tunnel.forward -> (traceparent)
// tunnel.deliver -> tunnel.local.
func TestTracesThroughTunnel(t *testing.T) {
	t.Parallel()
	col := newCollector(t, "/v1/traces")
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.srv.URL}
	gw, addr := startGateway(t, env, "--listen", "127.0.0.1:0", "--insecure-no-auth")
	ag, publicURL := startAgent(t, env, "--gateway", "http://"+addr, "--name", "e2e-traces", localService(t).URL)

	const traceID, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, publicURL+"/traced", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Traceparent", "00-"+traceID+"-"+clientSpan+"-01")
	resp, err := testClient(t, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/traced = %d; want 200", publicURL, resp.StatusCode)
	}

	if err := ag.stop(t); err != nil {
		t.Errorf("agent: %v", err)
	}
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway: %v", err)
	}

	byName := map[string]collectedSpan{}
	for _, s := range col.received() {
		if hex.EncodeToString(s.GetTraceId()) == traceID {
			byName[s.GetName()] = s
		}
	}
	parent := clientSpan
	for _, want := range []struct {
		name, service string
		kind          tracepb.Span_SpanKind
	}{
		{observability.SpanRequest, gatewayService, tracepb.Span_SPAN_KIND_SERVER},
		{observability.SpanForward, gatewayService, tracepb.Span_SPAN_KIND_CLIENT},
		{observability.SpanDeliver, agentService, tracepb.Span_SPAN_KIND_SERVER},
		{observability.SpanLocal, agentService, tracepb.Span_SPAN_KIND_CLIENT},
	} {
		s, ok := byName[want.name]
		if !ok {
			t.Errorf("no %s span in trace %s; got %v", want.name, traceID, slices.Collect(maps.Keys(byName)))
			break
		}
		if got := hex.EncodeToString(s.GetParentSpanId()); got != parent || s.service != want.service || s.GetKind() != want.kind {
			t.Errorf("%s: parent %s, service %q, kind %v; want parent %s, service %q, kind %v",
				want.name, got, s.service, s.GetKind(), parent, want.service, want.kind)
		}
		parent = hex.EncodeToString(s.GetSpanId())
	}
}
