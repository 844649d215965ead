package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"time"

	"github.com/http-tunnel/tunnel/internal/claim"
	"github.com/http-tunnel/tunnel/internal/mux"
	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/observability"
	"github.com/http-tunnel/tunnel/protocol"
	"go.opentelemetry.io/otel/metric"
)

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

	// Without an Authenticator every agent is the same anonymous identity:
	// a name a crashed agent held is anyone's to take back at once.
	ident := Identity{Subject: AnonymousSubject}
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
	var link agentLink
	var err error
	if asksForRaw(r) {
		link, err = acceptRaw(w)
	} else {
		link, err = websocket.Accept(w, r, []string{protocol.SubprotocolMux})
	}
	if err != nil {
		var ue *websocket.UpgradeError
		if errors.As(err, &ue) {
			if ue.Status == http.StatusUpgradeRequired {
				// Both upgrades this endpoint takes, preferred first.
				w.Header().Set("Upgrade", protocol.UpgradeMux+", websocket")
			}
			s.fail(ctx, w, &Error{Code: CodeInvalidRequest, Message: "the agent endpoint takes WebSocket upgrades (or the " + protocol.UpgradeMux + " upgrade) only: " + ue.Reason, Err: err},
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

	sess, err := s.handshake(ctx, r, link, ident)
	if err != nil {
		s.log.InfoContext(ctx, "agent handshake failed", slog.String("remote_addr", r.RemoteAddr), slog.String("subject", ident.Subject),
			slog.String("transport", string(transportOf(link))), slog.Any("err", err))
		return
	}
	sess.run()
}

// handshake reads the agent's ready message, claims its tunnel and answers
// connection_established, then starts the multiplexer. On failure it has
// answered the agent with an error message and closed the connection.
func (s *Server) handshake(ctx context.Context, r *http.Request, ws agentLink, ident Identity) (*session, error) {
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

	if ready.Version < 1 {
		ready.Version = 1 // mux mode implies version 1 (spec.md, Versions)
	}
	// Between the record's Put and the session's registration below, a
	// request routed by the new record must wait for the session rather
	// than find none here (admitting).
	connID := randid.Hex(16)
	admitted := s.admitting(connID)
	defer admitted()
	rec, est, err := s.Admit(ctx, Admission{Identity: ident, Ready: ready, BaseURL: requestBaseURL(r), ConnectionID: connID})
	if err != nil {
		e := asError(err)
		status := websocket.StatusPolicyViolation
		if e.Code == CodeInternal {
			status = websocket.StatusInternalError
		}
		return fail(e.Code, status, e.Message, e.Err)
	}
	now := rec.CreatedAt
	// A reconnecting agent takes its tunnel over: close what this node
	// still holds of its previous connection (of a pool, only that
	// agent's: the other members serve on).
	agent := claim.Owner(ident.Subject, est.ResumeToken)
	s.closeStale(rec.TunnelID, rec.ConnectionID, agent)

	sess := &session{
		srv:     s,
		rec:     rec,
		agent:   agent,
		version: rec.Version,
		host:    hostOf(rec.PublicURL),
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
		// One transport per session, so that its streams die with it; in
		// it one pool per client address (streamHost). Streams are cheap;
		// keep enough idle ones for a busy tunnel, and a bound on them all.
		MaxIdleConnsPerHost:    256,
		MaxIdleConns:           256,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  s.responseTimeout(),
		MaxResponseHeaderBytes: s.maxResponseHeaderBytes(),
		ExpectContinueTimeout:  time.Second,
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
	s.addSessionLocked(sess)
	s.startLeasesLocked()
	s.mu.Unlock()
	admitted()
	failed := func(err error) (*session, error) {
		s.mu.Lock()
		s.removeSessionLocked(sess)
		s.mu.Unlock()
		close(sess.ready)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeCallTimeout)
		s.store.Delete(dctx, rec.TunnelID, rec.ConnectionID)
		cancel()
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

// closeWait bounds the wait for an agent's answer to the gateway's close.
const closeWait = 5 * time.Second

// closeStale closes this node's sessions of tunnel id other than keep: a
// reconnect has taken the tunnel over from them. Of a pool's members it
// closes only those of agent, the connecting agent's key (claim.Owner of
// its subject and resume token): its earlier connections.
func (s *Server) closeStale(id, keep, agent string) {
	s.mu.Lock()
	var stale []*session
	for cid, sess := range s.sessions {
		if sess.info.ID == id && cid != keep && (!sess.rec.Pool || sess.agent == agent) {
			stale = append(stale, sess)
		}
	}
	s.mu.Unlock()
	for _, sess := range stale {
		sess.log.Info("agent session replaced by a reconnect")
		sess.close()
	}
}
