package serverless

import (
	"context"
	"encoding/binary"
	"net/http"
	"regexp"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The tests below check the function's trace wiring: which headers the
// propagator of NewPropagator reads and writes, which wins when a request
// has both, and that TracerProviderFromEnv's trace IDs are X-Ray's. The
// parsing of X-Amzn-Trace-Id itself is the contrib package's.

const xrayHeader = "X-Amzn-Trace-Id"

var xrayHeaderFormat = regexp.MustCompile(`^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=[01]$`)

func TestPropagatorExtract(t *testing.T) {
	t.Parallel()
	const (
		xraySampled    = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
		xrayTraceID    = "5759e988bd862e3fe1be46a994272793"
		xraySpanID     = "53995c3f42cd8ad8"
		w3c            = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		w3cTraceID     = "0af7651916cd43dd8448eb211c80319c"
		w3cSpanID      = "b7ad6b7169203331"
		w3cNotSampled  = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
		xrayNotSampled = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
	)
	tests := []struct {
		name      string
		xray, w3c string
		valid     bool
		traceID   string
		spanID    string
		sampled   bool
	}{
		{name: "x-ray sampled", xray: xraySampled, valid: true, traceID: xrayTraceID, spanID: xraySpanID, sampled: true},
		{name: "x-ray not sampled", xray: xrayNotSampled, valid: true, traceID: xrayTraceID, spanID: xraySpanID},
		{name: "x-ray deferred sampling", xray: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?",
			valid: true, traceID: xrayTraceID, spanID: xraySpanID},
		{name: "x-ray with lineage, as Lambda sends", xray: xraySampled + ";Lineage=a87bd80c:1|68fd508a:5",
			valid: true, traceID: xrayTraceID, spanID: xraySpanID, sampled: true},
		{name: "x-ray without parent", xray: "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"},
		{name: "x-ray version 2", xray: "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"},
		{name: "traceparent alone", w3c: w3c, valid: true, traceID: w3cTraceID, spanID: w3cSpanID, sampled: true},
		{name: "traceparent wins over x-ray", xray: xraySampled, w3c: w3cNotSampled, valid: true, traceID: w3cTraceID, spanID: w3cSpanID},
		{name: "invalid traceparent leaves x-ray", xray: xraySampled, w3c: "00-zz-b7ad6b7169203331-01",
			valid: true, traceID: xrayTraceID, spanID: xraySpanID, sampled: true},
		{name: "neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.xray != "" {
				h.Set("x-amzn-trace-id", tt.xray)
			}
			if tt.w3c != "" {
				h.Set("traceparent", tt.w3c)
			}
			sc := trace.SpanContextFromContext(NewPropagator().Extract(context.Background(), propagation.HeaderCarrier(h)))
			if sc.IsValid() != tt.valid {
				t.Fatalf("valid = %v, want %v (%v)", sc.IsValid(), tt.valid, sc)
			}
			if !tt.valid {
				return
			}
			if sc.TraceID().String() != tt.traceID || sc.SpanID().String() != tt.spanID || sc.IsSampled() != tt.sampled || !sc.IsRemote() {
				t.Errorf("span context %s/%s sampled %v remote %v, want %s/%s sampled %v remote",
					sc.TraceID(), sc.SpanID(), sc.IsSampled(), sc.IsRemote(), tt.traceID, tt.spanID, tt.sampled)
			}
		})
	}

	t.Run("baggage", func(t *testing.T) {
		h := http.Header{}
		h.Set("x-amzn-trace-id", xraySampled)
		h.Set("baggage", "tenant=acme")
		ctx := NewPropagator().Extract(context.Background(), propagation.HeaderCarrier(h))
		if got := baggage.FromContext(ctx).Member("tenant").Value(); got != "acme" {
			t.Errorf("baggage tenant = %q, want acme", got)
		}
		if !trace.SpanContextFromContext(ctx).IsValid() {
			t.Error("baggage cost the X-Ray span context")
		}
	})
}

func TestPropagatorInject(t *testing.T) {
	t.Parallel()
	p := NewPropagator()
	for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled} {
		sc := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    trace.TraceID{0x57, 0x59, 0xe9, 0x88, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
			SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
			TraceFlags: flags,
		})
		h := http.Header{}
		p.Inject(trace.ContextWithSpanContext(context.Background(), sc), propagation.HeaderCarrier(h))
		got := h.Get(xrayHeader)
		if !xrayHeaderFormat.MatchString(got) {
			t.Fatalf("injected %s: %q", xrayHeader, got)
		}
		if h.Get("Traceparent") == "" {
			t.Fatalf("injected %v, want traceparent too", h)
		}
		// Both headers carry the same span context: an agent or service
		// that reads either joins the same trace.
		for _, name := range []string{xrayHeader, "Traceparent"} {
			one := http.Header{name: h.Values(name)}
			back := trace.SpanContextFromContext(p.Extract(context.Background(), propagation.HeaderCarrier(one)))
			if back.TraceID() != sc.TraceID() || back.SpanID() != sc.SpanID() || back.TraceFlags() != flags {
				t.Errorf("%s %q extracts as %s/%s/%v, want %s/%s/%v", name, one.Get(name),
					back.TraceID(), back.SpanID(), back.TraceFlags(), sc.TraceID(), sc.SpanID(), flags)
			}
		}
	}

	// No span context, no header.
	h := http.Header{}
	p.Inject(context.Background(), propagation.HeaderCarrier(h))
	if len(h) != 0 {
		t.Errorf("injected %v without a span context", h)
	}
	fields := p.Fields()
	for _, want := range []string{xrayHeader, "traceparent", "baggage"} {
		if !slices.Contains(fields, want) {
			t.Errorf("Fields() = %q, without %s", fields, want)
		}
	}
}

func TestTracerProviderFromEnv(t *testing.T) {
	t.Parallel()
	tp, err := TracerProviderFromEnv(t.Context(), func(string) string { return "" })
	if err != nil || tp != nil {
		t.Fatalf("without TUNNEL_XRAY: %v, %v; want no provider", tp, err)
	}
	env := map[string]string{"TUNNEL_XRAY": "1"}
	tp, err = TracerProviderFromEnv(t.Context(), func(k string) string { return env[k] })
	if err != nil || tp == nil {
		t.Fatalf("TUNNEL_XRAY=1: %v, %v", tp, err)
	}
	t.Cleanup(func() { tp.Shutdown(context.Background()) })

	// X-Ray accepts a trace ID whose first 4 bytes are the Unix time in
	// seconds, within its retention window: the provider's trace IDs
	// start with the time the trace started.
	seen := map[trace.TraceID]bool{}
	for range 100 {
		before := time.Now().Unix()
		_, span := tp.Tracer("test").Start(t.Context(), "span")
		span.End()
		after := time.Now().Unix()
		sc := span.SpanContext()
		tid := sc.TraceID()
		if !sc.IsValid() {
			t.Fatalf("invalid span context %v", sc)
		}
		if s := int64(binary.BigEndian.Uint32(tid[:4])); s < before || s > after {
			t.Fatalf("trace ID %s does not start with the current time %08x", tid, before)
		}
		if seen[tid] {
			t.Fatalf("trace ID %s repeated", tid)
		}
		seen[tid] = true
	}

	// An X-Ray parent from API Gateway becomes the parent of the
	// gateway's span, through the propagator examples/lambda installs.
	h := http.Header{}
	h.Set(xrayHeader, "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
	ctx := NewPropagator().Extract(t.Context(), propagation.HeaderCarrier(h))
	_, child := tp.Tracer("test").Start(ctx, "child")
	child.End()
	if got := child.SpanContext().TraceID().String(); got != "5759e988bd862e3fe1be46a994272793" {
		t.Errorf("child of the X-Ray parent has trace ID %s", got)
	}
	out := http.Header{}
	NewPropagator().Inject(trace.ContextWithSpanContext(t.Context(), child.SpanContext()), propagation.HeaderCarrier(out))
	if !xrayHeaderFormat.MatchString(out.Get(xrayHeader)) || out.Get("Traceparent") == "" {
		t.Errorf("injected %v, want X-Amzn-Trace-Id and traceparent", out)
	}
}
