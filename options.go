package tunnel

import (
	"cmp"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/http-tunnel/tunnel/inspector"
	"go.opentelemetry.io/otel/trace"
)

// Client defaults; each Option says which one it overrides.
const (
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// An Option configures Listen and Forward.
type Option func(*options)

type options struct {
	token            Token
	name             string
	pool             bool
	log              *slog.Logger
	minBackoff       time.Duration
	maxBackoff       time.Duration
	heartbeat        time.Duration // zero: the mode's default
	handshakeTimeout time.Duration
	tlsConfig        *tls.Config
	localTLS         *tls.Config
	proxy            func(*http.Request) (*url.URL, error)
	access           Access // what public clients must satisfy; see WithBasicAuth
	inspect          *inspector.Options
	accessErr        error // an invalid WithAllowIPs/WithDenyIPs entry
	dial             func(ctx context.Context, network, addr string) (net.Conn, error)
	rewriteHost      bool
	fallbacks        []string
	transport        Transport // "" is TransportAuto; see WithTransport
	events           func(Event)
	requestLog       func(RequestLog) // see WithRequestLog

	tracerProvider trace.TracerProvider
	jsonTiming     jsonTiming // tests only
	version        int        // the version announced; tests only (withVersion)
}

// WithToken sets the token the agent authenticates with, sent as
// "Authorization: Bearer <token>". Default: none.
func WithToken(token string) Option { return func(o *options) { o.token = Token(token) } }

// WithName asks for a tunnel ID (a lower-case DNS label, 1-63 characters of
// a-z, 0-9 and inner hyphens). The gateway refuses it with ErrNameInUse
// while another agent holds it. Default: the gateway generates an ID.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithPool makes the agent one of a pool that serves its tunnel name
// together: every agent that connects with WithPool, the same WithName
// and the same identity (the gateway's Identity.Subject: the same token,
// or tokens an operator gave the same subject) serves the tunnel, and the
// gateway sends each public request to the one with the fewest requests
// in flight. When one leaves (Close), the others go on serving: the
// gateway sends it nothing new, and what it had accepted it finishes. A
// pool and a single agent never share a name: ErrNameInUse. WithPool
// needs WithName; Listen refuses it on a gateway that does not know pools
// (protocol version 4). Default: a tunnel of its own.
func WithPool() Option { return func(o *options) { o.pool = true } }

// WithLogger sets the logger for connection events. Default: slog.Default,
// but only its warnings and errors: a library says nothing below WARN in
// its host program's log unless given a logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithBackoff bounds the delay between reconnect attempts: the first waits
// about min, each next one twice as long (±50% jitter) up to max. Defaults:
// DefaultMinBackoff and DefaultMaxBackoff.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// WithHeartbeat sets the keepalive interval of the tunnel connection; a
// gateway that stops answering is detected within about twice this and the
// listener reconnects. Default: DefaultHeartbeat in mux mode; in json mode
// (behind API Gateway) the interval the gateway announces, or 5 minutes,
// since there every ping costs a function invocation and only the 10-minute
// idle limit needs beating.
func WithHeartbeat(d time.Duration) Option { return func(o *options) { o.heartbeat = d } }

// WithTLSConfig sets the TLS configuration for wss:// gateways (for a
// private CA, say). Default: the system roots.
func WithTLSConfig(c *tls.Config) Option { return func(o *options) { o.tlsConfig = c } }

// WithDialer sets the function that opens the TCP connection to the
// gateway (or to the proxy, WithProxy). Default: a net.Dialer with a 30 s
// timeout.
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(o *options) { o.dial = dial }
}

// WithFallbackGateways names more gateway nodes of the same cluster (nodes
// sharing a Store). When the connection drops, reconnect attempts go to the
// gateways in turn, starting with the one that was lost, so the agent comes
// back on a live node with the same tunnel URL. Default: none.
func WithFallbackGateways(urls ...string) Option {
	return func(o *options) { o.fallbacks = append(o.fallbacks, urls...) }
}

// WithTracerProvider sets where the agent's spans go: a tunnel.deliver
// span around each request Forward delivers, continuing the trace context
// the gateway sent, and a tunnel.local span around the call to the local
// service. Default: the otel global provider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// WithRewriteHost makes Forward send the local service's host in the Host
// header instead of the public one, for dev servers that check it. The
// public host stays in X-Forwarded-Host. Listen ignores it.
func WithRewriteHost() Option { return func(o *options) { o.rewriteHost = true } }

// WithEvents calls fn for every connection event of the Listener:
// connects, disconnects, reconnect attempts and heartbeat round trips. fn
// is called one event at a time, in the order the events happened, on a
// goroutine of the Listener's own; it may call the Listener's methods,
// Close included. It should return promptly: events that happen while it
// runs wait for it, and past 1,000 waiting, further ones are dropped.
// Default: none.
func WithEvents(fn func(Event)) Option { return func(o *options) { o.events = fn } }

// withVersion makes the agent announce protocol version v instead of
// protocol.Version, to test how a current gateway serves older agents.
func withVersion(v int) Option { return func(o *options) { o.version = v } }

// WithHandshakeTimeout bounds each attempt to connect to the gateway, the
// first (within Listen's ctx) and every reconnect: the TCP and TLS
// handshakes, the WebSocket upgrade and the tunnel's handshake. A gateway
// that accepts the connection and never answers costs one timeout, not a
// Listen blocked for ever. Default: DefaultHandshakeTimeout (10 s).
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) { o.handshakeTimeout = d }
}

// WithProxy sends the connection to the gateway through an HTTP proxy:
// proxy returns the proxy's URL for a request, or nil for none, as
// http.Transport's Proxy does. Pass http.ProxyFromEnvironment to use
// HTTPS_PROXY, HTTP_PROXY and NO_PROXY, or http.ProxyURL for one proxy.
// Default: none, a direct connection, whatever the environment says.
func WithProxy(proxy func(*http.Request) (*url.URL, error)) Option {
	return func(o *options) { o.proxy = proxy }
}

// WithLocalTLSConfig sets the TLS configuration Forward uses with an https
// local service: RootCAs with the CA of a development certificate (mkcert's,
// say), or InsecureSkipVerify for a self-signed one. Default: the system
// roots. Listen ignores it.
func WithLocalTLSConfig(c *tls.Config) Option { return func(o *options) { o.localTLS = c } }

// WithBasicAuth protects the tunnel's public URL with HTTP Basic
// authentication: the gateway lets a public request through only with one
// of the credentials given (this option may be repeated), removes them
// before the request reaches the agent, and answers 401 otherwise. The
// gateway keeps only a salted hash of the password. See Access. Default:
// no authentication.
func WithBasicAuth(user, password string) Option {
	return func(o *options) {
		o.access.BasicAuth = append(o.access.BasicAuth, BasicCredential{User: user, Password: Token(password)})
	}
}

// WithBearerAuth protects the tunnel's public URL with a bearer token
// ("Authorization: Bearer <token>"), as WithBasicAuth does with a password.
func WithBearerAuth(token string) Option {
	return func(o *options) { o.access.BearerTokens = append(o.access.BearerTokens, Token(token)) }
}

// WithAllowIPs admits public clients from these addresses only: IP
// addresses or CIDR prefixes ("203.0.113.0/24", "2001:db8::/32"). Others
// get 403. Default: every address.
func WithAllowIPs(prefixes ...string) Option {
	return func(o *options) {
		p, err := parsePrefixes(prefixes)
		o.access.AllowIPs = append(o.access.AllowIPs, p...)
		o.accessErr = cmp.Or(o.accessErr, err)
	}
}

// WithDenyIPs refuses public clients from these addresses (403), in the
// forms WithAllowIPs takes. Default: none.
func WithDenyIPs(prefixes ...string) Option {
	return func(o *options) {
		p, err := parsePrefixes(prefixes)
		o.access.DenyIPs = append(o.access.DenyIPs, p...)
		o.accessErr = cmp.Or(o.accessErr, err)
	}
}

// WithInspector makes Forward record the exchanges it forwards in an
// inspector.Recorder with opts (nil: its defaults), replaying to the local
// service unless opts names another target; Forwarder.Inspector returns
// it. Under Listen, wrap your handler in a Recorder's Middleware instead.
// Default: no recording.
func WithInspector(opts *inspector.Options) Option {
	return func(o *options) {
		if opts == nil {
			opts = &inspector.Options{}
		}
		o.inspect = opts
	}
}
