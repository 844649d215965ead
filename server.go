package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/protocol"
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

	// Node names this gateway node in tunnel records. Empty means a random
	// name chosen at the first request.
	Node string

	// OnConnect and OnDisconnect, if set, are called when an agent's
	// tunnel comes up and goes down. They run on the agent's goroutine and
	// must not block.
	OnConnect, OnDisconnect func(Tunnel)

	initOnce sync.Once
	store    store.Store
	cache    store.Cache
	log      *slog.Logger
	node     string

	mu       sync.Mutex
	sessions map[string]*session // by connection ID
	servers  map[*http.Server]struct{}

	closing  atomic.Bool
	inflight sync.WaitGroup // public requests being forwarded
	agents   sync.WaitGroup // agent handlers
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
		s.node = s.Node
		if s.node == "" {
			s.node = "node-" + randid.Hex(4)
		}
		s.sessions = make(map[string]*session)
		s.servers = make(map[*http.Server]struct{})
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
// log). It returns http.ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: orDefault(s.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		MaxHeaderBytes:    orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.servers[hs] = struct{}{}
	s.mu.Unlock()
	return hs.Serve(ln)
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
	s.closing.Store(true)
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

	waitErr := waitGroupCtx(ctx, &s.inflight)

	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		go sess.goAway()
	}
	if err := waitGroupCtx(ctx, &s.agents); err != nil {
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

// waitGroupCtx waits for wg or ctx, whichever comes first.
func waitGroupCtx(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
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

// servePublic routes a public request to its tunnel.
func (s *Server) servePublic(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if s.closing.Load() {
		writeError(ctx, w, s.log, &Error{Code: CodeUnavailable, Message: ErrUnavailable.Message})
		return
	}
	s.inflight.Add(1)
	defer s.inflight.Done()

	if headerBytes(r) > orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes) {
		writeError(ctx, w, s.log, &Error{Code: CodeHeadersTooLarge, Message: ErrHeadersTooLarge.Message})
		return
	}
	id, out, ok := s.resolve(r)
	if !ok {
		writeError(ctx, w, s.log, &Error{Code: CodeTunnelNotFound, Message: ErrTunnelNotFound.Message},
			slog.String("host", r.Host), slog.String("path", r.URL.Path))
		return
	}
	sess, err := s.lookup(ctx, id)
	if err != nil {
		writeError(ctx, w, s.log, asError(err), slog.String("tunnel_id", id))
		return
	}
	sess.forward(w, out)
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
// reaches the agent byte for byte) and the prefix in its context.
func (s *Server) resolve(r *http.Request) (string, *http.Request, bool) {
	if s.Routing != RoutePath {
		if d := s.domain(); d != "" {
			host := r.Host
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			if label, rest, ok := strings.Cut(host, "."); ok && strings.EqualFold(rest, d) {
				label = strings.ToLower(label)
				return label, r, validID(label)
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
	if !validID(id) {
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
	out := r.WithContext(context.WithValue(r.Context(), pathPrefixKey{}, prefix))
	out.URL = &u
	return id, out, true
}

// pathPrefixKey keys the stripped path prefix of a path-routed request in
// its context; the proxy sends it on as X-Forwarded-Prefix, which apps
// that build absolute links behind a prefix read.
type pathPrefixKey struct{}

// validID reports whether id can be a tunnel ID: a lower-case DNS label.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 63 || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// lookup finds the session serving tunnel id: through the cache, then the
// store. A cached record whose connection is not here any more costs one
// more store read, not a failed request.
func (s *Server) lookup(ctx context.Context, id string) (*session, error) {
	rec, cached := s.cache.Get(ctx, id)
	for attempt := 0; attempt < 2; attempt++ {
		if !cached {
			var err error
			rec, err = s.store.Get(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				return nil, &Error{Code: CodeTunnelNotFound, Message: ErrTunnelNotFound.Message}
			}
			if err != nil {
				return nil, &Error{Code: CodeInternal, Message: ErrInternal.Message, Err: fmt.Errorf("store get: %w", err)}
			}
			s.cache.Add(ctx, rec)
		}
		if sess := s.session(rec.ConnectionID); sess != nil && !sess.draining.Load() {
			return sess, nil
		}
		if !cached {
			break
		}
		s.cache.Remove(ctx, id)
		cached = false
	}
	return nil, &Error{Code: CodeAgentUnavailable, Message: ErrAgentUnavailable.Message}
}
