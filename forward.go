package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/http-tunnel/tunnel/inspector"
	"github.com/http-tunnel/tunnel/internal/h1relay"
	"github.com/http-tunnel/tunnel/observability"
)

// Forwarder proxies every request arriving through a tunnel to a local HTTP
// service. Create one with Forward.
type Forwarder struct {
	ln        *Listener
	srv       *http.Server
	done      chan struct{}
	local     *url.URL
	transport *http.Transport     // to the local service
	rec       *inspector.Recorder // with WithInspector

	// With a local service relayable to as bytes (forwardrelay.go): the
	// relay, closed when its accept loop has returned, and its streams.
	relay     *h1relay.Relay
	relayDone chan struct{}
	relayed   sync.WaitGroup
}

// Forward opens a tunnel like Listen and proxies every request that arrives
// through it to the HTTP service at localURL, streaming bodies both ways
// and passing WebSocket upgrades through. If the local service cannot be
// reached the public client gets 502 with code local_service_unavailable.
//
// localURL is one of:
//
//   - "3000" or ":3000": http://localhost:3000;
//   - "host:port": http://host:port;
//   - "http://host:port[/path]": HTTP/1.1;
//   - "https://host:port[/path]": TLS, with HTTP/2 when the service offers
//     it (WithLocalTLSConfig for a development certificate);
//   - "h2c://host:port[/path]": HTTP/2 without TLS (prior knowledge), as a
//     gRPC server on a local port speaks; WebSocket upgrades need HTTP/1.1
//     and do not work to such a service.
//
// ctx bounds the first connection only; the Forwarder runs until Close.
func Forward(ctx context.Context, gatewayURL, localURL string, opts ...Option) (*Forwarder, error) {
	local, h2c, err := parseLocal(localURL)
	if err != nil {
		return nil, fmt.Errorf("tunnel: forward: %w", err)
	}
	ln, err := Listen(ctx, gatewayURL, opts...)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 nil, // the local service is local
		DialContext:           localDialer.DialContext,
		TLSClientConfig:       ln.opts.localTLS.Clone(),
		ForceAttemptHTTP2:     true, // with a TLSClientConfig and a DialContext of its own, the transport would not
		MaxIdleConnsPerHost:   256,  // as many as the gateway keeps streams (agent.go): one per request in flight
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
	if h2c {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	f := &Forwarder{ln: ln, done: make(chan struct{}), local: local, transport: tr}
	handler := f.proxy()
	if o := ln.opts.inspect; o != nil {
		opts := *o
		if opts.Replay == nil {
			opts.Replay = handler // replays go to the local service
		}
		f.rec = inspector.New(&opts)
		handler = f.rec.Middleware(handler)
	}
	if fn := ln.opts.requestLog; fn != nil {
		handler = logRequests(handler, fn)
	}
	f.srv = &http.Server{
		Handler:  f.traced(handler),
		ErrorLog: slog.NewLogLogger(ln.log.Handler(), slog.LevelDebug),
	}
	var served net.Listener = ln
	if relayable(local, h2c, &ln.opts) {
		served = f.startRelay()
	}
	go func() {
		defer close(f.done)
		f.srv.Serve(served)
	}()
	return f, nil
}

// parseLocal parses Forward's localURL: the URL to send requests to, and
// whether to speak HTTP/2 without TLS to it.
func parseLocal(raw string) (*url.URL, bool, error) {
	s := raw
	if digits := strings.TrimPrefix(s, ":"); digits != "" && strings.Trim(digits, "0123456789") == "" {
		if p, err := strconv.ParseUint(digits, 10, 16); err != nil || p == 0 {
			return nil, false, fmt.Errorf("local service %q: port out of range", raw)
		}
		s = "localhost:" + digits
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, false, fmt.Errorf("local service %q: want a port, host:port, or an http, https or h2c URL", raw)
	}
	switch u.Scheme {
	case "http", "https":
		return u, false, nil
	case "h2c":
		u.Scheme = "http"
		return u, true, nil
	}
	return nil, false, fmt.Errorf("local service %q: scheme %q is not http, https or h2c", raw, u.Scheme)
}

// proxy returns the handler that sends tunneled requests to the local
// service.
func (f *Forwarder) proxy() http.Handler {
	rewriteHost := f.ln.opts.rewriteHost
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(f.local)
			if f.local.RawQuery == "" {
				// SetURL keeps the cleaned query; restore it byte for byte.
				pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			}
			if !rewriteHost {
				pr.Out.Host = pr.In.Host
			}
			passTrailers(pr)
			// The gateway set these for the public client; Rewrite removed
			// them from the outbound request. The tunnel is trusted.
			for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := pr.In.Header[h]; ok {
					pr.Out.Header[h] = v
				}
			}
		},
		Transport:  &tracingTransport{base: f.transport, tp: f.ln.opts.tracerProvider, tracer: observability.Tracer(f.ln.opts.tracerProvider)},
		BufferPool: proxyBuffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			ctx := r.Context()
			if ctx.Err() != nil && errors.Is(err, context.Canceled) {
				return
			}
			f.localFailed(w, r, err)
		},
	}
}

// localFailed answers a request the local service did not, with
// local_service_unavailable: the proxy's and the relay's failures alike.
func (f *Forwarder) localFailed(w http.ResponseWriter, r *http.Request, err error) {
	writeError(r.Context(), w, wantsHTML(r), f.ln.log, &Error{Code: CodeLocalServiceUnavailable, Message: ErrLocalServiceUnavailable.Message, Err: err},
		slog.String("tunnel_id", f.ln.ID()), slog.String("local", f.local.Host), slog.String("method", r.Method), slog.String("path", r.URL.Path))
}

// localDialer opens connections to the local service, for the proxy's
// transport and for the relay.
var localDialer = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}

// traced wraps the Forwarder's handler in a tunnel.deliver span that
// continues the trace the gateway sent. While no span can be recorded
// (observability.Tracing), requests skip it: extracting the context and
// starting a span that records nothing cost each request a few
// allocations.
func (f *Forwarder) traced(h http.Handler) http.Handler {
	tp := f.ln.opts.tracerProvider
	tracer := observability.Tracer(tp)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !observability.Tracing(tp) {
			h.ServeHTTP(w, r)
			return
		}
		ctx := observability.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, observability.SpanDeliver, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path),
				observability.AttrTunnelID.String(f.ln.ID())))
		defer span.End()
		if !span.IsRecording() {
			h.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.status))
		}
	})
}

// tracingTransport wraps the call to the local service in a tunnel.local
// span and sends its context on in traceparent, while spans can be
// recorded through tp (observability.Tracing).
type tracingTransport struct {
	base   http.RoundTripper
	tp     trace.TracerProvider
	tracer trace.Tracer
}

func (t *tracingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !observability.Tracing(t.tp) {
		return t.base.RoundTrip(req)
	}
	ctx, span := t.tracer.Start(req.Context(), observability.SpanLocal, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", req.Method), attribute.String("server.address", req.URL.Host)))
	if !span.IsRecording() {
		span.End()
		return t.base.RoundTrip(req)
	}
	defer span.End()
	// A RoundTripper must not change its request: inject into a copy.
	out := req.WithContext(ctx)
	out.Header = req.Header.Clone()
	observability.Propagator.Inject(ctx, propagation.HeaderCarrier(out.Header))
	resp, err := t.base.RoundTrip(out)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	return resp, nil
}

// URL returns the tunnel's public URL.
func (f *Forwarder) URL() string { return f.ln.URL() }

// ID returns the tunnel's ID.
func (f *Forwarder) ID() string { return f.ln.ID() }

// Done returns a channel closed when the Forwarder has stopped for good.
func (f *Forwarder) Done() <-chan struct{} { return f.ln.Done() }

// Err returns why the Forwarder stopped; see Listener.Err.
func (f *Forwarder) Err() error { return f.ln.Err() }

// Close stops the Forwarder at once, cutting requests in flight, and
// returns when its connection to the gateway has closed.
func (f *Forwarder) Close() error {
	f.ln.Close()
	f.srv.Close()
	f.closeRelay()
	<-f.done
	<-f.ln.Done()
	f.transport.CloseIdleConnections()
	return nil
}

// CloseWithContext stops the Forwarder gracefully: the gateway routes it no
// new requests, those it had routed here are forwarded and answered, then
// its connection to the gateway closes and the forwarding server stops (in
// that order: net/http drops requests it reads once its shutdown began).
// If ctx ends first, what is left is cut and ctx's error returned.
func (f *Forwarder) CloseWithContext(ctx context.Context) error {
	err := f.ln.CloseWithContext(ctx)
	if serr := f.srv.Shutdown(ctx); serr != nil {
		f.srv.Close()
		if err == nil {
			err = serr
		}
	}
	<-f.done
	f.closeRelay()
	f.transport.CloseIdleConnections()
	return err
}

// Inspector returns the recorder of the exchanges the Forwarder has
// forwarded (WithInspector): serve its Handler to see them live and replay
// them; nil without WithInspector.
func (f *Forwarder) Inspector() *inspector.Recorder { return f.rec }
