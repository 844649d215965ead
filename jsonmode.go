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
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/protocol"
)

// Json mode on the agent side: the connection a gateway behind API Gateway
// serves. Each http_request (reassembled from its chunks) becomes one
// net.Conn handed to Accept, whose reads yield the request serialized as
// HTTP/1.1 with "Connection: close", and whose writes are parsed back with
// http.ReadResponse into an http_response. User code is the same
// http.Serve(ln, h) as in mux mode.

// Json-mode timing. Tests of this package shorten them per Listener with
// withJSONTiming.
const (
	// jsonMaxLifetime is how long the agent keeps one json-mode connection
	// before it opens a new one and resumes the tunnel: API Gateway ends
	// connections at 2 h.
	jsonMaxLifetime = 110 * time.Minute

	// jsonDeadSlack is added to twice the heartbeat interval to decide
	// that a silent connection is dead.
	jsonDeadSlack = 10 * time.Second

	// jsonRetireWait bounds how long a connection being replaced stays
	// open for the requests it already received.
	jsonRetireWait = 30 * time.Second
)

// jsonTiming is the json-mode timing of one Listener. requestTimeout
// replaces jsonDefaultRequestTimeout, for a gateway that announces none.
type jsonTiming struct {
	lifetime, deadSlack, retireWait, requestTimeout time.Duration
}

// withJSONTiming overrides json mode's timing, for tests; zero fields keep
// the defaults.
func withJSONTiming(t jsonTiming) Option { return func(o *options) { o.jsonTiming = t } }

const (
	// jsonDefaultHeartbeat is the longest gap between pings a json-mode
	// gateway allows when it announces none (spec.md).
	jsonDefaultHeartbeat = 5 * time.Minute

	// jsonDefaultRequestTimeout is how long a json-mode gateway waits for
	// a response when it announces nothing; a later one is dropped.
	jsonDefaultRequestTimeout = 25 * time.Second
)

// jsonSession is one json-mode connection of a Listener.
//
// ended is closed when the supervisor must reconnect: the connection broke,
// went silent, or reached its lifetime. In the last case the WebSocket
// stays open (retiring) until the requests it carries are answered.
type jsonSession struct {
	l   *Listener
	ws  *websocket.Conn
	est *protocol.ConnectionEstablished
	log *slog.Logger

	heartbeat      time.Duration
	lifetime       time.Duration
	requestTimeout time.Duration
	maxMessage     int
	maxBody        int64
	reasm          *protocol.Reassembler

	lastSeen atomic.Int64 // UnixNano of the last message received

	mu      sync.Mutex
	cut     bool                  // close was called: in-flight requests are cut
	pending map[net.Conn]struct{} // the agent's ends of in-flight requests' pipes

	ended   chan struct{}
	endOnce sync.Once
	// retired is set when ended was closed because the connection reached
	// its lifetime: a planned reconnect, not a lost connection.
	retired atomic.Bool
	// inflight counts requests received and not yet answered. Not a
	// WaitGroup: a retiring connection waits for it while requests may
	// still arrive, which WaitGroup forbids.
	inflight activity
	stopped  chan struct{} // closed when serve has returned
}

// newJSONSession prepares a json-mode session on ws after the handshake.
func newJSONSession(l *Listener, ws *websocket.Conn, est *protocol.ConnectionEstablished) *jsonSession {
	ws.MaxFrame = protocol.MaxFrameBytes
	s := &jsonSession{
		l: l, ws: ws, est: est,
		log:            l.log.With(slog.String("tunnel_id", est.TunnelID)),
		heartbeat:      jsonDefaultHeartbeat,
		lifetime:       orDefault(l.opts.jsonTiming.lifetime, jsonMaxLifetime),
		requestTimeout: orDefault(l.opts.jsonTiming.requestTimeout, jsonDefaultRequestTimeout),
		maxMessage:     protocol.MaxMessageBytes,
		maxBody:        protocol.DefaultMaxBodyBytes,
		ended:          make(chan struct{}),
		stopped:        make(chan struct{}),
		pending:        make(map[net.Conn]struct{}),
	}
	if l.opts.heartbeat > 0 {
		// Set by the program: it wins, but never exceeds what the
		// gateway asks for (below).
		s.heartbeat = min(s.heartbeat, l.opts.heartbeat)
	}
	if lim := est.Limits; lim != nil {
		if lim.HeartbeatMillis > 0 {
			s.heartbeat = min(s.heartbeat, time.Duration(lim.HeartbeatMillis)*time.Millisecond)
		}
		if lim.RequestTimeoutMillis > 0 {
			s.requestTimeout = time.Duration(lim.RequestTimeoutMillis) * time.Millisecond
		}
		if lim.MaxMessageBytes > 0 {
			s.maxMessage = min(s.maxMessage, lim.MaxMessageBytes)
		}
		if lim.MaxFrameBytes > 0 {
			ws.MaxFrame = min(ws.MaxFrame, lim.MaxFrameBytes)
		}
		if lim.MaxBodyBytes > 0 {
			s.maxBody = lim.MaxBodyBytes
		}
	}
	s.reasm = protocol.NewReassembler(s.maxBody, 64)
	s.lastSeen.Store(time.Now().UnixNano())
	return s
}

// finish closes ended: the supervisor then reconnects (or has shut down).
func (s *jsonSession) finish() { s.endOnce.Do(func() { close(s.ended) }) }

var _ agentSession = (*jsonSession)(nil)

func (s *jsonSession) start() { go s.serve() }

func (s *jsonSession) done() <-chan struct{} { return s.ended }

// lost reports a planned reconnect (already logged by the session) as
// errLifetimeReached.
func (s *jsonSession) lost() error {
	if s.retired.Load() {
		return errLifetimeReached
	}
	return errConnectionLost
}

// goingAway returns nil: a json-mode gateway (API Gateway) says nothing of
// the kind; connections end at their lifetime (retire) instead.
func (s *jsonSession) goingAway() <-chan struct{} { return nil }

// drain does nothing: json mode has no control streams, and the close that
// follows frees the tunnel.
func (s *jsonSession) drain() {}

// awaitStreams has nothing to wait for: json mode has no drain, and its
// requests come as messages that Accept no longer takes after Close.
func (s *jsonSession) awaitStreams(time.Time) {}

// closeNow ends the connection at once.
func (s *jsonSession) closeNow() {
	s.finish()
	s.ws.CloseNow()
}

// close ends the connection with a close handshake, bounded to a second,
// and waits for serve to return.
func (s *jsonSession) close() {
	s.finish()
	s.mu.Lock()
	s.cut = true
	for c := range s.pending {
		c.Close()
	}
	s.mu.Unlock()
	s.ws.Close(websocket.StatusNormalClosure, "agent closing", time.Second)
	<-s.stopped
}

// serve runs the connection: its read loop here, pings and the lifetime
// timer on a second goroutine. It returns when the connection has ended
// and every request it received has been answered.
func (s *jsonSession) serve() {
	defer close(s.stopped)
	readDone := make(chan struct{})
	var timers sync.WaitGroup
	timers.Go(func() { s.keepalive(readDone) })
	s.readLoop()
	s.finish()
	close(readDone)
	timers.Wait()
	s.inflight.wait(context.Background())
}

// readLoop reads messages until the connection ends.
func (s *jsonSession) readLoop() {
	for {
		op, data, err := s.ws.ReadMessage(protocol.MaxMessageBytes)
		if err != nil {
			s.ws.CloseNow()
			return
		}
		s.lastSeen.Store(time.Now().UnixNano())
		if op != websocket.OpText {
			s.log.Warn("tunnel: binary message in json mode; reconnecting")
			// The read loop is the only reader: read on until the
			// gateway's answer to the close.
			s.ws.CloseAndDrain(websocket.StatusUnsupportedData, "binary message in json mode", time.Second)
			return
		}
		msg, err := protocol.Unmarshal(data, protocol.MaxMessageBytes)
		if err != nil {
			// Unknown types are additive; API Gateway's own notices
			// ({"message":"Internal server error",...}) have no type.
			if !errors.Is(err, protocol.ErrUnknownType) {
				s.log.Debug("tunnel: ignoring undecodable message", slog.Any("err", err))
			}
			continue
		}
		switch m := msg.(type) {
		case *protocol.Ping:
			s.send(&protocol.Pong{})
		case *protocol.HTTPRequest:
			id := m.RequestID
			done, body, err := s.reasm.Add(m)
			if err != nil {
				code := CodeInvalidRequest
				if errors.Is(err, protocol.ErrBodyTooLarge) {
					code = CodePayloadTooLarge
				}
				s.sendError(id, code, "request rejected: "+err.Error())
				continue
			}
			if done != nil {
				s.inflight.enter()
				go s.handle(done.(*protocol.HTTPRequest), body)
			}
		case *protocol.Error:
			s.log.Warn("tunnel: gateway reported an error", slog.String("request_id", m.RequestID), slog.String("code", protocol.CodeFromVersion0(m.Code)), slog.String("message", m.Message))
		}
	}
}

// keepalive pings every heartbeat interval, declares the connection dead
// after 2 × heartbeat + jsonDeadSlack without any message, and retires it
// at its lifetime. It returns when readDone is closed, or once a retired
// connection is closed.
//
// A gateway of version 0 (the original Lambda) never answers ping, so its
// silence says nothing: against it the pings only keep API Gateway's idle
// timer from closing the connection, and a dead connection is noticed
// when a write fails, or replaced at its lifetime.
func (s *jsonSession) keepalive(readDone <-chan struct{}) {
	tick := time.NewTicker(s.heartbeat)
	defer tick.Stop()
	life := time.NewTimer(s.lifetime)
	defer life.Stop()
	dead := 2*s.heartbeat + orDefault(s.l.opts.jsonTiming.deadSlack, jsonDeadSlack)
	for {
		select {
		case <-readDone:
			return
		case <-life.C:
			s.retire(readDone)
			return
		case <-tick.C:
			if s.est.Version >= 1 && time.Since(time.Unix(0, s.lastSeen.Load())) > dead {
				s.log.Warn("tunnel: gateway silent; reconnecting", slog.Duration("silent_for", dead))
				s.closeNow()
				continue
			}
			s.send(&protocol.Ping{})
		}
	}
}

// retire hands the tunnel to a new connection (closing ended makes the
// supervisor reconnect and resume, spec.md's answer to API Gateway's 2 h
// limit) and closes this one with 1000 once the requests it received are
// answered, or after jsonRetireWait.
func (s *jsonSession) retire(readDone <-chan struct{}) {
	s.log.Info("tunnel: json-mode connection at its lifetime; reconnecting")
	s.retired.Store(true)
	s.finish()
	answered := make(chan struct{})
	go func() {
		s.inflight.wait(context.Background())
		close(answered)
	}()
	t := time.NewTimer(orDefault(s.l.opts.jsonTiming.retireWait, jsonRetireWait))
	defer t.Stop()
	select {
	case <-answered:
	case <-t.C:
	case <-s.l.closed:
	case <-readDone:
	}
	s.ws.Close(websocket.StatusNormalClosure, "connection lifetime reached", time.Second)
}

// send writes one message; a failure ends the connection, which the read
// loop then notices.
func (s *jsonSession) send(m protocol.Message) error {
	b, err := protocol.Marshal(m)
	if err != nil {
		return err
	}
	if err := s.ws.WriteMessage(websocket.OpText, b); err != nil {
		s.ws.CloseNow()
		return err
	}
	return nil
}

// sendError answers request requestID with an error message. A gateway of
// version 0 decodes only the four codes of version 0 and drops a message
// with any other, leaving its public client to wait for its deadline: it
// gets the nearest of the four (protocol.CodeForVersion0Gateway).
func (s *jsonSession) sendError(requestID string, code Code, message string) {
	c := string(code)
	if s.est.Version < 1 {
		c = protocol.CodeForVersion0Gateway(c)
	}
	s.send(&protocol.Error{RequestID: requestID, Code: c, Message: message})
}

// handle passes one request to Accept as a net.Conn and sends back the
// response the handler writes on it.
func (s *jsonSession) handle(req *protocol.HTTPRequest, body []byte) {
	defer s.inflight.leave()
	start := time.Now()
	raw, err := serializeRequest(req, body, s.l.URL())
	if err != nil {
		s.sendError(req.RequestID, CodeInvalidRequest, err.Error())
		return
	}
	local, remote := net.Pipe()
	local.SetDeadline(start.Add(s.requestTimeout))
	s.mu.Lock()
	if s.cut {
		s.mu.Unlock()
		return
	}
	s.pending[local] = struct{}{}
	s.mu.Unlock()
	defer func() {
		local.Close()
		s.mu.Lock()
		delete(s.pending, local)
		s.mu.Unlock()
	}()
	client, _ := netip.ParseAddrPort(req.RemoteAddr)
	conn := s.l.track(remote, addrOf(client), nil)
	if conn == nil {
		s.sendError(req.RequestID, CodeUnavailable, "the agent is shutting down")
		return
	}
	select {
	case s.l.conns <- conn:
	case <-s.l.closed:
		conn.Close()
		s.sendError(req.RequestID, CodeUnavailable, "the agent is shutting down")
		return
	}

	// net.Pipe has no buffer: the request is written while the response
	// is read, since a handler may answer before reading the body.
	var writer sync.WaitGroup
	writer.Go(func() { local.Write(raw) })
	defer writer.Wait()
	defer local.Close() // unblocks the writer if the handler never read

	resp, err := http.ReadResponse(bufio.NewReader(local), &http.Request{Method: req.Method})
	if err != nil {
		s.respondFailure(req.RequestID, err)
		return
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, s.maxBody+1))
	if err != nil {
		s.respondFailure(req.RequestID, err)
		return
	}
	if int64(len(rb)) > s.maxBody {
		s.sendError(req.RequestID, CodePayloadTooLarge, fmt.Sprintf("response body over %d bytes", s.maxBody))
		return
	}
	out := &protocol.HTTPResponse{
		RequestID:            req.RequestID,
		StatusCode:           resp.StatusCode,
		Headers:              responseHeaders(resp, req.Method, len(rb)),
		ProcessingTimeMillis: time.Since(start).Milliseconds(),
	}
	msgs, err := protocol.SplitResponse(out, rb, s.maxMessage)
	if err == nil && len(msgs) > 1 && s.est.Version < 1 {
		err = errors.New("a version 0 gateway cannot take a chunked body")
	}
	if err != nil {
		s.sendError(req.RequestID, CodePayloadTooLarge, "response does not fit: "+err.Error())
		return
	}
	for _, m := range msgs {
		if s.send(m) != nil {
			return
		}
	}
}

// respondFailure answers a request whose handler gave no usable response.
func (s *jsonSession) respondFailure(requestID string, err error) {
	code, msg := CodeLocalServiceUnavailable, "the local handler gave no response"
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		code, msg = CodeGatewayTimeout, "the local handler did not answer in time"
	}
	s.log.Warn("tunnel: request failed", slog.String("request_id", requestID), slog.Any("err", err))
	s.sendError(requestID, code, msg)
}
