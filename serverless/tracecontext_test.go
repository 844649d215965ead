package serverless

import (
	"context"
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestTraceContinuation checks which trace a public request's span joins
// with tracing on, through the emulated HTTP API and Lambda: the HTTP
// API's Root-only X-Amzn-Trace-Id, the invocation's own trace context
// (active tracing), or a complete header of the client's; and that the
// local service behind the agent receives the same trace.
func TestTraceContinuation(t *testing.T) {
	t.Parallel()
	const (
		rootOnly  = "Root=1-5759e988-bd862e3fe1be46a994272793"
		rootTrace = "5759e988bd862e3fe1be46a994272793"
		complete  = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
	)
	tests := []struct {
		name          string
		header        string
		activeTracing bool
		// want is the trace and parent to continue; "invocation" means
		// the invocation's own.
		wantTrace, wantParent string
	}{
		{name: "root only", header: rootOnly, wantTrace: rootTrace},
		{name: "complete header", header: complete, activeTracing: true, wantTrace: rootTrace, wantParent: "53995c3f42cd8ad8"},
		{name: "invocation's trace context", header: rootOnly, activeTracing: true, wantTrace: "invocation", wantParent: "invocation"},
		{name: "invocation's, no header from the client", activeTracing: true, wantTrace: "invocation", wantParent: "invocation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			t.Cleanup(func() { tp.Shutdown(context.Background()) })
			invocation := make(chan string, 1)
			g := newGateway(t, gatewayConfig{tracer: tp, activeTracing: tt.activeTracing, onHTTP: func(ctx context.Context) {
				h, _ := ctx.Value(lambdaTraceKey).(string)
				invocation <- h
			}})
			ln, _ := g.agent(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Seen-Traceparent", r.Header.Get("Traceparent"))
			}))
			var hdr http.Header
			if tt.header != "" {
				hdr = http.Header{"X-Amzn-Trace-Id": {tt.header}}
			}
			resp, body := g.do(t, http.MethodGet, ln.URL()+"/traced", nil, hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			inv := <-invocation
			wantTrace, wantParent := tt.wantTrace, tt.wantParent
			if wantTrace == "invocation" {
				sc, ok := parseXRayHeader(inv)
				if !ok || !sc.HasSpanID() {
					t.Fatalf("invocation trace header %q", inv)
				}
				wantTrace, wantParent = sc.TraceID().String(), sc.SpanID().String()
			}

			var server sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.SpanKind() == trace.SpanKindServer {
					server = s
				}
			}
			if server == nil {
				t.Fatal("no server span recorded")
			}
			if got := server.SpanContext().TraceID().String(); got != wantTrace {
				t.Errorf("request span in trace %s, want %s", got, wantTrace)
			}
			parent := server.Parent()
			if !parent.IsRemote() || !parent.SpanID().IsValid() {
				t.Errorf("request span's parent %v, want a remote one", parent)
			}
			if wantParent != "" && parent.SpanID().String() != wantParent {
				t.Errorf("request span's parent %s, want %s", parent.SpanID(), wantParent)
			}
			if !server.SpanContext().IsSampled() {
				t.Error("request span not sampled")
			}
			// traceparent: 00-<trace>-<span>-<flags>
			if seen := resp.Header.Get("X-Seen-Traceparent"); !strings.HasPrefix(seen, "00-"+wantTrace+"-") {
				t.Errorf("local service got traceparent %q, want trace %s", seen, wantTrace)
			}
		})
	}

	t.Run("tracing off", func(t *testing.T) {
		t.Parallel()
		h := &Handler{Server: newGateway(t, gatewayConfig{}).h.Server}
		if sc := trace.SpanContextFromContext(h.traceContext(context.Background(), rootOnly)); sc.IsValid() {
			t.Errorf("span context %v without a TracerProvider", sc)
		}
	})
}

func TestParseXRayHeader(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in              string
		ok, span, sampl bool
	}{
		{"Root=1-5759e988-bd862e3fe1be46a994272793", true, false, true},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0", true, true, false},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?;Lineage=a:1", true, true, true},
		{"Root=2-5759e988-bd862e3fe1be46a994272793", false, false, false},
		{"Root=1-5759e988-zz862e3fe1be46a994272793", false, false, false},
		{"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=5399", false, false, false},
		{"Parent=53995c3f42cd8ad8", false, false, false},
		{"", false, false, false},
	} {
		sc, ok := parseXRayHeader(tt.in)
		if ok != tt.ok || (ok && (sc.HasSpanID() != tt.span || sc.IsSampled() != tt.sampl)) {
			t.Errorf("parseXRayHeader(%q) = %v, %v", tt.in, sc, ok)
		}
	}
}
