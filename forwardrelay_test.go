package tunnel_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/e2e"
	"github.com/http-tunnel/tunnel/observability"
)

// relayGuard bounds the waits of these tests; nothing is timed by it.
const relayGuard = 30 * time.Second

// A WebSocket goes through Forward to a plain http:// service, whose
// streams the relay serves as bytes: the 101 and then messages both ways,
// on either transport.
func TestForwardRelaysWebSocket(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr tunnel.Option) {
		gw, _ := gateway(t, nil)
		local := httptest.NewServer(http.HandlerFunc(e2e.WSEcho))
		t.Cleanup(local.Close)
		fw := forward(t, gw, local.URL, tr)
		e2e.CheckWSEcho(t, fw.URL())
	})
}

// A public client that leaves while the local service holds its request
// ends that request at the local service: the gateway closes the stream,
// the relay hears it (PeerCloser) and closes its local connection, and
// the local handler's context ends. The tunnel then serves the next
// request.
func TestForwardPublicClientLeaves(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr tunnel.Option) {
		gw, _ := gateway(t, nil)
		arrived, ended := make(chan struct{}, 1), make(chan struct{}, 1)
		local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/hold" {
				io.WriteString(w, "ok")
				return
			}
			arrived <- struct{}{}
			<-r.Context().Done()
			ended <- struct{}{}
		}))
		t.Cleanup(local.Close)
		fw := forward(t, gw, local.URL, tr)
		c := newClient(t)

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", fw.URL()+"/hold", nil)
		gone := make(chan error, 1)
		go func() {
			resp, err := c.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			gone <- err
		}()
		waitFor(t, arrived, "the request's arrival at the local service")
		cancel()
		if err := <-gone; err == nil {
			t.Fatal("the cancelled request got a response")
		}
		waitFor(t, ended, "the end of the local request's context")
		if status, _, body := get(t, c, fw.URL()+"/next"); status != 200 || body != "ok" {
			t.Errorf("next request: %d %q", status, body)
		}
	})
}

// WithRequestLog reports each request the relay forwards as it ends,
// with the target the local service saw and the status sent back: a
// local answer, and the 502 of a local service that is down.
func TestForwardRequestLog(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(local.Close)
	logs := make(chan tunnel.RequestLog, 8)
	fw := forward(t, gw, local.URL, tunnel.WithRequestLog(func(l tunnel.RequestLog) { logs <- l }))
	c := newClient(t)
	resp, err := c.Post(fw.URL()+"/items?id=7", "text/plain", strings.NewReader("new item"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := nextLog(t, logs)
	if got.Method != "POST" || got.Target != "/items?id=7" || got.Status != 201 || got.Duration <= 0 {
		t.Errorf("logged %+v, want POST /items?id=7 201 with a duration", got)
	}

	local.Close()
	if status, _, _ := get(t, c, fw.URL()+"/down"); status != http.StatusBadGateway {
		t.Fatalf("with the local service down: %d", status)
	}
	if got := nextLog(t, logs); got.Method != "GET" || got.Target != "/down" || got.Status != http.StatusBadGateway {
		t.Errorf("logged %+v, want GET /down 502", got)
	}
}

// With a tracer provider, Forward does not relay as bytes: each request
// goes through the forwarding server and ReverseProxy, which record
// tunnel.deliver and tunnel.local spans, and WithRequestLog still
// reports it.
func TestForwardTracedFallsBack(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("Traceparent"))
	}))
	t.Cleanup(local.Close)
	tp := &spanNames{ended: make(chan string, 64)}
	logs := make(chan tunnel.RequestLog, 8)
	fw := forward(t, gw, local.URL, tunnel.WithTracerProvider(tp), tunnel.WithRequestLog(func(l tunnel.RequestLog) { logs <- l }))
	if status, _, _ := get(t, newClient(t), fw.URL()+"/traced"); status != 200 {
		t.Fatalf("status %d", status)
	}
	spans := map[string]bool{}
	for !spans[observability.SpanDeliver] || !spans[observability.SpanLocal] {
		select {
		case name := <-tp.ended:
			spans[name] = true
		case <-time.After(relayGuard):
			t.Fatalf("spans ended: %v, want %s and %s", spans, observability.SpanDeliver, observability.SpanLocal)
		}
	}
	if got := nextLog(t, logs); got.Target != "/traced" || got.Status != 200 {
		t.Errorf("logged %+v", got)
	}
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(relayGuard):
		t.Fatalf("%s did not happen", what)
	}
}

func nextLog(t *testing.T, logs <-chan tunnel.RequestLog) tunnel.RequestLog {
	t.Helper()
	select {
	case l := <-logs:
		return l
	case <-time.After(relayGuard):
		t.Fatal("no request log")
		return tunnel.RequestLog{}
	}
}

// spanNames is a TracerProvider whose spans record, and report the names
// of those that end.
type spanNames struct {
	embedded.TracerProvider
	ended chan string
}

func (p *spanNames) Tracer(string, ...trace.TracerOption) trace.Tracer { return spanTracer{p: p} }

type spanTracer struct {
	embedded.Tracer
	p *spanNames
}

func (t spanTracer) Start(ctx context.Context, name string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	s := &namedSpan{p: t.p, name: name}
	return trace.ContextWithSpan(ctx, s), s
}

type namedSpan struct {
	noop.Span
	p    *spanNames
	name string
	once sync.Once
}

func (s *namedSpan) IsRecording() bool { return true }

func (s *namedSpan) End(...trace.SpanEndOption) {
	s.once.Do(func() { s.p.ended <- s.name })
}

// CloseWithContext on a relaying Forwarder answers the request in flight
// from the local service, and returns nil once it has, though the
// Forwarder holds streams kept alive between requests: those close with
// the gateway's drain, not at ctx's deadline.
func TestForwardCloseWithContextFinishesRelayedRequests(t *testing.T) {
	t.Parallel()
	eachTransport(t, func(t *testing.T, tr tunnel.Option) {
		gw, _ := gateway(t, nil)
		entered, release := make(chan struct{}, 1), make(chan struct{})
		local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				entered <- struct{}{}
				<-release
			}
			io.WriteString(w, "finished "+r.URL.Path)
		}))
		t.Cleanup(local.Close)
		fw := forward(t, gw, local.URL, tr)
		c := newClient(t)
		for range 3 { // streams kept alive at both ends
			if status, _, _ := get(t, c, fw.URL()+"/warm"); status != 200 {
				t.Fatalf("status %d", status)
			}
		}
		type result struct {
			status int
			body   string
		}
		res := make(chan result, 1)
		go func() {
			status, _, body := get(t, c, fw.URL()+"/slow")
			res <- result{status, body}
		}()
		waitFor(t, entered, "the slow request's arrival")
		closed := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), relayGuard)
			defer cancel()
			closed <- fw.CloseWithContext(ctx)
		}()
		close(release)
		if r := <-res; r.status != 200 || r.body != "finished /slow" {
			t.Errorf("request in flight during CloseWithContext: %d %q", r.status, r.body)
		}
		if err := <-closed; err != nil {
			t.Errorf("CloseWithContext: %v, want nil once the request was answered", err)
		}
	})
}
