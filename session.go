package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/internal/yamux"

	"go.opentelemetry.io/otel/metric"

	"github.com/http-tunnel/tunnel/internal/claim"
	"github.com/http-tunnel/tunnel/internal/mux"
	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/observability"
	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/store"
)

// session is the gateway's side of one agent connection in mux mode.
type session struct {
	srv  *Server
	info Tunnel
	log  *slog.Logger

	ws *websocket.Conn
	// mux is set before ready is closed, and stays nil if the session
	// failed to start.
	mux       *yamux.Session
	ready     chan struct{}
	transport *http.Transport
	proxy     *httputil.ReverseProxy

	// draining is set when the agent announced it is leaving: no new
	// requests are routed here, idle streams are closed as requests
	// finish, and its record is deleted rather than left to expire.
	draining atomic.Bool
	// goingAway is set when the gateway told the agent to leave.
	goingAway atomic.Bool
	closeOnce sync.Once
}

// serveAgent authenticates an agent, runs the handshake and then serves its
// session until it ends.
func (s *Server) serveAgent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !s.agents.enter() {
		s.fail(ctx, w, &Error{Code: CodeUnavailable, Message: ErrUnavailable.Message})
		return
	}
	defer s.agents.leave()

	if s.AgentLimiter != nil {
		ip := s.clientIP(r)
		if !s.allow(ctx, w, s.AgentLimiter, "agent:"+ip, "agent", slog.String("client_ip", ip)) {
			return
		}
	}

	var ident Identity
	if s.Authenticator != nil {
		var err error
		ident, err = s.Authenticator.Authenticate(ctx, r)
		if err != nil {
			e := asError(err)
			if e.Code != CodeUnauthorized && e.Code != CodeForbidden {
				e = &Error{Code: CodeInternal, Message: ErrInternal.Message, Err: fmt.Errorf("authenticate: %w", err)}
			}
			s.fail(ctx, w, e, slog.String("remote_addr", r.RemoteAddr))
			return
		}
	}

	// Agents are programs, not browsers: they authenticate with a bearer
	// token, never with ambient cookies, so there is no Origin check.
	ws, err := websocket.Accept(w, r, []string{protocol.SubprotocolMux})
	if err != nil {
		var ue *websocket.UpgradeError
		if errors.As(err, &ue) {
			s.fail(ctx, w, &Error{Code: CodeInvalidRequest, Message: "the agent endpoint takes WebSocket upgrades only: " + ue.Reason, Err: err},
				slog.String("remote_addr", r.RemoteAddr))
			return
		}
		if errors.Is(err, websocket.ErrNotHijackable) {
			s.fail(ctx, w, &Error{Code: CodeInternal, Message: ErrInternal.Message, Err: err}, slog.String("remote_addr", r.RemoteAddr))
			return
		}
		// Writing the 101 answer failed: the agent is gone.
		s.log.InfoContext(ctx, "agent upgrade failed", slog.String("remote_addr", r.RemoteAddr), slog.Any("err", err))
		return
	}

	sess, err := s.handshake(ctx, r, ws, ident)
	if err != nil {
		s.log.InfoContext(ctx, "agent handshake failed", slog.String("remote_addr", r.RemoteAddr), slog.String("subject", ident.Subject), slog.Any("err", err))
		return
	}
	sess.run()
}

// handshake reads the agent's ready message, claims its tunnel and answers
// connection_established, then starts the multiplexer. On failure it has
// answered the agent with an error message and closed the WebSocket.
func (s *Server) handshake(ctx context.Context, r *http.Request, ws *websocket.Conn, ident Identity) (*session, error) {
	fail := func(code Code, status int, msg string, cause error) (*session, error) {
		s.inst.ErrorOccurred.Add(ctx, 1, metric.WithAttributes(observability.AttrCode.String(string(code))))
		if b, err := protocol.Marshal(&protocol.Error{Code: string(code), Message: msg}); err == nil {
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			stop := context.AfterFunc(wctx, func() { ws.CloseNow() })
			ws.WriteMessage(websocket.OpText, b)
			stop()
			cancel()
		}
		// Nobody else reads: read on until the agent's close, so that it
		// gets the message before the connection closes.
		ws.CloseAndDrain(status, msg, closeWait)
		if cause == nil {
			cause = errors.New(msg)
		}
		return nil, &Error{Code: code, Message: msg, Err: cause}
	}

	if ws.Subprotocol() != protocol.SubprotocolMux {
		return fail(CodeInvalidRequest, websocket.StatusProtocolError,
			"this gateway speaks mux mode only: offer subprotocol "+protocol.SubprotocolMux, nil)
	}

	hctx, cancel := context.WithTimeout(ctx, orDefault(s.HandshakeTimeout, DefaultHandshakeTimeout))
	stop := context.AfterFunc(hctx, func() { ws.CloseNow() })
	typ, data, err := ws.ReadMessage(protocol.MaxHandshakeBytes)
	stop()
	ctxErr := hctx.Err()
	cancel()
	if err != nil {
		// A message over the read limit has already been answered with
		// close status 1009 by the WebSocket layer.
		ws.CloseNow()
		if ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return nil, fmt.Errorf("read ready: %w", err)
	}
	if typ != websocket.OpText {
		return fail(CodeInvalidRequest, websocket.StatusProtocolError, "the handshake is JSON text", nil)
	}
	msg, err := protocol.Unmarshal(data, protocol.MaxHandshakeBytes)
	if err != nil {
		return fail(CodeInvalidRequest, websocket.StatusProtocolError, "malformed ready message", err)
	}
	ready, ok := msg.(*protocol.Ready)
	if !ok {
		return fail(CodeInvalidRequest, websocket.StatusProtocolError, "expected a ready message, got "+msg.Type(), nil)
	}

	// Choose the tunnel ID and the owner secret.
	id, err := claim.Requested(ready.TunnelID, ready.Name, ready.ResumeToken)
	if err != nil {
		return fail(CodeInvalidRequest, websocket.StatusPolicyViolation, err.Error(), nil)
	}
	resume := ready.ResumeToken
	if resume == "" {
		resume = randid.Secret()
	}
	owner := claim.Owner(ident.Subject, resume)

	base := s.baseURL(r)
	now := time.Now()
	rec := store.Record{
		ConnectionID: randid.Hex(16),
		Owner:        owner,
		Node:         s.node,
		CreatedAt:    now,
		ExpiresAt:    now.Add(orDefault(s.LeaseTTL, DefaultLeaseTTL)),
	}
	generated := id == ""
	for attempt := 0; ; attempt++ {
		rec.TunnelID = id
		if generated {
			rec.TunnelID = randid.TunnelID()
		}
		rec.PublicURL = s.publicURL(base, rec.TunnelID)
		err = s.storeOp(ctx, "Put", func(ctx context.Context) error { return s.store.Put(ctx, rec) })
		if err == nil {
			break
		}
		if errors.Is(err, store.ErrConflict) {
			if generated && attempt < 3 {
				continue
			}
			return fail(CodeNameInUse, websocket.StatusPolicyViolation, "tunnel name "+rec.TunnelID+" is in use", err)
		}
		return fail(CodeInternal, websocket.StatusInternalError, "internal error", fmt.Errorf("store put: %w", err))
	}
	// A reconnecting agent takes its tunnel over: drop what this node
	// cached or still holds of its previous connection.
	s.cache.Remove(ctx, rec.TunnelID)
	s.closeStale(rec.TunnelID, rec.ConnectionID)

	est := &protocol.ConnectionEstablished{
		Version:      protocol.Version,
		ConnectionID: rec.ConnectionID,
		TunnelID:     rec.TunnelID,
		PublicURL:    rec.PublicURL,
		ResumeToken:  resume,
		Limits: &protocol.Limits{
			HeartbeatMillis:      orDefault(s.Heartbeat, DefaultHeartbeat).Milliseconds(),
			RequestTimeoutMillis: s.responseTimeout().Milliseconds(),
		},
	}
	if sub := s.subdomainURL(base, rec.TunnelID); sub != "" {
		est.SubdomainURL = sub
	}
	if s.Routing != RouteSubdomain {
		est.PathBasedURL = base + "/" + rec.TunnelID
	}
	sess := &session{
		srv: s,
		info: Tunnel{
			ID:           rec.TunnelID,
			URL:          rec.PublicURL,
			ConnectionID: rec.ConnectionID,
			Subject:      ident.Subject,
			ConnectedAt:  now,
		},
		ws:    ws,
		ready: make(chan struct{}),
	}
	sess.log = s.log.With(slog.String("tunnel_id", rec.TunnelID), slog.String("connection_id", rec.ConnectionID))
	sess.transport = &http.Transport{
		DialContext: sess.openStream,
		// One pool per session, so that its streams die with it. Streams
		// are cheap; keep enough idle ones for a busy tunnel.
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: s.responseTimeout(),
		ExpectContinueTimeout: time.Second,
		// Bodies pass through as they are: no transparent gzip.
		DisableCompression: true,
		WriteBufferSize:    32 << 10,
		ReadBufferSize:     32 << 10,
	}
	sess.proxy = &httputil.ReverseProxy{
		Rewrite:      sess.rewrite,
		Transport:    sess.transport,
		BufferPool:   proxyBuffers,
		ErrorHandler: sess.proxyError,
		ErrorLog:     slog.NewLogLogger(sess.log.Handler(), slog.LevelDebug),
	}
	// Register before the agent hears it is connected: a request it
	// triggers right after Listen returns must find the session. Such a
	// request waits in openStream until the multiplexer runs.
	s.mu.Lock()
	s.sessions[rec.ConnectionID] = sess
	s.mu.Unlock()
	failed := func(err error) (*session, error) {
		s.mu.Lock()
		delete(s.sessions, rec.ConnectionID)
		s.mu.Unlock()
		close(sess.ready)
		s.store.Delete(context.WithoutCancel(ctx), rec.TunnelID, rec.ConnectionID)
		ws.CloseNow()
		return nil, err
	}

	b, err := protocol.Marshal(est)
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, orDefault(s.HandshakeTimeout, DefaultHandshakeTimeout))
		stop := context.AfterFunc(wctx, func() { ws.CloseNow() })
		err = ws.WriteMessage(websocket.OpText, b)
		stop()
		cancel()
	}
	if err != nil {
		return failed(fmt.Errorf("write connection_established: %w", err))
	}
	ms, err := mux.Client(ws.NetConn(), mux.Config{Heartbeat: orDefault(s.Heartbeat, DefaultHeartbeat)})
	if err != nil {
		return failed(fmt.Errorf("start session: %w", err))
	}
	sess.mux = ms
	close(sess.ready)
	return sess, nil
}

// openStream opens a stream to the agent for the session's HTTP transport,
// once the session's multiplexer runs.
func (sess *session) openStream(ctx context.Context, _, _ string) (net.Conn, error) {
	select {
	case <-sess.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if sess.mux == nil {
		return nil, errors.New("agent session failed to start")
	}
	return sess.mux.Open()
}

// closeWait bounds the wait for an agent's answer to the gateway's close.
const closeWait = 5 * time.Second

// baseURL returns the public base URL (scheme://host[:port], no trailing
// slash) for tunnels of an agent connecting with r.
func (s *Server) baseURL(r *http.Request) string {
	if s.BaseURL != "" {
		return strings.TrimSuffix(s.BaseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// subdomainURL returns the subdomain URL of tunnel id, or "" when subdomain
// routing is off.
func (s *Server) subdomainURL(base, id string) string {
	d := s.domain()
	if d == "" || s.Routing == RoutePath {
		return ""
	}
	scheme, hostport, _ := strings.Cut(base, "://")
	port := ""
	if _, p, err := net.SplitHostPort(hostport); err == nil {
		port = ":" + p
	}
	return scheme + "://" + id + "." + d + port
}

// publicURL returns the URL a tunnel is announced under: its subdomain URL
// where subdomain routing is on, its path URL otherwise.
func (s *Server) publicURL(base, id string) string {
	if u := s.subdomainURL(base, id); u != "" {
		return u
	}
	return base + "/" + id
}

// closeStale closes this node's sessions of tunnel id other than keep: a
// reconnect has taken the tunnel over from them.
func (s *Server) closeStale(id, keep string) {
	s.mu.Lock()
	var stale []*session
	for cid, sess := range s.sessions {
		if sess.info.ID == id && cid != keep {
			stale = append(stale, sess)
		}
	}
	s.mu.Unlock()
	for _, sess := range stale {
		sess.log.Info("agent session replaced by a reconnect")
		sess.close()
	}
}

// proxyBuffers recycles the ReverseProxy's copy buffers, which would
// otherwise cost a 32 KiB allocation per request.
var proxyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return *p.pool.Get().(*[]byte) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// run serves the session until it ends, renewing the tunnel's lease and
// reading the agent's control streams, then deregisters it.
func (sess *session) run() {
	s := sess.srv
	sess.log.Info("agent connected", slog.String("subject", sess.info.Subject), slog.String("url", sess.info.URL))
	ctx := context.Background()
	s.inst.ConnectionEstablished.Add(ctx, 1)
	s.inst.ActiveTunnels.Add(ctx, 1)
	defer func() {
		s.inst.ConnectionClosed.Add(ctx, 1)
		s.inst.ActiveTunnels.Add(ctx, -1)
	}()
	if s.OnConnect != nil {
		s.OnConnect(sess.info)
	}

	go sess.acceptControl()

	ttl := orDefault(s.LeaseTTL, DefaultLeaseTTL)
	renew := time.NewTicker(ttl / 3)
	defer renew.Stop()
loop:
	for {
		select {
		case <-sess.mux.CloseChan():
			break loop
		case <-renew.C:
			ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
			err := s.storeOp(ctx, "Renew", func(ctx context.Context) error {
				return s.store.Renew(ctx, sess.info.ID, sess.info.ConnectionID, time.Now().Add(ttl))
			})
			cancel()
			if errors.Is(err, store.ErrNotFound) {
				sess.log.Warn("tunnel lease lost; closing the agent session")
				sess.ws.Close(websocket.StatusPolicyViolation, "tunnel lease lost", closeWait)
				sess.close()
				break loop
			}
			if err != nil {
				sess.log.Warn("tunnel lease renewal failed", slog.Any("err", err))
			}
		}
	}

	s.mu.Lock()
	delete(s.sessions, sess.info.ConnectionID)
	s.mu.Unlock()
	sess.transport.CloseIdleConnections()
	s.cache.Remove(ctx, sess.info.ID)
	if sess.draining.Load() {
		// The agent left on purpose: free its name now. After an unclean
		// end the record stays until its lease runs out, so that the agent
		// can resume the tunnel and nobody else can take its name.
		if err := s.store.Delete(ctx, sess.info.ID, sess.info.ConnectionID); err != nil {
			sess.log.Warn("deleting the tunnel record failed", slog.Any("err", err))
		}
	}
	sess.log.Info("agent disconnected", slog.Bool("drained", sess.draining.Load()), slog.Bool("going_away", sess.goingAway.Load()))
	if s.OnDisconnect != nil {
		s.OnDisconnect(sess.info)
	}
}

// acceptControl reads the control streams the agent opens.
func (sess *session) acceptControl() {
	for {
		st, err := sess.mux.AcceptStream()
		if err != nil {
			return
		}
		go sess.control(st)
	}
}

// control reads newline-delimited control messages from one stream.
func (sess *session) control(st net.Conn) {
	defer st.Close()
	br := bufio.NewReaderSize(st, 512)
	for {
		line, err := readLine(br, protocol.MaxControlBytes)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				sess.log.Info("control stream closed", slog.Any("err", err))
			}
			return
		}
		msg, err := protocol.Unmarshal(line, protocol.MaxControlBytes)
		if errors.Is(err, protocol.ErrUnknownType) {
			continue
		}
		if err != nil {
			sess.log.Info("malformed control message", slog.Any("err", err))
			return
		}
		if _, ok := msg.(*protocol.Drain); ok {
			sess.drain()
			// Acknowledge, so the agent knows its name is free.
			b, _ := protocol.Marshal(&protocol.Drain{})
			if _, err := st.Write(append(b, '\n')); err != nil {
				return
			}
		}
	}
}

// readLine reads one '\n'-terminated line of at most max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > max+1 {
			return nil, protocol.ErrTooLarge
		}
		line = append(line, chunk...)
		if err == nil {
			return line[:len(line)-1], nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if err == io.EOF && len(line) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// drain stops routing new requests to the session and frees its name: the
// agent is leaving.
func (sess *session) drain() {
	if sess.draining.Swap(true) {
		return
	}
	s := sess.srv
	ctx := context.Background()
	s.cache.Remove(ctx, sess.info.ID)
	if err := s.store.Delete(ctx, sess.info.ID, sess.info.ConnectionID); err != nil {
		sess.log.Warn("deleting the tunnel record failed", slog.Any("err", err))
	}
	sess.transport.CloseIdleConnections()
	sess.log.Info("agent draining")
}

// goAway tells the agent to leave (close 1001) so it reconnects elsewhere or
// later, and ends the session.
func (sess *session) goAway() {
	sess.goingAway.Store(true)
	sess.ws.Close(websocket.StatusGoingAway, "gateway shutting down", closeWait)
	sess.close()
}

// close ends the session at once.
func (sess *session) close() {
	sess.closeOnce.Do(func() {
		// A session still in its handshake is closed once that ends,
		// within the handshake timeout.
		<-sess.ready
		if sess.mux != nil {
			sess.mux.Close()
		}
		sess.transport.CloseIdleConnections()
	})
}

// rewrite prepares the outbound request: the pool key of this session as
// its URL host, the public Host kept, X-Forwarded-* set, and the raw query
// restored (ReverseProxy drops query parameters it cannot parse; a tunnel
// passes the query on byte for byte).
func (sess *session) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = sess.info.ConnectionID
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	pr.Out.Host = pr.In.Host
	if _, hop := pr.In.Header[nodeSecretHeader]; hop {
		// From another node, which set X-Forwarded-* for the client and
		// proved itself with the secret (checked in servePublic). Rewrite
		// removed them from the outbound request: restore them.
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v, ok := pr.In.Header[h]; ok {
				pr.Out.Header[h] = v
			}
		}
		pr.Out.Header.Del(nodeSecretHeader)
	} else {
		sess.srv.setForwarded(pr)
	}
	if p := stateOf(pr.In.Context()).prefix; p != "" {
		pr.Out.Header.Set("X-Forwarded-Prefix", p)
	}
	injectTrace(pr)
}

// forward sends r through the tunnel and streams the response back.
func (sess *session) forward(w http.ResponseWriter, r *http.Request) {
	sess.proxy.ServeHTTP(w, r)
	if sess.draining.Load() {
		sess.transport.CloseIdleConnections()
	}
}

// proxyError maps a failed forward to the public error model.
func (sess *session) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// The public client went away; nobody is left to answer.
		sess.log.DebugContext(ctx, "public client canceled the request", slog.String("path", r.URL.Path))
		return
	}
	var e *Error
	var ne net.Error
	switch {
	case tooLarge(r):
		e = &Error{Code: CodePayloadTooLarge, Message: ErrPayloadTooLarge.Message, Err: err}
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		e = &Error{Code: CodeGatewayTimeout, Message: ErrGatewayTimeout.Message, Err: err}
	default:
		e = &Error{Code: CodeAgentUnavailable, Message: ErrAgentUnavailable.Message, Err: err}
	}
	sess.srv.fail(ctx, w, e, slog.String("connection_id", sess.info.ConnectionID), slog.String("method", r.Method), slog.String("path", r.URL.Path))
}
