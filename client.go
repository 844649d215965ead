package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/http-tunnel/tunnel/internal/yamux"
	"go.opentelemetry.io/otel/trace"

	"github.com/http-tunnel/tunnel/internal/claim"
	"github.com/http-tunnel/tunnel/internal/mux"
	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/protocol"
)

// Client defaults; each Option says which one it overrides.
const (
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// An Option configures Listen and Forward.
type Option func(*options)

type options struct {
	token       Token
	name        string
	log         *slog.Logger
	minBackoff  time.Duration
	maxBackoff  time.Duration
	heartbeat   time.Duration // zero: the mode's default
	tlsConfig   *tls.Config
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	rewriteHost bool
	fallbacks   []string
	events      func(Event)

	tracerProvider trace.TracerProvider
}

// EventKind says what an Event reports.
type EventKind int

// The kinds of Event.
const (
	// EventConnected: the tunnel is up, at the first connection or after
	// a reconnect. Attempt is the number of the reconnect attempt that
	// succeeded, 0 for the first connection.
	EventConnected EventKind = iota + 1
	// EventDisconnected: the connection to the gateway dropped; Err says
	// why. Reconnect attempts follow.
	EventDisconnected
	// EventReconnecting: reconnect attempt number Attempt starts after
	// Delay.
	EventReconnecting
	// EventHeartbeat: a keepalive ping came back after RTT.
	EventHeartbeat
)

// String returns "connected", "disconnected", "reconnecting" or
// "heartbeat".
func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventReconnecting:
		return "reconnecting"
	case EventHeartbeat:
		return "heartbeat"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is something that happened to a Listener's connection to its
// gateway. Fields that do not apply to the Kind are zero.
type Event struct {
	Kind     EventKind
	TunnelID string
	URL      string
	Gateway  string        // the gateway URL involved, token redacted
	Attempt  int           // reconnect attempt number (EventConnected, EventReconnecting)
	Delay    time.Duration // wait before the attempt (EventReconnecting)
	RTT      time.Duration // round-trip time (EventHeartbeat)
	Err      error         // why the connection dropped (EventDisconnected)
}

// WithEvents calls fn for every connection event of the Listener:
// connects, disconnects, reconnect attempts and heartbeat round trips. fn
// runs on the Listener's own goroutines, one event at a time, and must not
// block. Default: none.
func WithEvents(fn func(Event)) Option { return func(o *options) { o.events = fn } }

// WithToken sets the token the agent authenticates with, sent as
// "Authorization: Bearer <token>". Default: none.
func WithToken(token string) Option { return func(o *options) { o.token = Token(token) } }

// WithName asks for a tunnel ID (a lower-case DNS label, 1-63 characters of
// a-z, 0-9 and inner hyphens). The gateway refuses it with ErrNameInUse
// while another agent holds it. Default: the gateway generates an ID.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithLogger sets the logger for connection events. Default: slog.Default().
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
// gateway. Default: a net.Dialer with a 30 s timeout, through the proxy
// that HTTPS_PROXY / HTTP_PROXY name.
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

// Listener is a net.Listener whose connections are public HTTP requests
// arriving through a gateway. Serve it with http.Serve or an http.Server.
//
// A Listener reconnects by itself when its connection to the gateway
// drops, with jittered exponential backoff, and keeps its ID and URL
// across reconnects; Accept keeps working throughout. It stops for good
// only on Close, or when the gateway refuses to resume the tunnel (an
// authentication failure, or ErrNameInUse because another agent took the
// name after this one was away longer than the gateway's lease): then
// Done is closed and Accept returns that error.
//
// A Listener is safe for concurrent use.
type Listener struct {
	gateways []string // agent endpoint URLs: the one given to Listen, then fallbacks
	opts     options
	log      *slog.Logger
	client   *http.Client

	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	done      chan struct{}
	err       error // why the listener stopped; read after done is closed

	mu      sync.Mutex
	id      string
	url     string
	resume  string
	current *agentConn

	active activeConns
}

var _ net.Listener = (*Listener)(nil)

// agentConn is one connection of a Listener to the gateway, in mux mode
// (mux set) or json mode (json set).
type agentConn struct {
	ws      *websocket.Conn
	mux     *yamux.Session
	json    *jsonSession
	est     *protocol.ConnectionEstablished
	gateway int // index in Listener.gateways
}

// closed returns a channel closed when the connection has ended and the
// supervisor must reconnect.
func (c *agentConn) closed() <-chan struct{} {
	if c.json != nil {
		return c.json.done
	}
	return c.mux.CloseChan()
}

// isClosed reports whether closed() is closed.
func (c *agentConn) isClosed() bool {
	select {
	case <-c.closed():
		return true
	default:
		return false
	}
}

// Listen connects to the gateway at gatewayURL (ws://, wss://, http:// or
// https://). A URL without a path gets the agent endpoint's path,
// protocol.ConnectPath; a URL with a path is used as it is: an API Gateway
// stage ("wss://abc.execute-api.eu-west-1.amazonaws.com/prod"), or a gateway
// mounted under a prefix ("https://host/tunnels/_tunnel/connect").
//
// Listen returns a Listener for the tunnel it opens. ctx bounds the first
// connection only: if the gateway cannot be reached or refuses the agent,
// Listen returns the error (an *Error for refusals, such as ErrUnauthorized
// or ErrNameInUse).
//
// The agent offers both modes of protocol/spec.md: mux mode, which
// tunnel.Server speaks, and json mode, which an API Gateway WebSocket API
// in front of the serverless adapter speaks (a gateway that selects no
// subprotocol is taken to speak json mode). Either way the Listener serves
// the same http.Serve.
func Listen(ctx context.Context, gatewayURL string, opts ...Option) (*Listener, error) {
	o := options{
		minBackoff: DefaultMinBackoff,
		maxBackoff: DefaultMaxBackoff,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if o.minBackoff <= 0 {
		o.minBackoff = DefaultMinBackoff
	}
	if o.maxBackoff < o.minBackoff {
		o.maxBackoff = o.minBackoff
	}
	if o.heartbeat < 0 {
		o.heartbeat = 0 // zero: the mode's default
	}
	if o.name != "" && !claim.ValidID(o.name) {
		return nil, &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("invalid tunnel name %q: use 1-63 lower-case letters, digits and inner hyphens", o.name)}
	}
	var gateways []string
	for _, g := range append([]string{gatewayURL}, o.fallbacks...) {
		cu, err := connectURL(g)
		if err != nil {
			return nil, fmt.Errorf("tunnel: listen: %w", err)
		}
		gateways = append(gateways, cu)
	}
	dial := o.dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	l := &Listener{
		gateways: gateways,
		opts:     o,
		log:      o.log,
		client: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         dial,
			TLSClientConfig:     o.tlsConfig,
			TLSHandshakeTimeout: 10 * time.Second,
		}},
		conns:  make(chan net.Conn),
		closed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	c, err := l.connect(ctx, 0)
	if err != nil {
		l.client.CloseIdleConnections()
		return nil, fmt.Errorf("tunnel: listen %s: %w", redact(gateways[0]), err)
	}
	l.log.Info("tunnel connected", slog.String("tunnel_id", c.est.TunnelID), slog.String("url", c.est.PublicURL))
	go l.supervise(c)
	return l, nil
}

// connectURL turns a gateway URL into the agent endpoint's WebSocket URL.
func connectURL(gateway string) (string, error) {
	u, err := url.Parse(gateway)
	if err != nil {
		return "", fmt.Errorf("gateway URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("gateway URL %s: scheme must be ws, wss, http or https", redact(gateway))
	}
	if u.Host == "" {
		return "", fmt.Errorf("gateway URL %s has no host", redact(gateway))
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = protocol.ConnectPath
	}
	u.RawPath = ""
	u.User = nil
	return u.String(), nil
}

// redact returns a gateway URL fit for errors and logs: without a token in
// its query.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	if q := u.Query(); q.Has("token") {
		q.Set("token", "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// connect dials gateway number gw, runs the handshake (resuming the tunnel
// if it has one) and starts the session.
func (l *Listener) connect(ctx context.Context, gw int) (*agentConn, error) {
	hdr := http.Header{}
	if l.opts.token != "" {
		hdr.Set("Authorization", "Bearer "+string(l.opts.token))
	}
	ws, resp, err := websocket.Dial(ctx, l.client, l.gateways[gw], hdr, []string{protocol.SubprotocolMux, protocol.SubprotocolJSON})
	if err != nil {
		if e := refusal(resp); e != nil {
			return nil, e
		}
		return nil, err
	}
	// API Gateway may answer without echoing a subprotocol: that is json
	// mode, as for an original agent.
	sub := ws.Subprotocol()
	if sub != protocol.SubprotocolMux && sub != protocol.SubprotocolJSON && sub != "" {
		ws.Close(websocket.StatusProtocolError, "unknown subprotocol", 0)
		return nil, fmt.Errorf("gateway selected unknown subprotocol %q", sub)
	}

	l.mu.Lock()
	ready := &protocol.Ready{Version: protocol.Version, Name: l.opts.name}
	if l.resume != "" {
		ready.TunnelID, ready.ResumeToken = l.id, l.resume
	}
	l.mu.Unlock()

	est, err := handshake(ctx, ws, ready)
	if err != nil {
		ws.CloseNow()
		return nil, err
	}
	c := &agentConn{ws: ws, est: est, gateway: gw}
	if sub == protocol.SubprotocolMux {
		c.mux, err = mux.Server(ws.NetConn(), mux.Config{Heartbeat: l.opts.heartbeat, ManualKeepAlive: true})
		if err != nil {
			ws.CloseNow()
			return nil, err
		}
	} else {
		c.json = newJSONSession(l, ws, est)
	}
	l.mu.Lock()
	l.id, l.url, l.resume = est.TunnelID, est.PublicURL, est.ResumeToken
	l.current = c
	l.mu.Unlock()
	return c, nil
}

// handshake sends ready and reads the gateway's answer; ctx bounds both.
func handshake(ctx context.Context, ws *websocket.Conn, ready *protocol.Ready) (*protocol.ConnectionEstablished, error) {
	stop := context.AfterFunc(ctx, func() { ws.CloseNow() })
	defer stop()
	b, err := protocol.Marshal(ready)
	if err != nil {
		return nil, err
	}
	if err := ws.WriteMessage(websocket.OpText, b); err != nil {
		return nil, fmt.Errorf("send ready: %w", ctxErr(ctx, err))
	}
	typ, data, err := ws.ReadMessage(protocol.MaxHandshakeBytes)
	if err != nil {
		return nil, fmt.Errorf("read handshake answer: %w", ctxErr(ctx, err))
	}
	if typ != websocket.OpText {
		return nil, errors.New("handshake answer is not JSON text")
	}
	msg, err := protocol.Unmarshal(data, protocol.MaxHandshakeBytes)
	if err != nil {
		return nil, fmt.Errorf("handshake answer: %w", err)
	}
	switch m := msg.(type) {
	case *protocol.ConnectionEstablished:
		if !claim.ValidID(m.TunnelID) || m.PublicURL == "" {
			return nil, fmt.Errorf("handshake answer: invalid tunnel %q", m.TunnelID)
		}
		return m, nil
	case *protocol.Error:
		return nil, &Error{Code: Code(m.Code), Message: m.Message}
	default:
		return nil, fmt.Errorf("handshake answer: unexpected %s message", msg.Type())
	}
}

// ctxErr prefers ctx's error to err once ctx has ended: a read cut short by
// the deadline is a timeout, not a broken connection.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// refusal turns a gateway's non-101 answer to the upgrade into an *Error,
// or returns nil if there was no answer.
func refusal(resp *http.Response) *Error {
	if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return nil
	}
	var body errorBody
	if resp.Body != nil {
		json.NewDecoder(io.LimitReader(resp.Body, 1024)).Decode(&body)
	}
	if body.Error != "" {
		return &Error{Code: body.Error, Message: body.Message, ID: body.ErrorID}
	}
	code := CodeInternal
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		code = CodeUnauthorized
	case http.StatusForbidden:
		code = CodeForbidden
	case http.StatusTooManyRequests:
		code = CodeRateLimited
	case http.StatusServiceUnavailable:
		code = CodeUnavailable
	case http.StatusNotFound:
		code = CodeTunnelNotFound
	}
	return &Error{Code: code, Message: fmt.Sprintf("gateway answered %s", resp.Status)}
}

// permanent reports whether a reconnect failure will not go away by
// retrying: the gateway refused this agent or its tunnel.
func permanent(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case CodeUnauthorized, CodeForbidden, CodeNameInUse, CodeInvalidRequest:
		return true
	}
	return false
}

// supervise serves the current connection and reconnects when it drops,
// until the listener is closed or a reconnect is refused.
func (l *Listener) supervise(c *agentConn) {
	var err error
	defer func() {
		l.err = err
		l.client.CloseIdleConnections()
		close(l.done)
	}()
	attempt := 0
	for {
		l.emit(Event{Kind: EventConnected, TunnelID: c.est.TunnelID, URL: c.est.PublicURL, Gateway: redact(l.gateways[c.gateway]), Attempt: attempt})
		if c.json != nil {
			go c.json.serve()
		} else {
			go l.acceptLoop(c)
			go l.heartbeat(c)
		}
		select {
		case <-l.closed:
			// shutdown closes the connection, after letting it drain.
			return
		case <-c.closed():
		}
		select {
		case <-l.closed:
			return
		default:
		}
		why := errConnectionLost
		if c.json != nil && c.json.retired.Load() {
			// A planned reconnect, already logged by the session.
			why = errLifetimeReached
		} else {
			l.log.Warn("tunnel connection lost; reconnecting", slog.String("tunnel_id", c.est.TunnelID))
		}
		l.emit(Event{Kind: EventDisconnected, TunnelID: c.est.TunnelID, URL: c.est.PublicURL, Gateway: redact(l.gateways[c.gateway]), Err: why})
		c, attempt, err = l.reconnect(c.gateway)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				err = nil
			} else {
				l.log.Error("tunnel stopped: the gateway refused to resume it", slog.String("tunnel_id", l.ID()), slog.Any("err", err))
			}
			return
		}
		l.log.Info("tunnel reconnected", slog.String("tunnel_id", c.est.TunnelID), slog.String("url", c.est.PublicURL))
	}
}

// Reasons given by EventDisconnected.
var (
	errConnectionLost  = errors.New("connection to the gateway lost")
	errLifetimeReached = errors.New("json-mode connection reached its lifetime (API Gateway's 2 h limit); reconnecting ahead of it")
)

// reconnect dials until it succeeds, the gateway refuses for good, or the
// listener is closed (ErrClosed). Attempts go to the gateways in turn,
// starting with lost, the one whose connection dropped.
func (l *Listener) reconnect(lost int) (*agentConn, int, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.closed:
			cancel()
		case <-ctx.Done():
		}
	}()

	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(l.opts.minBackoff),
		backoff.WithMaxInterval(l.opts.maxBackoff),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMultiplier(2),
		backoff.WithMaxElapsedTime(0),
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for attempt := 1; ; attempt++ {
		delay := b.NextBackOff()
		gw := (lost + attempt - 1) % len(l.gateways)
		l.emit(Event{Kind: EventReconnecting, TunnelID: l.ID(), URL: l.URL(), Gateway: redact(l.gateways[gw]), Attempt: attempt, Delay: delay})
		timer.Reset(delay)
		select {
		case <-ctx.Done():
			return nil, attempt, ErrClosed
		case <-timer.C:
		}
		dctx, dcancel := context.WithTimeout(ctx, DefaultHandshakeTimeout+l.opts.maxBackoff)
		c, err := l.connect(dctx, gw)
		dcancel()
		if err == nil {
			return c, attempt, nil
		}
		if ctx.Err() != nil {
			return nil, attempt, ErrClosed
		}
		if permanent(err) {
			return nil, attempt, err
		}
		l.log.Info("tunnel reconnect failed", slog.Int("attempt", attempt), slog.Duration("delay", delay), slog.String("gateway", redact(l.gateways[gw])), slog.Any("err", err))
	}
}

// emit delivers an event to the WithEvents callback, if any.
func (l *Listener) emit(e Event) {
	if l.opts.events != nil {
		l.opts.events(e)
	}
}

// heartbeat pings the gateway every heartbeat interval, reporting the
// round trip, and closes the connection when a ping fails (yamux's own
// keepalive is off for the agent so that the round trip can be observed).
func (l *Listener) heartbeat(c *agentConn) {
	t := time.NewTicker(orDefault(l.opts.heartbeat, DefaultHeartbeat))
	defer t.Stop()
	for {
		select {
		case <-c.mux.CloseChan():
			return
		case <-t.C:
		}
		rtt, err := c.mux.Ping()
		if err != nil {
			if !c.mux.IsClosed() {
				l.log.Warn("tunnel heartbeat failed; reconnecting", slog.String("tunnel_id", c.est.TunnelID), slog.Any("err", err))
				c.mux.Close()
			}
			return
		}
		l.emit(Event{Kind: EventHeartbeat, TunnelID: c.est.TunnelID, URL: c.est.PublicURL, Gateway: redact(l.gateways[c.gateway]), RTT: rtt})
	}
}

// acceptLoop hands the streams the gateway opens on c to Accept.
func (l *Listener) acceptLoop(c *agentConn) {
	for {
		st, err := c.mux.AcceptStream()
		if err != nil {
			return
		}
		conn := l.active.track(st, tunnelAddr(l.URL()))
		select {
		case l.conns <- conn:
		case <-l.closed:
			conn.Close()
			return
		}
	}
}

// Accept waits for and returns the next public connection. After Close it
// returns ErrClosed (which matches net.ErrClosed); after the listener
// stopped because the gateway refused to resume the tunnel, that error.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, ErrClosed
	case <-l.done:
		if l.err != nil {
			return nil, l.err
		}
		return nil, ErrClosed
	}
}

// Close closes the listener at once: Accept returns ErrClosed, the gateway
// stops routing to the tunnel and frees its name, and the connection to the
// gateway is closed, cutting requests still in flight. Use CloseWithContext
// to let them finish. Closing a closed Listener does nothing.
func (l *Listener) Close() error {
	l.shutdown(context.Background(), false)
	return nil
}

// CloseWithContext closes the listener gracefully: Accept returns
// ErrClosed, the gateway stops routing new requests to the tunnel, and
// connections already accepted may finish until ctx ends; then the
// connection to the gateway is closed. It returns ctx's error if ctx ended
// first.
func (l *Listener) CloseWithContext(ctx context.Context) error {
	return l.shutdown(ctx, true)
}

// shutdown closes the listener; with wait, it first lets the connections
// already accepted finish, until ctx ends.
func (l *Listener) shutdown(ctx context.Context, wait bool) error {
	first := false
	l.closeOnce.Do(func() { first = true })
	if !first {
		<-l.done
		return nil
	}
	l.mu.Lock()
	c := l.current
	l.mu.Unlock()
	if !c.isClosed() {
		c.drain()
	}
	close(l.closed)
	var err error
	if wait {
		select {
		case <-l.active.idle():
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	c.close()
	<-l.done
	// A reconnect may have replaced the connection meanwhile.
	l.mu.Lock()
	last := l.current
	l.mu.Unlock()
	if last != c {
		last.close()
	}
	l.client.CloseIdleConnections()
	return err
}

// close ends the connection with a WebSocket close handshake, bounded to a
// second, so the gateway sees a clean departure.
func (c *agentConn) close() {
	if c.json != nil {
		c.json.close()
		return
	}
	if !c.mux.IsClosed() {
		c.ws.Close(websocket.StatusNormalClosure, "agent closing", time.Second)
	}
	c.mux.Close()
}

// drain tells the gateway that the agent is leaving, on a control stream,
// and waits for its acknowledgement: from then on the tunnel's name is
// free. It gives up after a second; the close that follows frees the
// tunnel too, only later. Json mode has no drain: the close frees it.
func (c *agentConn) drain() {
	if c.json != nil {
		return
	}
	st, err := c.mux.OpenStream()
	if err != nil {
		return
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(time.Second))
	b, err := protocol.Marshal(&protocol.Drain{})
	if err != nil {
		return
	}
	if _, err := st.Write(append(b, '\n')); err != nil {
		return
	}
	line, err := readLine(bufio.NewReaderSize(st, 64), protocol.MaxControlBytes)
	if err != nil {
		return
	}
	protocol.Unmarshal(line, protocol.MaxControlBytes)
}

// Done returns a channel that is closed when the listener has stopped for
// good: after Close, or when the gateway refused to resume the tunnel.
func (l *Listener) Done() <-chan struct{} { return l.done }

// Err returns why the listener stopped: nil while it runs and after Close,
// the gateway's refusal otherwise.
func (l *Listener) Err() error {
	select {
	case <-l.done:
		return l.err
	default:
		return nil
	}
}

// Addr returns the tunnel's address: network "tunnel", its public URL.
func (l *Listener) Addr() net.Addr { return tunnelAddr(l.URL()) }

// URL returns the tunnel's public URL, such as "https://abc.example.com" or
// "http://127.0.0.1:8080/abc" for path routing. It does not end in a slash:
// append request paths to it.
func (l *Listener) URL() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.url
}

// ID returns the tunnel's ID, its subdomain label and path segment.
func (l *Listener) ID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id
}

// tunnelAddr is the net.Addr of a tunnel: its public URL.
type tunnelAddr string

func (tunnelAddr) Network() string  { return "tunnel" }
func (a tunnelAddr) String() string { return string(a) }

// activeConns counts the connections a Listener has handed out and not yet
// seen closed, so CloseWithContext can wait for them.
type activeConns struct {
	mu    sync.Mutex
	n     int
	empty chan struct{} // closed while n == 0
}

func (a *activeConns) track(c net.Conn, addr net.Addr) net.Conn {
	a.mu.Lock()
	if a.n == 0 {
		a.empty = make(chan struct{})
	}
	a.n++
	a.mu.Unlock()
	return &trackedConn{Conn: c, addr: addr, release: a.release}
}

func (a *activeConns) release() {
	a.mu.Lock()
	a.n--
	if a.n == 0 {
		close(a.empty)
	}
	a.mu.Unlock()
}

// idle returns a channel closed when no handed-out connection is open.
func (a *activeConns) idle() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	return a.empty
}

// trackedConn is a stream handed out by Accept.
type trackedConn struct {
	net.Conn
	addr    net.Addr
	once    sync.Once
	release func()
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// LocalAddr returns the tunnel's address.
func (c *trackedConn) LocalAddr() net.Addr { return c.addr }

// RemoteAddr returns the tunnel's address too: the public client's address
// is in the request's X-Forwarded-For header.
func (c *trackedConn) RemoteAddr() net.Addr { return c.addr }
