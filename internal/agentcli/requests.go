package agentcli

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/http-tunnel/tunnel/observability"
)

// request is one request that went through the tunnel to the local
// service, as the agent's request lines show it.
type request struct {
	start    time.Time
	method   string
	path     string
	status   int // 0 when no final status was written (a WebSocket's 101, a client gone)
	duration time.Duration
}

// Forward serves each tunneled request itself and offers no hook around
// its handler, but it wraps every request in a tunnel.deliver span
// carrying the method, the path and the response status (the documented
// attributes of docs/observability.md). The agent reads its request lines
// from those spans: observeRequests wraps the tracer provider it gives
// Forward, passes every span on to base, and reports each tunnel.deliver
// span to onRequest when it ends. When the library grows a way to wrap
// Forward's handler, this file gives way to a few lines of middleware.

// observeRequests returns a TracerProvider that passes everything to base
// (a no-op provider when nil) and calls onRequest for every request
// Forward delivers, once its response is complete. onRequest runs on the
// request's goroutine.
func observeRequests(base trace.TracerProvider, onRequest func(request)) trace.TracerProvider {
	if base == nil {
		base = noop.NewTracerProvider()
	}
	return &requestObserver{base: base, onRequest: onRequest}
}

type requestObserver struct {
	embedded.TracerProvider
	base      trace.TracerProvider
	onRequest func(request)
}

func (p *requestObserver) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return &observingTracer{base: p.base.Tracer(name, opts...), onRequest: p.onRequest}
}

type observingTracer struct {
	embedded.Tracer
	base      trace.Tracer
	onRequest func(request)
}

func (t *observingTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	ctx, span := t.base.Start(ctx, name, opts...)
	if name != observability.SpanDeliver {
		return ctx, span
	}
	cfg := trace.NewSpanStartConfig(opts...)
	s := &deliverSpan{Span: span, onRequest: t.onRequest, req: request{start: time.Now()}}
	s.note(cfg.Attributes())
	return trace.ContextWithSpan(ctx, s), s
}

// deliverSpan is a tunnel.deliver span that reports its request when it
// ends. It says it is recording whatever base does, so that Forward
// records the status on it.
type deliverSpan struct {
	trace.Span
	onRequest func(request)

	mu    sync.Mutex
	req   request
	ended bool
}

func (s *deliverSpan) IsRecording() bool { return true }

func (s *deliverSpan) SetAttributes(kv ...attribute.KeyValue) {
	s.note(kv)
	s.Span.SetAttributes(kv...)
}

// note keeps the attributes of the request line.
func (s *deliverSpan) note(kv []attribute.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range kv {
		switch a.Key {
		case "http.request.method":
			s.req.method = a.Value.AsString()
		case "url.path":
			s.req.path = a.Value.AsString()
		case "http.response.status_code":
			s.req.status = int(a.Value.AsInt64())
		}
	}
}

func (s *deliverSpan) End(opts ...trace.SpanEndOption) {
	s.Span.End(opts...)
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	req := s.req
	s.mu.Unlock()
	req.duration = time.Since(req.start)
	s.onRequest(req)
}
