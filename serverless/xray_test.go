package serverless

import (
	"context"
	"encoding/binary"
	"net/http"
	"regexp"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

var xrayHeaderFormat = regexp.MustCompile(`^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=[01]$`)

func TestXRayPropagatorExtract(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		header  string
		valid   bool
		traceID string
		spanID  string
		sampled bool
	}{
		{"sampled", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", true,
			"5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8", true},
		{"not sampled", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0", true,
			"5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8", false},
		{"spaces, other order, extra fields", " Sampled=1; Parent=53995c3f42cd8ad8 ;Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=a87bd80c:1", true,
			"5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8", true},
		{"deferred sampling", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?", true,
			"5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8", false},
		{"no parent", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", false, "", "", false},
		{"no root", "Parent=53995c3f42cd8ad8;Sampled=1", false, "", "", false},
		{"version 2", "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", false, "", "", false},
		{"short root", "Root=1-5759e988-bd862e3fe1be46a99427279;Parent=53995c3f42cd8ad8", false, "", "", false},
		{"not hex", "Root=1-5759e988-bd862e3fe1be46a99427279z;Parent=53995c3f42cd8ad8", false, "", "", false},
		{"zero parent", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000", false, "", "", false},
		{"empty", "", false, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.header != "" {
				h.Set("x-amzn-trace-id", tt.header)
			}
			sc := trace.SpanContextFromContext(XRayPropagator{}.Extract(context.Background(), propagation.HeaderCarrier(h)))
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
}

func TestXRayPropagatorRoundTrip(t *testing.T) {
	t.Parallel()
	g := XRayIDGenerator{}
	for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled} {
		tid, sid := g.NewIDs(context.Background())
		ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: sid, TraceFlags: flags,
		}))
		h := http.Header{}
		XRayPropagator{}.Inject(ctx, propagation.HeaderCarrier(h))
		got := h.Get(XRayHeader)
		if !xrayHeaderFormat.MatchString(got) {
			t.Fatalf("injected %q", got)
		}
		sc := trace.SpanContextFromContext(XRayPropagator{}.Extract(context.Background(), propagation.HeaderCarrier(h)))
		if sc.TraceID() != tid || sc.SpanID() != sid || sc.TraceFlags() != flags {
			t.Errorf("round trip of %s/%s/%v gave %s/%s/%v", tid, sid, flags, sc.TraceID(), sc.SpanID(), sc.TraceFlags())
		}
	}

	// No span context, no header.
	h := http.Header{}
	XRayPropagator{}.Inject(context.Background(), propagation.HeaderCarrier(h))
	if len(h) != 0 {
		t.Errorf("injected %v without a span context", h)
	}
	if f := (XRayPropagator{}).Fields(); len(f) != 1 || f[0] != XRayHeader {
		t.Errorf("Fields() = %q", f)
	}
}

func TestXRayIDGenerator(t *testing.T) {
	t.Parallel()
	at := time.Unix(0x5759e988, 0)
	g := XRayIDGenerator{now: func() time.Time { return at }}
	seen := map[trace.TraceID]bool{}
	for range 100 {
		tid, sid := g.NewIDs(context.Background())
		if !tid.IsValid() || !sid.IsValid() {
			t.Fatalf("invalid IDs %s %s", tid, sid)
		}
		if s := binary.BigEndian.Uint32(tid[:4]); s != 0x5759e988 {
			t.Fatalf("trace ID %s starts with %08x, want the time 5759e988", tid, s)
		}
		if seen[tid] {
			t.Fatalf("trace ID %s repeated", tid)
		}
		seen[tid] = true
		if sid2 := g.NewSpanID(context.Background(), tid); !sid2.IsValid() || sid2 == sid {
			t.Fatalf("NewSpanID = %s after %s", sid2, sid)
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
	before := time.Now().Unix()
	_, span := tp.Tracer("test").Start(t.Context(), "span")
	span.End()
	tid := span.SpanContext().TraceID()
	if s := int64(binary.BigEndian.Uint32(tid[:4])); s < before || s > time.Now().Unix() {
		t.Errorf("trace ID %s does not start with the current time", tid)
	}

	// An X-Ray parent from API Gateway becomes the parent of the
	// gateway's span, through the propagator main installs.
	h := http.Header{}
	h.Set("X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
	ctx := NewPropagator().Extract(t.Context(), propagation.HeaderCarrier(h))
	_, child := tp.Tracer("test").Start(ctx, "child")
	child.End()
	if got := child.SpanContext().TraceID().String(); got != "5759e988bd862e3fe1be46a994272793" {
		t.Errorf("child of the X-Ray parent has trace ID %s", got)
	}
	out := http.Header{}
	NewPropagator().Inject(trace.ContextWithSpanContext(t.Context(), child.SpanContext()), propagation.HeaderCarrier(out))
	if !xrayHeaderFormat.MatchString(out.Get(XRayHeader)) || out.Get("Traceparent") == "" {
		t.Errorf("injected %v, want X-Amzn-Trace-Id and traceparent", out)
	}
}

// FuzzXRayHeader checks that any header either fails to parse or gives a
// span context that injects back to a header of the same IDs.
func FuzzXRayHeader(f *testing.F) {
	f.Add("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
	f.Add("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?")
	f.Add(";;=;Root=;Parent=")
	f.Fuzz(func(t *testing.T, header string) {
		sc, ok := parseXRayHeader(header)
		if !ok {
			return
		}
		h := http.Header{}
		XRayPropagator{}.Inject(trace.ContextWithRemoteSpanContext(context.Background(), sc), propagation.HeaderCarrier(h))
		again, ok := parseXRayHeader(h.Get(XRayHeader))
		if !ok || again.TraceID() != sc.TraceID() || again.SpanID() != sc.SpanID() || again.IsSampled() != sc.IsSampled() {
			t.Fatalf("%q parsed to %v, which injects as %q", header, sc, h.Get(XRayHeader))
		}
	})
}
