package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/http-tunnel/tunnel/internal/claim"
	"github.com/http-tunnel/tunnel/internal/mux"
	"github.com/http-tunnel/tunnel/internal/quietlog"
	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/protocol"
)

// Listen connects to the gateway at gatewayURL (ws://, wss://, http:// or
// https://). A URL without a path gets the agent endpoint's path,
// protocol.ConnectPath; a URL with a path is used as it is: an API Gateway
// stage ("wss://abc.execute-api.eu-west-1.amazonaws.com/prod"), or a gateway
// mounted under a prefix ("https://host/tunnels/_tunnel/connect").
//
// Listen returns a Listener for the tunnel it opens. ctx bounds the first
// connection only, and so does the handshake timeout (WithHandshakeTimeout,
// 10 s by default), whichever ends first: if the gateway cannot be reached,
// does not answer, or refuses the agent, Listen returns the error (an
// *Error for refusals, such as ErrUnauthorized or ErrNameInUse).
//
// The agent first asks for the raw transport (an HTTP/1.1 Upgrade to mux
// mode on the connection itself, which tunnel.Server speaks). When the
// gateway or something in front of it refuses that upgrade, it opens a
// WebSocket at once and keeps to WebSocket for the Listener's reconnects;
// WithTransport chooses one of the two instead. Over a WebSocket it offers
// both modes of protocol/spec.md: mux mode, and json mode, which an API
// Gateway WebSocket API in front of the serverless adapter speaks (a
// gateway that selects no subprotocol is taken to speak json mode). Either
// way the Listener serves the same http.Serve.
func Listen(ctx context.Context, gatewayURL string, opts ...Option) (*Listener, error) {
	o := options{
		minBackoff: DefaultMinBackoff,
		maxBackoff: DefaultMaxBackoff,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = quietlog.New()
	}
	if o.minBackoff <= 0 {
		o.minBackoff = DefaultMinBackoff
	}
	if o.maxBackoff < o.minBackoff {
		o.maxBackoff = o.minBackoff
	}
	if o.handshakeTimeout <= 0 {
		o.handshakeTimeout = DefaultHandshakeTimeout
	}
	if o.heartbeat < 0 {
		o.heartbeat = 0 // zero: the mode's default
	}
	if o.accessErr != nil {
		return nil, &Error{Code: CodeInvalidRequest, Message: "tunnel access: " + o.accessErr.Error()}
	}
	if o.transport == "" {
		o.transport = defaultTransport
	}
	if !validTransport(o.transport) {
		return nil, &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("unknown transport %q: use %q, %q or %q", o.transport, TransportAuto, TransportRaw, TransportWebSocket)}
	}
	if o.pool && o.name == "" {
		return nil, &Error{Code: CodeInvalidRequest, Message: "WithPool needs WithName: the agents of a pool share a name"}
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
			Proxy:                 o.proxy,
			DialContext:           dial,
			TLSClientConfig:       o.tlsConfig,
			TLSHandshakeTimeout:   o.handshakeTimeout,
			ResponseHeaderTimeout: o.handshakeTimeout,
			// Both upgrades are HTTP/1.1's.
			Protocols: http1Only(),
		}},
		events:    eventQueue{fn: o.events},
		transport: o.transport,
		conns:     make(chan net.Conn),
		closed:    make(chan struct{}),
		cut:       make(chan struct{}),
		done:      make(chan struct{}),
	}
	// Each connection attempt is bounded by the handshake timeout, the
	// first too: a gateway that accepts TCP and never answers must not
	// hold Listen for as long as ctx allows, which may be for ever.
	cctx, cancel := context.WithTimeout(ctx, o.handshakeTimeout)
	c, err := l.connect(cctx, 0)
	cancel()
	if err != nil {
		l.client.CloseIdleConnections()
		return nil, fmt.Errorf("tunnel: listen %s: %w", redact(gateways[0]), err)
	}
	l.log.Info("tunnel connected", slog.String("tunnel_id", c.est.TunnelID), slog.String("url", c.est.PublicURL), slog.String("transport", string(c.transport)))
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
	return l.connectOver(ctx, gw, false)
}

// connectOver is connect, over a WebSocket whatever the Listener's
// transport when wsOnly.
func (l *Listener) connectOver(ctx context.Context, gw int, wsOnly bool) (*agentConn, error) {
	ws, err := l.dial(ctx, gw, wsOnly)
	if err != nil {
		return nil, err
	}
	sub := ws.Subprotocol()

	l.mu.Lock()
	ready := &protocol.Ready{Version: orDefault(l.opts.version, protocol.Version), Name: l.opts.name, Access: l.opts.access.wire(), Pool: l.opts.pool}
	if l.resume != "" {
		ready.TunnelID, ready.ResumeToken = l.id, l.resume
	}
	l.mu.Unlock()

	est, err := handshake(ctx, ws, ready)
	if err != nil {
		ws.CloseNow()
		var e *Error
		if transportOf(ws) == TransportRaw && l.opts.transport != TransportRaw && !errors.As(err, &e) && ctx.Err() == nil {
			// A 101 came, but no answer to ready: something on the way
			// passed the upgrade's answer and not the bytes after it. The
			// Listener keeps to WebSocket only if a WebSocket gets through.
			c, werr := l.connectOver(ctx, gw, true)
			if werr == nil {
				l.keepToWebSocket(gw, fmt.Errorf("%w: the handshake after the 101 failed: %w", errUpgradeRefused, err))
			}
			return c, werr
		}
		return nil, err
	}
	if ready.Access != nil && est.Version < 3 {
		// An older gateway ignores access: the URL would be open.
		ws.Close(websocket.StatusPolicyViolation, "protected URL not supported", 0)
		return nil, &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("the gateway speaks protocol version %d, which cannot protect the tunnel's URL (version 3 can)", est.Version)}
	}
	if ready.Pool && !est.Pool {
		// An older gateway made it a tunnel of this agent alone.
		ws.Close(websocket.StatusPolicyViolation, "pools not supported", 0)
		return nil, &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("the gateway speaks protocol version %d, which has no pools (version 4 has)", est.Version)}
	}
	c := &agentConn{est: est, gateway: gw, transport: transportOf(ws)}
	if sub == protocol.SubprotocolMux {
		ms, err := mux.Server(ws.NetConn(), mux.Config{Heartbeat: l.opts.heartbeat, ManualKeepAlive: true})
		if err != nil {
			ws.CloseNow()
			return nil, err
		}
		c.agentSession = &muxSession{l: l, ws: ws, mux: ms, est: est, gateway: redact(l.gateways[gw])}
	} else {
		c.agentSession = newJSONSession(l, ws.(*websocket.Conn), est)
	}
	l.mu.Lock()
	l.id, l.url, l.resume = est.TunnelID, est.PublicURL, est.ResumeToken
	l.current = c
	l.mu.Unlock()
	return c, nil
}

// dial opens the connection to gateway number gw: the raw transport, unless
// the Listener keeps to WebSocket or wsOnly, else a WebSocket. A raw
// upgrade refused or unanswered opens the WebSocket at once (unless
// WithTransport asked for raw), and the Listener keeps to WebSocket from
// then on only if that WebSocket connects: a proxy that answers 502 to
// everything while its gateway restarts must not move the agent off the
// raw transport for good.
func (l *Listener) dial(ctx context.Context, gw int, wsOnly bool) (agentLink, error) {
	hdr := http.Header{}
	if l.opts.token != "" {
		hdr.Set("Authorization", "Bearer "+string(l.opts.token))
	}
	l.mu.Lock()
	t := l.transport
	l.mu.Unlock()
	if t != TransportWebSocket && !wsOnly {
		var answerWithin time.Duration
		if t == TransportAuto {
			// A real gateway answers an upgrade at once: half the attempt
			// is left for a WebSocket if nothing answers it.
			answerWithin = l.opts.handshakeTimeout / 2
		}
		raw, err := dialRaw(ctx, l.client, l.gateways[gw], hdr, answerWithin)
		switch {
		case err == nil:
			return raw, nil
		case t == TransportAuto && (errors.Is(err, errUpgradeUnanswered) || errors.Is(err, errUpgradeRefused)):
			ws, werr := l.dialWebSocket(ctx, gw, hdr)
			if werr == nil {
				l.keepToWebSocket(gw, err)
			}
			return ws, werr
		default:
			return nil, err
		}
	}
	return l.dialWebSocket(ctx, gw, hdr)
}

// dialWebSocket opens a WebSocket to gateway number gw.
func (l *Listener) dialWebSocket(ctx context.Context, gw int, hdr http.Header) (agentLink, error) {
	ws, resp, err := websocket.Dial(ctx, l.client, l.gateways[gw], hdr, []string{protocol.SubprotocolMux, protocol.SubprotocolJSON})
	if err != nil {
		if e := refusal(resp); e != nil {
			return nil, e
		}
		return nil, err
	}
	// API Gateway may answer without echoing a subprotocol: that is json
	// mode, as for an original agent.
	if sub := ws.Subprotocol(); sub != protocol.SubprotocolMux && sub != protocol.SubprotocolJSON && sub != "" {
		ws.Close(websocket.StatusProtocolError, "unknown subprotocol", 0)
		return nil, fmt.Errorf("gateway selected unknown subprotocol %q", sub)
	}
	return ws, nil
}

// keepToWebSocket makes the Listener open WebSockets from now on: the way
// to gateway number gw did not pass the raw transport, for the reason err.
func (l *Listener) keepToWebSocket(gw int, err error) {
	l.mu.Lock()
	l.transport = TransportWebSocket
	l.mu.Unlock()
	l.log.Info("tunnel gateway refused the raw transport; using WebSocket from now on", slog.String("gateway", redact(l.gateways[gw])), slog.Any("err", err))
}

// http1Only returns the protocols of the agent's HTTP client: HTTP/1.1
// alone, which both upgrades need.
func http1Only() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return p
}

// handshake sends ready and reads the gateway's answer; ctx bounds both.
func handshake(ctx context.Context, ws agentLink, ready *protocol.Ready) (*protocol.ConnectionEstablished, error) {
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
		return nil, &Error{Code: Code(protocol.CodeFromVersion0(m.Code)), Message: m.Message}
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
// retrying: the gateway refused this agent. name_in_use is not: a gateway
// whose store lost the tunnel's record may have handed the name to another
// agent for a moment, and the agent keeps asking for it, with backoff.
func permanent(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case CodeUnauthorized, CodeForbidden, CodeInvalidRequest:
		return true
	}
	return false
}
