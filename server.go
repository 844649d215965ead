package tunnel

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/http-tunnel/tunnel/internal/claim"
	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/observability"

	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/store"
)

// RoutingMode says how the gateway finds the tunnel of a public request.
type RoutingMode int

const (
	// RouteAuto, the zero value, routes by subdomain when the request's
	// host is <id>.<Domain>, and by the first path segment otherwise.
	RouteAuto RoutingMode = iota
	// RouteSubdomain routes only by subdomain: <id>.<Domain>.
	RouteSubdomain
	// RoutePath routes only by the first path segment: /<id>/..., which
	// is stripped before the request reaches the agent.
	RoutePath
)

// String returns "auto", "subdomain" or "path".
func (m RoutingMode) String() string {
	switch m {
	case RouteSubdomain:
		return "subdomain"
	case RoutePath:
		return "path"
	default:
		return "auto"
	}
}

// Defaults of Server's zero-valued fields.
const (
	DefaultResponseTimeout   = 30 * time.Second
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultHeartbeat         = 15 * time.Second
	DefaultLeaseTTL          = time.Minute
	DefaultMaxURIBytes       = 8 << 10
	DefaultMaxHeaderCount    = 100
)

// Server is the gateway: an http.Handler that serves agents at
// protocol.ConnectPath and forwards every other request to the tunnel it
// names.
//
// The zero value is ready to use: it keeps records in memory, caches them
// in an LRU, accepts every agent (no Authenticator) and routes by path
// segment (and by subdomain once Domain or BaseURL is set). Fields must not
// be changed after the first request. A Server is safe for concurrent use.
//
// Server is a handler, not a listener: serve it with Serve, which applies
// ReadHeaderTimeout and MaxHeaderBytes to the http.Server it creates, or
// mount it in an http.Server of your own.
type Server struct {
	// BaseURL is the public base URL of the gateway, such as
	// "https://tunnel.example.com"; tunnel URLs are built from it. If
	// empty, each agent's URLs are built from the scheme and host of its
	// own connect request.
	BaseURL string

	// Domain is the DNS domain under which tunnels get subdomains
	// (<id>.<Domain>). If empty, it is BaseURL's host name; if that is
	// empty too, only path routing is used.
	Domain string

	// Routing selects subdomain routing, path routing or both (the zero
	// value, RouteAuto).
	Routing RoutingMode

	// Store keeps tunnel records. Nil means a store.NewMemory().
	Store store.Store

	// Cache sits in front of Store. Nil means store.NewLRU(0, 0).
	Cache store.Cache

	// Authenticator admits agents. Nil admits every agent: right for tests
	// and loopback, wrong for a gateway on a network.
	Authenticator Authenticator

	// Logger receives the gateway's logs. Nil means slog.Default().
	Logger *slog.Logger

	// ResponseTimeout bounds how long the gateway waits for the agent's
	// response headers; past it the public client gets 504. Zero means
	// DefaultResponseTimeout; negative means no limit. Streaming bodies
	// are not limited once headers have arrived.
	ResponseTimeout time.Duration

	// HandshakeTimeout bounds an agent's handshake. Zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// ReadHeaderTimeout is the http.Server setting Serve applies. Zero
	// means DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration

	// MaxHeaderBytes caps the size of a public request's header block
	// (431 past it). Serve applies it to its http.Server too. Zero means
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int

	// Heartbeat is the keepalive interval of agent sessions; an agent that
	// misses it is disconnected. Zero means DefaultHeartbeat.
	Heartbeat time.Duration

	// LeaseTTL is how long a tunnel record lives without renewal. The node
	// holding an agent renews it every LeaseTTL/3; after an unclean
	// disconnect the record, and with it the tunnel's name, stays reserved
	// for the same agent for up to LeaseTTL. Zero means DefaultLeaseTTL.
	LeaseTTL time.Duration

	// NodeURL is the base URL at which other gateway nodes reach this one
	// (such as "http://10.0.0.5:8080"), for running several nodes on one
	// shared Store. Tunnel records name the node that holds the agent; a
	// public request arriving at another node is proxied to it. Empty means
	// a single node: no request is proxied to another node.
	NodeURL string

	// NodeSecret authenticates requests between nodes: a node proxies with
	// it, and refuses (403) a node-to-node request without it. Required when
	// NodeURL is set; the same on every node.
	NodeSecret string

	// TrustProxy says the gateway runs behind a reverse proxy or load
	// balancer that sets X-Forwarded-For, X-Forwarded-Proto and
	// X-Forwarded-Host. Then the client address is the last X-Forwarded-For
	// entry (for AgentLimiter and the agent's X-Forwarded-For, which keeps
	// the whole chain), and the proxy's scheme and host are passed on.
	// False (the default) ignores those headers from the network, since
	// anyone can send them.
	TrustProxy bool

	// AgentLimiter, if set, limits agent connections per client IP address
	// (keys "agent:<ip>"). Over the limit an agent gets 429 rate_limited
	// with Retry-After.
	AgentLimiter ratelimit.Limiter

	// RequestLimiter, if set, limits public requests per tunnel (keys
	// "tunnel:<id>"), answering 429 rate_limited with Retry-After.
	RequestLimiter ratelimit.Limiter

	// LimiterFailClosed selects what happens when a limiter's backend fails:
	// false (the default) lets the request through and logs the failure;
	// true refuses it with 503 unavailable.
	LimiterFailClosed bool

	// MaxBodyBytes caps a public request's body: a larger Content-Length is
	// answered 413 before anything reaches the agent, and a body without one
	// (chunked) is cut off with 413 once it passes the limit. Zero means no
	// limit: bodies stream through without being held in memory.
	MaxBodyBytes int64

	// MaxURIBytes caps the request target (path and query) of a public
	// request; past it the answer is 414. Zero means DefaultMaxURIBytes.
	MaxURIBytes int

	// MaxHeaderCount caps the number of header fields of a public request;
	// past it the answer is 431. Zero means DefaultMaxHeaderCount.
	MaxHeaderCount int

	// TracerProvider and MeterProvider receive the gateway's spans and
	// metrics (see docs/observability.md). Nil means the otel globals,
	// which record nothing until a program installs an SDK.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider

	// MetricsPerTunnel adds the tunnel.id attribute to request metrics.
	// Off by default: one time series per tunnel is unbounded cardinality
	// on a public gateway. Spans and logs always carry the tunnel ID.
	MetricsPerTunnel bool

	// Relay, if set, delivers every public request (see Relay): the
	// serverless adapter's way to agents behind API Gateway. Nil means
	// agents connect to this Server (or to other nodes sharing its Store).
	Relay Relay

	// OnConnect and OnDisconnect, if set, are called when an agent's
	// tunnel comes up and goes down. They run on the agent's goroutine and
	// must not block.
	OnConnect, OnDisconnect func(Tunnel)

	initOnce sync.Once
	store    store.Store
	cache    store.Cache
	log      *slog.Logger
	node     string                 // NodeURL, as records name this node; "" for a single node
	hop      *httputil.ReverseProxy // to other nodes
	tracer   trace.Tracer
	inst     *observability.Instruments

	mu       sync.Mutex
	sessions map[string]*session // by connection ID
	servers  map[*http.Server]struct{}

	shutdown bool     // Shutdown has begun; guarded by mu
	inflight activity // public requests being forwarded
	agents   activity // agent handlers
}

// Tunnel describes a connected tunnel.
type Tunnel struct {
	// ID is the tunnel's identifier, its subdomain label and path segment.
	ID string
	// URL is the tunnel's public URL.
	URL string
	// ConnectionID identifies the agent connection serving it now.
	ConnectionID string
	// Subject is the agent's authenticated identity.
	Subject string
	// ConnectedAt is when the current connection was established.
	ConnectedAt time.Time
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.store = s.Store
		if s.store == nil {
			s.store = store.NewMemory()
		}
		s.cache = s.Cache
		if s.cache == nil {
			s.cache = store.NewLRU(0, 0)
		}
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.Default()
		}
		s.node = strings.TrimSuffix(s.NodeURL, "/")
		s.hop = &httputil.ReverseProxy{
			Rewrite:      s.rewriteHop,
			Transport:    &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, DisableCompression: true, ResponseHeaderTimeout: s.responseTimeout()},
			BufferPool:   proxyBuffers,
			ErrorHandler: s.hopError,
			ModifyResponse: func(resp *http.Response) error {
				if resp.StatusCode == http.StatusMisdirectedRequest && resp.Header.Get(notHereHeader) != "" {
					resp.Body.Close()
					return errNotHere
				}
				return nil
			},
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		s.tracer = observability.Tracer(s.TracerProvider)
		inst, err := observability.NewInstruments(s.MeterProvider)
		if err != nil {
			s.log.Error("creating metric instruments failed; metrics are off", slog.Any("err", err))
			inst, _ = observability.NewInstruments(noop.NewMeterProvider())
		}
		s.inst = inst
		s.sessions = make(map[string]*session)
		s.servers = make(map[*http.Server]struct{})
		if err := s.check(); err != nil {
			// Serve refuses to start; a Server mounted elsewhere can only say so.
			s.log.Error("invalid gateway configuration", slog.Any("err", err))
		}
	})
}

func (s *Server) responseTimeout() time.Duration {
	switch {
	case s.ResponseTimeout < 0:
		return 0
	case s.ResponseTimeout == 0:
		return DefaultResponseTimeout
	}
	return s.ResponseTimeout
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (s *Server) domain() string {
	if s.Domain != "" {
		return s.Domain
	}
	if s.BaseURL != "" {
		if u, err := url.Parse(s.BaseURL); err == nil {
			return u.Hostname()
		}
	}
	return ""
}

// Serve accepts connections on ln and serves s on them with an
// http.Server configured from s (ReadHeaderTimeout, MaxHeaderBytes, error
// log). It closes ln when it returns, and returns http.ErrServerClosed after
// Shutdown, or at once an error describing an invalid configuration.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	if err := s.check(); err != nil {
		ln.Close()
		return err
	}
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: orDefault(s.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		MaxHeaderBytes:    orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.servers[hs] = struct{}{}
	s.mu.Unlock()
	return hs.Serve(ln)
}

// check reports settings that cannot work together.
func (s *Server) check() error {
	if s.NodeURL != "" {
		if s.NodeSecret == "" {
			return errors.New("tunnel: Server.NodeURL is set without a NodeSecret")
		}
		if u, err := url.Parse(s.NodeURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("tunnel: Server.NodeURL %q is not an http(s) URL", s.NodeURL)
		}
	}
	if s.Routing == RouteSubdomain && s.domain() == "" {
		return errors.New("tunnel: subdomain routing needs Server.Domain or Server.BaseURL")
	}
	return nil
}

// ServeHTTP serves the agent endpoint (protocol.ConnectPath) and public
// ingress.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	if r.URL.Path == protocol.ConnectPath {
		s.serveAgent(w, r)
		return
	}
	s.servePublic(w, r)
}

// Tunnels returns the tunnels connected to this node, in no order.
func (s *Server) Tunnels() []Tunnel {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Tunnel, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, sess.info)
	}
	return out
}

// Shutdown shuts the gateway down gracefully: it stops accepting agents and
// public requests (answering 503 unavailable), closes the listeners of
// Serve, waits for in-flight public requests to finish, then tells every
// agent to go away (WebSocket close 1001) so that it reconnects, here or
// to another node. If ctx ends first, Shutdown closes what remains at once
// and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.shutdown = true
	s.inflight.close()
	s.agents.close()
	servers := make([]*http.Server, 0, len(s.servers))
	for hs := range s.servers {
		servers = append(servers, hs)
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, hs := range servers {
		wg.Go(func() { errs[i] = hs.Shutdown(ctx) })
	}
	wg.Wait()

	waitErr := s.inflight.wait(ctx)

	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		go sess.goAway()
	}
	if err := s.agents.wait(ctx); err != nil {
		for _, sess := range sessions {
			sess.close()
		}
		for _, hs := range servers {
			hs.Close()
		}
		return err
	}
	return errors.Join(append(errs, waitErr)...)
}

// activity counts work in progress that Shutdown waits for. Unlike a
// sync.WaitGroup it refuses new work once closed, so that starting work
// and waiting for it cannot race.
type activity struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when n drops to zero after close
}

// enter starts a piece of work; it returns false once close was called.
func (a *activity) enter() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.n++
	return true
}

// leave ends a piece of work started by a successful enter.
func (a *activity) leave() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n--
	if a.n == 0 && a.idle != nil {
		close(a.idle)
		a.idle = nil
	}
}

// close refuses new work.
func (a *activity) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
}

// wait waits until no work is in progress, or ctx ends.
func (a *activity) wait(ctx context.Context) error {
	a.mu.Lock()
	if a.n == 0 {
		a.mu.Unlock()
		return nil
	}
	if a.idle == nil {
		a.idle = make(chan struct{})
	}
	idle := a.idle
	a.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// session returns the live session for a connection ID, or nil.
func (s *Server) session(connID string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[connID]
}

// ---- public ingress ----

// reqState is what the gateway knows about one public request as it goes
// through validation, routing and forwarding. It travels in the request's
// context, where the proxies' rewrite and error hooks (which see copies of
// the request) find it.
type reqState struct {
	id        string       // request ID: X-Request-Id, or generated
	tunnelID  string       // once resolved
	routing   string       // "subdomain" or "path"
	prefix    string       // path routing: the stripped "/<id>"
	body      *countedBody // the request body, counted and limited, if any
	forwarded bool         // reached an agent or another node
}

type reqStateKey struct{}

// stateOf returns r's reqState, or an empty one for requests that did not
// come through servePublic.
func stateOf(ctx context.Context) *reqState {
	if st, ok := ctx.Value(reqStateKey{}).(*reqState); ok {
		return st
	}
	return &reqState{}
}

// requestIDHeader carries the request ID to the agent and back in logs.
const requestIDHeader = "X-Request-Id"

// servePublic validates a public request, routes it to its tunnel and
// forwards it: to the agent if this node holds it, else to the node that
// does. It records the request's span and metrics.
func (s *Server) servePublic(w http.ResponseWriter, r *http.Request) {
	if !s.inflight.enter() {
		s.fail(r.Context(), w, &Error{Code: CodeUnavailable, Message: ErrUnavailable.Message})
		return
	}
	defer s.inflight.leave()

	start := time.Now()
	st := &reqState{id: r.Header.Get(requestIDHeader)}
	if st.id == "" || len(st.id) > 128 {
		st.id = randid.Hex(8)
		r.Header.Set(requestIDHeader, st.id)
	}
	ctx := context.WithValue(r.Context(), reqStateKey{}, st)
	tracing, metering := s.tracing(), s.metering()
	var span trace.Span
	if tracing {
		ctx, span = s.tracer.Start(observability.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header)), observability.SpanRequest,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
	}
	r = r.WithContext(ctx)
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		status := sw.status
		if status == 0 && sw.written == 0 {
			status = 499 // the client went away before an answer
		}
		if metering {
			attrs := []attribute.KeyValue{attribute.String("http.request.method", r.Method), attribute.Int("http.response.status_code", status)}
			// Only tunnels that exist get a series: a label from any
			// requested ID would let random URLs create unbounded series.
			if s.MetricsPerTunnel && st.forwarded {
				attrs = append(attrs, observability.AttrTunnelID.String(st.tunnelID))
			}
			set := metric.WithAttributes(attrs...)
			s.inst.RequestLatency.Record(ctx, float64(time.Since(start))/float64(time.Millisecond), set)
			if st.forwarded {
				s.inst.RequestForwarded.Add(ctx, 1, set)
			}
			if st.body != nil {
				s.inst.BytesIn.Add(ctx, st.body.n.Load())
			}
			s.inst.BytesOut.Add(ctx, sw.written)
		}
		if tracing {
			span.SetAttributes(attribute.Int("http.response.status_code", status),
				observability.AttrTunnelID.String(st.tunnelID), observability.AttrRouting.String(st.routing))
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
			span.End()
		}
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.LogAttrs(ctx, slog.LevelDebug, "public request",
				slog.String("request_id", st.id), slog.String("tunnel_id", st.tunnelID),
				slog.String("method", r.Method), slog.Int("status", status),
				slog.Float64("duration_ms", float64(time.Since(start))/float64(time.Millisecond)),
				slog.Int64("bytes_out", sw.written))
		}
	}()
	s.servePublicRouted(sw, r, st)
}

// servePublicRouted is servePublic after the bookkeeping.
func (s *Server) servePublicRouted(w http.ResponseWriter, r *http.Request, st *reqState) {
	ctx := r.Context()
	hop := false
	if secret, ok := r.Header[nodeSecretHeader]; ok {
		if s.NodeSecret == "" || len(secret) != 1 || subtle.ConstantTimeCompare([]byte(secret[0]), []byte(s.NodeSecret)) != 1 {
			s.fail(ctx, w, &Error{Code: CodeForbidden, Message: "node-to-node request refused"}, slog.String("remote_addr", r.RemoteAddr))
			return
		}
		hop = true
	}
	if e := s.validate(r); e != nil {
		s.fail(ctx, w, e, slog.String("host", r.Host))
		return
	}
	id, out, ok := s.resolve(r, st)
	if !ok {
		s.fail(ctx, w, &Error{Code: CodeTunnelNotFound, Message: ErrTunnelNotFound.Message},
			slog.String("host", r.Host), slog.String("path", r.URL.Path))
		return
	}
	st.tunnelID = id
	if r.Body != nil && r.Body != http.NoBody {
		n := s.MaxBodyBytes
		if n > 0 && r.ContentLength > n {
			s.fail(ctx, w, &Error{Code: CodePayloadTooLarge, Message: fmt.Sprintf("request body over the limit of %d bytes", n)})
			return
		}
		if n <= 0 || r.ContentLength >= 0 {
			n = -1 // nothing to enforce while streaming: the length is known
		}
		st.body = &countedBody{ReadCloser: r.Body, left: n}
		if out == r {
			out = new(http.Request)
			*out = *r
		}
		out.Body = st.body
	}
	if !hop && s.RequestLimiter != nil {
		if !s.allow(ctx, w, s.RequestLimiter, "tunnel:"+id, "request") {
			return
		}
	}
	s.route(w, out, id, hop, false)
}

// fail answers a public request or an agent with e, logs it with the
// request's IDs, and counts it.
func (s *Server) fail(ctx context.Context, w http.ResponseWriter, e *Error, attrs ...slog.Attr) {
	st := stateOf(ctx)
	if st.id != "" {
		attrs = append(attrs, slog.String("request_id", st.id))
	}
	if st.tunnelID != "" {
		attrs = append(attrs, slog.String("tunnel_id", st.tunnelID))
	}
	s.inst.ErrorOccurred.Add(ctx, 1, metric.WithAttributes(observability.AttrCode.String(string(e.Code))))
	if e.ID == "" {
		// Never write into a sentinel or an error the caller keeps.
		c := *e
		c.ID = randid.Hex(8)
		e = &c
	}
	trace.SpanFromContext(ctx).SetAttributes(observability.AttrCode.String(string(e.Code)), observability.AttrErrorID.String(e.ID))
	writeError(ctx, w, s.log, e, attrs...)
}

// statusWriter records the status and body size of a response. It unwraps
// for http.ResponseController, so flushing and hijacking (WebSocket
// upgrades) reach the real writer.
type statusWriter struct {
	http.ResponseWriter
	status  int
	written int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	return n, err
}

// Unwrap returns the underlying ResponseWriter.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack takes the connection over for a WebSocket (an agent's, or one
// passing through a tunnel), which records the exchange as 101: the
// upgrade's answer is written on the hijacked connection, not through
// WriteHeader.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// Flush flushes the underlying writer; ReverseProxy flushes streaming
// responses (SSE) through it.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// route forwards r to the session holding tunnel id, here or on another
// node. hop says r came from another node, which must not be sent on
// again; retried says this is the one retry after a stale record.
func (s *Server) route(w http.ResponseWriter, r *http.Request, id string, hop, retried bool) {
	ctx := r.Context()
	if s.Relay != nil {
		s.relay(w, r, id)
		return
	}
	sess, node, err := s.lookup(ctx, id, retried, hop)
	if err == nil && (sess != nil || (!hop && s.node != "")) {
		stateOf(ctx).forwarded = true
		if s.tracing() {
			var span trace.Span
			ctx, span = s.tracer.Start(ctx, observability.SpanForward, trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(observability.AttrTunnelID.String(id), observability.AttrNode.String(node)))
			defer span.End()
			if span.IsRecording() {
				r = r.WithContext(ctx)
			}
		}
	}
	switch {
	case err != nil:
		s.fail(ctx, w, asError(err))
	case sess != nil:
		sess.forward(w, r)
	case hop || s.node == "":
		// The record names another node, but this request came from one
		// (or this gateway runs alone): tell the sender its record is stale.
		if hop {
			w.Header().Set(notHereHeader, "1")
			w.WriteHeader(http.StatusMisdirectedRequest)
			return
		}
		s.fail(ctx, w, &Error{Code: CodeAgentUnavailable, Message: ErrAgentUnavailable.Message, Err: fmt.Errorf("record names node %q", node)})
	default:
		s.hop.ServeHTTP(w, r.WithContext(context.WithValue(ctx, hopKey{}, &hopState{id: id, node: node, retried: retried, req: r})))
	}
}

// Relay delivers public requests to agents that no gateway process holds a
// session for: agents connected to an API Gateway WebSocket API and reached
// through its Management API, as in the serverless adapter. A Server with
// a Relay uses it for every tunnel, after its own routing, validation and
// rate limiting, instead of local sessions and other nodes.
type Relay interface {
	// Forward sends r to the agent connection named by rec and writes the
	// agent's response to w. If it returns an error, it has written
	// nothing, and the Server answers with the error: an *Error's code
	// (ErrAgentUnavailable when the connection is gone, which also drops
	// the cached record; ErrGatewayTimeout), or 500 internal for others.
	Forward(w http.ResponseWriter, r *http.Request, rec store.Record) error
}

// relay routes r through the Relay.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, id string) {
	ctx := r.Context()
	rec, _, err := s.record(ctx, id, false)
	if err != nil {
		s.fail(ctx, w, asError(err))
		return
	}
	stateOf(ctx).forwarded = true
	ctx, span := s.tracer.Start(ctx, observability.SpanForward, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(observability.AttrTunnelID.String(id)))
	defer span.End()
	if span.IsRecording() {
		r = r.WithContext(ctx)
	}
	if err := s.Relay.Forward(w, r, rec); err != nil {
		e := asError(err)
		if e.Code == CodeAgentUnavailable {
			s.cache.Remove(ctx, id)
		}
		s.fail(ctx, w, e)
	}
}

// clientIP returns the address of the client that sent r: the TCP peer,
// or with TrustProxy the last address the proxy appended to
// X-Forwarded-For.
func (s *Server) clientIP(r *http.Request) string {
	if s.TrustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			last := xff[len(xff)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if ip := strings.TrimSpace(last); ip != "" {
				return ip
			}
		}
	}
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return ip
}

// setForwarded sets X-Forwarded-For, -Host and -Proto on a request going
// to an agent or another node: from the client connection, or with
// TrustProxy extending what the proxy in front sent.
func (s *Server) setForwarded(pr *httputil.ProxyRequest) {
	if !s.TrustProxy {
		pr.SetXForwarded()
		return
	}
	// Rewrite removed the inbound X-Forwarded-*; the proxy's are trusted.
	if v := pr.In.Header["X-Forwarded-For"]; len(v) > 0 {
		pr.Out.Header["X-Forwarded-For"] = v
	}
	pr.SetXForwarded() // appends the proxy's own address to the chain
	for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v := pr.In.Header.Get(h); v != "" {
			pr.Out.Header.Set(h, v)
		}
	}
}

// validate checks a public request against the size limits and refuses
// path traversal.
func (s *Server) validate(r *http.Request) *Error {
	if len(r.RequestURI) > orDefault(s.MaxURIBytes, DefaultMaxURIBytes) {
		return &Error{Code: CodeURITooLong, Message: ErrURITooLong.Message}
	}
	if len(r.Header) > orDefault(s.MaxHeaderCount, DefaultMaxHeaderCount) || headerBytes(r) > orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes) {
		return &Error{Code: CodeHeadersTooLarge, Message: ErrHeadersTooLarge.Message}
	}
	// r.URL.Path is decoded, so this also catches %2e%2e and %2f.
	for seg := range strings.SplitSeq(r.URL.Path, "/") {
		if seg == ".." {
			return &Error{Code: CodeInvalidRequest, Message: "path traversal is not allowed"}
		}
	}
	return nil
}

// allow asks lim about key and answers 429 (or 503 when the limiter failed
// and LimiterFailClosed is set) if the request may not proceed.
func (s *Server) allow(ctx context.Context, w http.ResponseWriter, lim ratelimit.Limiter, key, kind string, attrs ...slog.Attr) bool {
	attrs = append(attrs, slog.String("limiter", kind))
	d, err := lim.Allow(ctx, key)
	if err != nil {
		if s.LimiterFailClosed {
			s.fail(ctx, w, &Error{Code: CodeUnavailable, Message: "rate limiter unavailable", Err: err}, attrs...)
			return false
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "rate limiter failed; allowing", append(attrs, slog.Any("err", err))...)
		return true
	}
	if d.Allowed {
		return true
	}
	s.inst.RateLimited.Add(ctx, 1, metric.WithAttributes(observability.AttrLimiter.String(kind)))
	secs := int64((d.RetryAfter + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", fmt.Sprint(max(secs, 1)))
	s.fail(ctx, w, &Error{Code: CodeRateLimited, Message: ErrRateLimited.Message}, attrs...)
	return false
}

// tooLarge reports whether r's body was cut off at MaxBodyBytes.
func tooLarge(r *http.Request) bool {
	b := stateOf(r.Context()).body
	return b != nil && b.exceeded.Load()
}

// countedBody counts a request body as the agent reads it, and cuts it off
// past a limit (left < 0: none), so that the agent never gets more than
// the limit; exceeded tells the error handler to answer 413.
type countedBody struct {
	io.ReadCloser
	left     int64
	n        atomic.Int64
	exceeded atomic.Bool
}

var errBodyTooLarge = errors.New("request body over the limit")

func (b *countedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		n, err := b.ReadCloser.Read(p)
		b.n.Add(int64(n))
		return n, err
	}
	if b.left == 0 {
		// One more byte tells a body of exactly the limit from a longer one.
		var one [1]byte
		n, err := b.ReadCloser.Read(one[:])
		if n > 0 {
			b.exceeded.Store(true)
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	b.n.Add(int64(n))
	return n, err
}

// headerBytes approximates the size of r's header block as it was read.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + len(r.Host) + 4
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// resolve finds the tunnel ID a public request names and returns the
// request to forward: r itself, or for path routing a shallow copy with
// the ID's segment stripped from the path (raw path included, so the rest
// reaches the agent byte for byte) and the prefix recorded in st.
func (s *Server) resolve(r *http.Request, st *reqState) (string, *http.Request, bool) {
	if s.Routing != RoutePath {
		if d := s.domain(); d != "" {
			host := r.Host
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			if label, rest, ok := strings.Cut(host, "."); ok && strings.EqualFold(rest, d) {
				label = strings.ToLower(label)
				st.routing = "subdomain"
				return label, r, claim.ValidID(label)
			}
		}
		if s.Routing == RouteSubdomain {
			return "", nil, false
		}
	}
	escaped := r.URL.EscapedPath()
	if len(escaped) < 2 || escaped[0] != '/' {
		return "", nil, false
	}
	id, _, _ := strings.Cut(escaped[1:], "/")
	if !claim.ValidID(id) {
		return "", nil, false
	}
	prefix := "/" + id
	u := *r.URL
	u.Path = strings.TrimPrefix(u.Path, prefix)
	u.RawPath = strings.TrimPrefix(u.RawPath, prefix)
	if u.Path == "" {
		u.Path = "/"
	}
	if u.RawPath == "" && r.URL.RawPath != "" {
		u.RawPath = "/"
	}
	out := new(http.Request)
	*out = *r
	out.URL = &u
	st.routing, st.prefix = "path", prefix
	return id, out, true
}

// lookup finds where tunnel id is served: a session of this node, or the
// node named by its record. It reads through the cache unless fresh is
// set; a cached record whose connection is not here any more costs one
// more store read, not a failed request. So does, for a request hopped
// here by another node (hop), a cached record naming another node: the
// sender read the store more recently than this node's cache may have.
func (s *Server) lookup(ctx context.Context, id string, fresh, hop bool) (*session, string, error) {
	rec, cached, err := s.record(ctx, id, fresh)
	for attempt := 0; err == nil && attempt < 2; attempt++ {
		if rec.Node != s.node {
			if !hop || !cached {
				return nil, rec.Node, nil
			}
			s.cache.Remove(ctx, id)
			rec, cached, err = s.record(ctx, id, true)
			continue
		}
		if sess := s.session(rec.ConnectionID); sess != nil && !sess.draining.Load() {
			return sess, "", nil
		}
		if !cached {
			break
		}
		s.cache.Remove(ctx, id)
		rec, cached, err = s.record(ctx, id, true)
	}
	if err != nil {
		return nil, "", err
	}
	return nil, "", &Error{Code: CodeAgentUnavailable, Message: ErrAgentUnavailable.Message}
}

// record returns tunnel id's record, from the cache unless fresh is set or
// it has none, else from the store (caching it); cached says which.
func (s *Server) record(ctx context.Context, id string, fresh bool) (rec store.Record, cached bool, err error) {
	if !fresh {
		if s.tracing() {
			cctx, span := s.tracer.Start(ctx, observability.SpanCache)
			rec, cached = s.cache.Get(cctx, id)
			span.SetAttributes(observability.AttrCacheHit.Bool(cached))
			span.End()
		} else {
			rec, cached = s.cache.Get(ctx, id)
		}
		if cached {
			s.inst.CacheHits.Add(ctx, 1)
			return rec, true, nil
		}
		s.inst.CacheMisses.Add(ctx, 1)
	}
	err = s.storeOp(ctx, "Get", func(ctx context.Context) (err error) {
		rec, err = s.store.Get(ctx, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return rec, false, &Error{Code: CodeTunnelNotFound, Message: ErrTunnelNotFound.Message}
	}
	if err != nil {
		return rec, false, &Error{Code: CodeInternal, Message: ErrInternal.Message, Err: fmt.Errorf("store get: %w", err)}
	}
	s.cache.Add(ctx, rec)
	return rec, false, nil
}

// tracing reports whether spans may be recorded; see observability.Tracing.
func (s *Server) tracing() bool { return observability.Tracing(s.TracerProvider) }

// metering reports whether metrics may be recorded; see
// observability.Metering.
func (s *Server) metering() bool { return observability.Metering(s.MeterProvider) }

// storeOp runs one store operation in a span, timing it.
func (s *Server) storeOp(ctx context.Context, op string, f func(context.Context) error) error {
	ctx, span := s.tracer.Start(ctx, observability.SpanStore, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.operation.name", op)))
	start := time.Now()
	err := f(ctx)
	s.inst.StoreLatency.Record(ctx, float64(time.Since(start))/float64(time.Millisecond),
		metric.WithAttributes(attribute.String("db.operation.name", op)))
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return err
}

// Node-to-node forwarding.
const (
	// nodeSecretHeader carries NodeSecret on requests between nodes.
	nodeSecretHeader = "X-Tunnel-Node-Secret"
	// notHereHeader marks a 421 answer from a node that does not hold the
	// tunnel any more: the sender's record was stale.
	notHereHeader = "X-Tunnel-Not-Here"
)

var errNotHere = errors.New("the node named by the record does not hold the tunnel")

type hopKey struct{}

// hopState travels in the context of a request sent to another node.
type hopState struct {
	id, node string
	retried  bool
	req      *http.Request // as routed, for the retry
}

// rewriteHop addresses a request to the node holding its tunnel. The
// request goes as it arrived (path prefix restored), with the client's
// X-Forwarded-* and the node secret; the owner trusts them because of it.
func (s *Server) rewriteHop(pr *httputil.ProxyRequest) {
	h := pr.In.Context().Value(hopKey{}).(*hopState)
	u, _ := url.Parse(h.node)
	pr.Out.URL.Scheme, pr.Out.URL.Host = u.Scheme, u.Host
	if p := stateOf(pr.In.Context()).prefix; p != "" {
		pr.Out.URL.Path = p + pr.In.URL.Path
		if pr.In.URL.RawPath != "" {
			pr.Out.URL.RawPath = p + pr.In.URL.RawPath
		}
	}
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	pr.Out.Host = pr.In.Host
	s.setForwarded(pr)
	pr.Out.Header.Set(nodeSecretHeader, s.NodeSecret)
	injectTrace(pr)
}

// injectTrace sends the forwarding span's context on with the request,
// when there is one being recorded; otherwise any traceparent the public
// client sent passes through untouched.
func injectTrace(pr *httputil.ProxyRequest) {
	ctx := pr.In.Context()
	if trace.SpanFromContext(ctx).IsRecording() {
		observability.Propagator.Inject(ctx, propagation.HeaderCarrier(pr.Out.Header))
	}
}

// hopError handles a failed hop: the node is gone or no longer holds the
// tunnel. The cached record is dropped; a request without a body (which
// has not been consumed) is routed once more from a fresh store read.
func (s *Server) hopError(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return
	}
	h := r.Context().Value(hopKey{}).(*hopState)
	if tooLarge(r) {
		s.fail(ctx, w, &Error{Code: CodePayloadTooLarge, Message: ErrPayloadTooLarge.Message, Err: err})
		return
	}
	s.cache.Remove(ctx, h.id)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.fail(ctx, w, &Error{Code: CodeGatewayTimeout, Message: ErrGatewayTimeout.Message, Err: err}, slog.String("node", h.node))
		return
	}
	if !h.retried && (r.Body == nil || r.Body == http.NoBody) {
		s.log.DebugContext(ctx, "stale tunnel record; routing again", slog.String("tunnel_id", h.id), slog.String("node", h.node), slog.Any("err", err))
		s.route(w, h.req, h.id, false, true)
		return
	}
	s.fail(ctx, w, &Error{Code: CodeAgentUnavailable, Message: ErrAgentUnavailable.Message, Err: err}, slog.String("node", h.node))
}
