package tunnel

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/internal/yamux"
	"github.com/http-tunnel/tunnel/protocol"

	"github.com/http-tunnel/tunnel/store"
)

// storeCallTimeout bounds the store calls a session makes when it ends or
// drains, which no request's context bounds: a store that hangs must not
// hold the session's goroutine for ever.
const storeCallTimeout = 10 * time.Second

// session is the gateway's side of one agent connection in mux mode.
type session struct {
	srv     *Server
	info    Tunnel
	log     *slog.Logger
	rec     store.Record // as admitted; written again if the store loses it
	agent   string       // claim.Owner of the agent's subject and resume token
	version int          // the protocol version agreed at the handshake
	host    string       // the host of the tunnel's public URL

	// ws is the agent's connection: a WebSocket or the raw transport.
	ws agentLink
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
	// lost is set when the tunnel turned out to belong to another
	// connection (loseTunnel): the record is not this session's to touch.
	lost atomic.Bool
	// moved is set when, told to go away, the agent resumed its tunnel on
	// another node: the session lives on only for what it carries.
	moved atomic.Bool
	// inflight counts the public requests forwarded through the session.
	inflight atomic.Int32
	// opening is held (read) while a stream is opened, and (write) while
	// draining is set: once drain has set it, no stream opens, so the
	// acknowledgement drain sends is the last the agent reads before a
	// stream it has not seen (spec.md, "drain").
	opening   sync.RWMutex
	closeOnce sync.Once
}

// openStream opens a stream to the agent for the session's HTTP transport,
// once the session's multiplexer runs, and from protocol version 2 on
// starts it with the PROXY header naming the client that addr encodes
// (streamHost).
func (sess *session) openStream(ctx context.Context, _, addr string) (net.Conn, error) {
	select {
	case <-sess.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if sess.mux == nil {
		return nil, errors.New("agent session failed to start")
	}
	sess.opening.RLock()
	if sess.draining.Load() {
		sess.opening.RUnlock()
		return nil, errDraining
	}
	st, err := sess.mux.Open()
	sess.opening.RUnlock()
	if err != nil || sess.version < 2 {
		return st, err
	}
	if _, err := st.Write(protocol.AppendProxyHeader(make([]byte, 0, protocol.MaxProxyHeaderBytes), streamClient(addr))); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// streamHost returns the URL host under which the session's transport pools
// the streams of one client: the client's address, hex-encoded, and the
// connection ID. streamClient reverses it from the dialed address.
func streamHost(client netip.AddrPort, connID string) string {
	b, _ := client.MarshalBinary()
	return "c" + hex.EncodeToString(b) + "." + connID
}

// streamClient returns the client address that a dialed "host:port" made
// by streamHost encodes; the zero AddrPort if it encodes none.
func streamClient(addr string) netip.AddrPort {
	label, _, _ := strings.Cut(strings.TrimPrefix(addr, "c"), ".")
	var a netip.AddrPort
	if b, err := hex.DecodeString(label); err == nil {
		a.UnmarshalBinary(b)
	}
	return a
}

// run serves the session until it ends, renewing the tunnel's lease and
// reading the agent's control streams, then deregisters it.
func (sess *session) run() {
	s := sess.srv
	sess.log.Info("agent connected", slog.String("subject", sess.info.Subject), slog.String("url", sess.info.URL), slog.String("transport", string(transportOf(sess.ws))))
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

	// The control streams are read on this goroutine, which the session
	// holds anyway: an idle tunnel costs no goroutine for them.
	// acceptControl returns when the session ends (or, rarely, when
	// accepting a stream fails before it does).
	sess.acceptControl()
	<-sess.mux.CloseChan()
	if err := sess.mux.Err(); brokeProtocol(err) {
		// A hostile or broken agent: it is cut off, and named.
		sess.log.Warn("agent disconnected: it broke the protocol", slog.String("subject", sess.info.Subject), slog.Any("err", err))
	}

	s.mu.Lock()
	s.removeSessionLocked(sess)
	s.mu.Unlock()
	sess.transport.CloseIdleConnections()
	s.cache.Remove(ctx, sess.info.ID)
	s.members.remove(sess.info.ID)
	sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	switch {
	case sess.draining.Load():
		// The agent left on purpose: free its name now.
		if err := s.store.Delete(sctx, sess.info.ID, sess.info.ConnectionID); err != nil {
			sess.log.Warn("deleting the tunnel record failed", slog.Any("err", err))
		}
	case sess.rec.Pool && !sess.lost.Load():
		// A pool member that went away or broke: released, no node routes
		// to it any more, and while it is the last one the name stays
		// the pool's until its lease runs out.
		if err := s.store.Release(sctx, sess.info.ID, sess.info.ConnectionID); err != nil && !errors.Is(err, store.ErrNotFound) {
			sess.log.Warn("releasing the tunnel record failed", slog.Any("err", err))
		}
	case !sess.goingAway.Load() && !sess.lost.Load():
		// An unclean end: a crash or a cut connection. The record stays
		// until its lease runs out, so that the agent can resume the tunnel
		// and no other identity can take its name; released, it lets the
		// same identity take the name at once (a restarted agent has no
		// resume token). A session replaced by a reconnect has lost the
		// record already, and Release does nothing.
		if err := s.store.Release(sctx, sess.info.ID, sess.info.ConnectionID); err != nil && !errors.Is(err, store.ErrNotFound) {
			sess.log.Warn("releasing the tunnel record failed", slog.Any("err", err))
		}
	}
	sess.log.Info("agent disconnected", slog.Bool("drained", sess.draining.Load()), slog.Bool("going_away", sess.goingAway.Load()))
	if s.OnDisconnect != nil {
		s.OnDisconnect(sess.info)
	}
}

// drain stops routing new requests to the session and frees its name: the
// agent is leaving.
func (sess *session) drain() {
	sess.opening.Lock()
	already := sess.draining.Swap(true)
	sess.opening.Unlock()
	if already {
		return
	}
	s := sess.srv
	ctx, cancel := context.WithTimeout(context.Background(), storeCallTimeout)
	defer cancel()
	s.cache.Remove(ctx, sess.info.ID)
	s.members.remove(sess.info.ID)
	if err := s.store.Delete(ctx, sess.info.ID, sess.info.ConnectionID); err != nil {
		sess.log.Warn("deleting the tunnel record failed", slog.Any("err", err))
	}
	sess.transport.CloseIdleConnections()
	sess.log.Info("agent draining")
}

// sendGoAway tells the agent that the gateway is going away (a yamux
// go-away): it reconnects elsewhere, or here later, and keeps this
// connection for the requests it carries until the gateway closes it.
func (sess *session) sendGoAway() {
	sess.goingAway.Store(true)
	<-sess.ready
	if sess.mux != nil {
		sess.mux.GoAway()
	}
}

// left reports whether a session told to go away is done with: ended, or
// idle and, in a cluster, no longer the holder of its tunnel.
func (sess *session) left(ctx context.Context) bool {
	select {
	case <-sess.ready:
	default:
		return false // still in its handshake
	}
	if sess.mux == nil || sess.mux.IsClosed() {
		return true
	}
	if sess.inflight.Load() > 0 {
		return false
	}
	s := sess.srv
	if s.node == "" || sess.rec.Pool {
		// Nowhere else to move to, or a pool's other members serve on:
		// idle is enough.
		return true
	}
	if sess.moved.Load() {
		return true
	}
	cur, err := s.store.Get(ctx, sess.info.ID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && cur.ConnectionID != sess.info.ConnectionID) {
		sess.moved.Store(true)
		return true
	}
	return false
}

// goAway closes the session with 1001 (going away), as the last step of
// a shutdown, ending what still streams through it.
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
	// The transport pools streams by URL host: one pool per client
	// address, so that a stream, which tells the agent its client in its
	// PROXY header, only ever carries that client's requests.
	pr.Out.URL.Host = streamHost(stateOf(pr.In.Context()).client, sess.info.ConnectionID)
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	_, fromNode := pr.In.Header[nodeSecretHeader]
	sess.srv.ownHeaders(pr, fromNode, sess.host)
}

// forward sends r through the tunnel and streams the response back.
func (sess *session) forward(w http.ResponseWriter, r *http.Request) {
	sess.inflight.Add(1)
	defer sess.inflight.Add(-1)
	sess.proxy.ServeHTTP(w, r)
	if sess.draining.Load() {
		sess.transport.CloseIdleConnections()
	}
}

// proxyError maps a failed forward to the public error model.
func (sess *session) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	if clientGone(r, err) {
		// The public client went away; nobody is left to answer.
		sess.log.DebugContext(ctx, "public client canceled the request", slog.String("path", r.URL.Path), slog.Any("err", err))
		return
	}
	if st := stateOf(ctx); errors.Is(err, errDraining) && st.reroutes < maxReroutes && untouched(r) {
		// Chosen as the agent announced it is leaving: the request was
		// not sent. Another member of a pool takes it (or, for a single
		// agent, the tunnel is gone).
		st.reroutes++
		_, fromNode := r.Header[nodeSecretHeader]
		sess.srv.route(w, r, sess.info.ID, fromNode, true)
		return
	}
	sess.srv.fail(ctx, w, forwardError(r, err), slog.String("connection_id", sess.info.ConnectionID), slog.String("method", r.Method), slog.String("path", r.URL.Path))
}

// brokeProtocol reports whether a session ended because the agent broke
// the multiplexer's rules or its bounds: more streams than it may open, a
// stream ID it may not use, a window it may not grant or exceed, a frame
// that is not one.
func brokeProtocol(err error) bool {
	for _, e := range [...]error{yamux.ErrTooManyStreams, yamux.ErrInvalidStreamID, yamux.ErrWindowOverflow,
		yamux.ErrRecvWindowExceeded, yamux.ErrInvalidMsgType, yamux.ErrInvalidVersion} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
