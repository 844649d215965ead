package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/http-tunnel/tunnel/internal/quietlog"
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
	DefaultResponseTimeout        = 30 * time.Second
	DefaultHandshakeTimeout       = 10 * time.Second
	DefaultReadHeaderTimeout      = 10 * time.Second
	DefaultIdleTimeout            = 2 * time.Minute
	DefaultStallTimeout           = time.Minute
	DefaultShutdownGrace          = 5 * time.Second
	DefaultMaxHeaderBytes         = 64 << 10
	DefaultMaxResponseHeaderBytes = 256 << 10
	DefaultHeartbeat              = 15 * time.Second
	DefaultLeaseTTL               = time.Minute
	DefaultMaxURIBytes            = 8 << 10
	DefaultMaxHeaderCount         = 100
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

	// UnlistedNames says which names an identity without a name list
	// (Identity.Names) may take. The zero value, AnyName, lets it take any
	// free name; GeneratedNamesOnly, only names the gateway generates.
	UnlistedNames NameRule

	// AuthorizeName, if set, decides instead of Identity.Names and
	// UnlistedNames whether an identity may take a tunnel name it asks for
	// (by name, or by resuming a tunnel): nil allows it, an error refuses
	// it (an *Error's code if it is one, else forbidden). It runs at every
	// admission, on every gateway kind; generated names do not ask it.
	AuthorizeName func(ctx context.Context, id Identity, name string) error

	// Logger receives the gateway's logs. Nil means slog.Default, but only
	// its warnings and errors (INFO lines such as "agent connected" need
	// a Logger of your own).
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

	// IdleTimeout is the http.Server setting Serve applies: how long a
	// public client's keep-alive connection may wait for its next request
	// before the gateway closes it. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration

	// ShutdownGrace bounds how long Shutdown lets its agents move to
	// other nodes and the requests through them finish (server-sent
	// events, WebSockets and long downloads included) before it closes
	// the agents' connections. Zero means DefaultShutdownGrace.
	ShutdownGrace time.Duration

	// StallTimeout bounds how long a public client may stall a request in
	// flight: send nothing of a request body it has begun, or take nothing
	// of a response the gateway is writing (a WebSocket or a stream
	// included). Past it the gateway gives up on the client: a stalled
	// body is answered 400 invalid_request, a stalled read ends the
	// connection. It applies to each read and write, so a slow client that
	// keeps moving is never cut, and an idle stream with nothing to send
	// is not stalled. Zero means DefaultStallTimeout; negative, none.
	StallTimeout time.Duration

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

	// AcceptNodeSecrets are further secrets this node accepts on requests
	// from other nodes, and never sends: they let a cluster change
	// NodeSecret without refusing the requests that cross between nodes
	// of the old and the new secret during a rolling restart. Add the new
	// secret here on every node, then make it NodeSecret (with the old one
	// here) on every node, then remove the old one; docs/security.md has
	// the steps. Empty strings are refused.
	AcceptNodeSecrets []string

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

	// MaxResponseHeaderBytes caps the header block of a response from an
	// agent (or another node): past it the public client gets 502
	// agent_unavailable, and the agent cannot make the gateway hold an
	// unbounded header. Zero means DefaultMaxResponseHeaderBytes (256 KiB).
	MaxResponseHeaderBytes int64

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
	// must not block. OnConnect runs once the agent has been told it is
	// connected, so a request the agent's program makes at once may reach
	// the gateway first: the tunnel is routable (and in the Store) before
	// OnConnect, which is for bookkeeping, not for deciding what is live.
	OnConnect, OnDisconnect func(Tunnel)

	initOnce sync.Once
	store    store.Store
	cache    store.Cache
	log      *slog.Logger
	node     string                 // NodeURL, as records name this node; "" for a single node
	dom      string                 // domain(), computed once
	hop      *httputil.ReverseProxy // to other nodes
	tracer   trace.Tracer
	inst     *observability.Instruments

	mu       sync.Mutex
	sessions map[string]*session      // by connection ID
	byTunnel map[string]*session      // the newest session of each tunnel ID
	pending  map[string]chan struct{} // connection IDs being admitted; see admitting
	pools    map[string][]*session    // the sessions of each pool's members here
	leases   *leaseKeeper             // nil until the first session
	servers  map[*http.Server]struct{}
	upgrades map[*publicConn]struct{} // WebSockets through tunnels, for Shutdown

	shutdown bool     // Shutdown has begun; guarded by mu
	inflight activity // public requests being forwarded
	agents   activity // agent handlers

	members      memberCache // pools' member lists, read from the store
	hopsInFlight sync.Map    // node URL -> *atomic.Int64: requests sent there
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
			s.log = quietlog.New()
		}
		s.node = strings.TrimSuffix(s.NodeURL, "/")
		s.dom = s.domain()
		s.hop = &httputil.ReverseProxy{
			Rewrite: s.rewriteHop,
			Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, DisableCompression: true,
				ResponseHeaderTimeout: s.responseTimeout(), MaxResponseHeaderBytes: s.maxResponseHeaderBytes(),
				// A hop with a body waits for the other node's 100 Continue
				// (rewriteHop) this long at most before sending it anyway.
				ExpectContinueTimeout: 2 * time.Second},
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
		s.byTunnel = make(map[string]*session)
		s.pending = make(map[string]chan struct{})
		s.pools = make(map[string][]*session)
		s.servers = make(map[*http.Server]struct{})
		s.upgrades = make(map[*publicConn]struct{})
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

func (s *Server) maxResponseHeaderBytes() int64 {
	if s.MaxResponseHeaderBytes <= 0 {
		return DefaultMaxResponseHeaderBytes
	}
	return s.MaxResponseHeaderBytes
}

func (s *Server) shutdownGrace() time.Duration {
	return orDefault(s.ShutdownGrace, DefaultShutdownGrace)
}

// stallTimeout returns StallTimeout with its default; zero means none.
func (s *Server) stallTimeout() time.Duration {
	switch {
	case s.StallTimeout < 0:
		return 0
	case s.StallTimeout == 0:
		return DefaultStallTimeout
	}
	return s.StallTimeout
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// domain returns the domain tunnels get subdomains of, normalized
// (normalizeHost): Domain, or BaseURL's host name, or "" for none.
func (s *Server) domain() string {
	d := s.Domain
	if d == "" && s.BaseURL != "" {
		if u, err := url.Parse(s.BaseURL); err == nil {
			d = u.Host
		}
	}
	return normalizeHost(d)
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
	for _, sec := range s.AcceptNodeSecrets {
		if sec == "" {
			return errors.New("tunnel: Server.AcceptNodeSecrets holds an empty secret")
		}
	}
	if len(s.AcceptNodeSecrets) > 0 && s.NodeSecret == "" {
		return errors.New("tunnel: Server.AcceptNodeSecrets is set without a NodeSecret")
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
		// On a tunnel's own host the path is the tunnel's, like any other.
		if _, tunnelHost := s.subdomainOf(r.Host); !tunnelHost {
			s.serveAgent(w, r)
			return
		}
	}
	s.servePublic(w, r)
}
