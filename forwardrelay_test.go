package tunnel_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/e2e"
	"github.com/http-tunnel/tunnel/internal/logbuf"
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

// Server-sent events from a relayed local service reach the public
// client one by one: the next is written only once the client has had
// the last.
func TestForwardRelaysEventsOneByOne(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	ack := make(chan struct{})
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-ack:
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(local.Close)
	fw := forward(t, gw, local.URL)
	resp, err := newClient(t).Get(fw.URL() + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for i := range 3 {
		want := fmt.Sprintf("data: %d\n\n", i)
		got := make([]byte, len(want))
		if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != want {
			t.Fatalf("event %d: %q, %v", i, got, err)
		}
		ack <- struct{}{}
	}
}

// A local service that closes the connection before it answers gets the
// public client a 502 local_service_unavailable with an error id, and the
// next request a new local connection.
func TestForwardLocalServiceClosesBeforeAnswering(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan struct{}, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			http.ReadRequest(bufio.NewReader(c))
			c.Close()
		}
	}()
	logs := &logbuf.Buffer{}
	fw := forward(t, gw, "http://"+ln.Addr().String(), tunnel.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	c := newClient(t)
	var ids []string
	for range 2 {
		status, hdr, body := get(t, c, fw.URL()+"/x")
		ids = append(ids, wantError(t, status, hdr, body, http.StatusBadGateway, tunnel.CodeLocalServiceUnavailable).ErrorID)
	}
	if len(accepted) != 2 {
		t.Errorf("%d local connections, want one per request", len(accepted))
	}
	// Each is logged, as a warning, with its error id and the tunnel's.
	logged, ok := logs.WaitFor(relayGuard, func(s string) bool {
		return strings.Contains(s, ids[0]) && strings.Contains(s, ids[1])
	})
	if !ok {
		t.Fatalf("no log lines with the error ids %v:\n%s", ids, logged)
	}
	for line := range strings.SplitSeq(logged, "\n") {
		if strings.Contains(line, ids[0]) && (!strings.Contains(line, `"level":"WARN"`) ||
			!strings.Contains(line, `"code":"local_service_unavailable"`) || !strings.Contains(line, `"tunnel_id":"`+fw.ID()+`"`)) {
			t.Errorf("log line: %s", line)
		}
	}
}

// Expect: 100-continue through the gateway and the relay, to a local
// service that answers 401 without reading the body: the 401 reaches the
// public client, which never sends its body, and the tunnel goes on.
func TestForwardExpectContinueRefused(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/private" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(local.Close)
	fw := forward(t, gw, local.URL)
	tr := &http.Transport{ExpectContinueTimeout: time.Hour}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: relayGuard}
	body := &watchedBody{r: strings.NewReader(strings.Repeat("x", 1<<20))}
	req, _ := http.NewRequest("PUT", fw.URL()+"/private", body)
	req.ContentLength = 1 << 20
	req.Header.Set("Expect", "100-continue")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("got %d, want the local 401", resp.StatusCode)
	}
	if body.read.Load() {
		t.Error("the public client was asked for the body a 401 refused")
	}
	if status, _, got := get(t, c, fw.URL()+"/next"); status != 200 || got != "ok" {
		t.Errorf("next request: %d %q", status, got)
	}
}

// watchedBody is a request body that records whether it was read.
type watchedBody struct {
	r    io.Reader
	read atomic.Bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.r.Read(p)
}

// Sequential POSTs of 64 KiB through Forward all succeed: a relayed
// exchange whose body's copy ends just after its answer keeps its stream
// (before, about one in 140 streams was closed after a complete answer,
// and the next request on it failed with agent_unavailable).
func TestForwardSequentialPosts(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	t.Cleanup(local.Close)
	fw := forward(t, gw, local.URL)
	c := newClient(t)
	body := bytes.Repeat([]byte("x"), 64<<10)
	for i := range 500 {
		resp, err := c.Post(fw.URL()+"/p", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != "65536" {
			t.Fatalf("POST %d: %d %q", i, resp.StatusCode, got)
		}
	}
}
