package apigwtest

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/http-tunnel/tunnel/protocol"
)

const (
	// closeWait bounds the wait for the client's close frame once the
	// emulator has sent its own.
	closeWait = 2 * time.Second

	// writeTimeout bounds one write to a client. A client that stops
	// reading for longer fails the write; the connection is then dropped
	// (1006).
	writeTimeout = 30 * time.Second

	acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
)

// connState is where a connection is in its life. Only an open connection
// accepts @connections posts; every other state answers 410 Gone.
type connState int

const (
	stateConnecting connState = iota // $connect running; no upgrade yet
	stateOpen                        // upgraded
	stateClosing                     // close frame sent or received
	stateClosed                      // TCP connection closed; $disconnect follows
)

var (
	errGone       = errors.New("apigw: connection gone")
	errBufferFull = errors.New("apigw: client buffer full")
)

// wsConn is one WebSocket API connection, from $connect to $disconnect.
type wsConn struct {
	e           *Emulator
	id          string
	sourceIP    string
	userAgent   string
	host        string
	connectedAt time.Time

	// Set before the connection opens, read-only afterwards.
	netConn net.Conn
	br      *bufio.Reader

	// wmu serialises writes to netConn; a message's frames are written
	// under one hold, so messages never interleave.
	wmu sync.Mutex

	// out holds the messages (their frames) waiting for writeLoop, which
	// writes them in order; queued is their size, the message being
	// written included. flushing marks a close begun by the emulator,
	// whose close frame waits for the queue to drain. All are guarded by
	// mu; outReady is broadcast when a message is queued or written and
	// when the state changes.
	out      [][]byte
	queued   int
	flushing bool
	outReady *sync.Cond

	mu          sync.Mutex
	state       connState
	closeCode   int
	closeReason string
	lastActive  time.Time
	idle, life  *time.Timer
}

// serveWebSocketAPI serves the WebSocket API's host: the upgrade at the
// stage root and the @connections API under it.
func (e *Emulator) serveWebSocketAPI(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if rest, ok := strings.CutPrefix(path, e.wsBase+"/@connections"); ok {
		e.serveManagement(w, r, rest)
		return
	}
	if path != e.wsBase && path != e.wsBase+"/" {
		writeJSONMessage(w, http.StatusForbidden, "Forbidden")
		return
	}
	e.serveUpgrade(w, r)
}

// serveUpgrade runs a connection's whole life in the request's goroutine:
// $connect, the opening handshake, the read loop and $disconnect.
func (e *Emulator) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		writeJSONMessage(w, http.StatusUpgradeRequired, "Upgrade Required")
		return
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		writeJSONMessage(w, http.StatusUpgradeRequired, "Upgrade Required")
		return
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		writeJSONMessage(w, http.StatusBadRequest, "Bad Request")
		return
	}

	now := time.Now()
	c := &wsConn{
		e:           e,
		id:          newConnectionID(),
		sourceIP:    remoteIP(r),
		userAgent:   r.UserAgent(),
		host:        r.Host,
		connectedAt: now,
		lastActive:  now,
	}
	c.outReady = sync.NewCond(&c.mu)
	if !e.register(c) {
		writeJSONMessage(w, http.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	defer e.connWG.Done()

	// $connect runs while the connection is registered but not open:
	// @connections calls for it answer 410, as on AWS.
	var subprotocol string
	if h := e.cfg.WebSocket; h != nil {
		ev := c.connectEvent(r, now)
		resp, err := invoke(e, e.cfg.WebSocketConcurrency, func(s *Stats) { s.ConnectInvocations++ }, h, ev)
		if e.refuseConnect(w, c, resp, err) {
			e.unregister(c)
			e.stats.add(func(s *Stats) { s.RefusedConnects++ })
			return
		}
		subprotocol = responseHeader(resp.Headers, resp.MultiValueHeaders, "Sec-WebSocket-Protocol")
	}
	if c.currentState() != stateConnecting { // Close began during $connect
		e.unregister(c)
		writeJSONMessage(w, http.StatusServiceUnavailable, "Service Unavailable")
		return
	}

	netConn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		e.unregister(c)
		e.log.Error("apigw: hijack", "connection_id", c.id, "err", err)
		writeJSONMessage(w, http.StatusInternalServerError, "Internal server error")
		return
	}
	netConn.SetDeadline(time.Time{})
	if tc, ok := netConn.(*net.TCPConn); ok {
		// A fixed socket buffer, not one the kernel grows without bound
		// while the client reads nothing: what a stalled client can
		// absorb stays near ClientBufferBytes, and 429s come when they
		// would.
		tc.SetWriteBuffer(e.limits.ClientBufferBytes)
	}
	c.netConn = netConn
	c.br = brw.Reader
	if !c.open(acceptKey(key), subprotocol) {
		netConn.Close()
		e.unregister(c)
		return
	}
	e.log.Debug("apigw: connected", "connection_id", c.id, "subprotocol", subprotocol)
	c.readLoop()
	c.finish()
}

// refuseConnect answers the upgrade request when $connect did not accept
// it, and reports whether it did. Accepting takes a 2xx statusCode; a
// handler error, a malformed response or a timeout refuses.
func (e *Emulator) refuseConnect(w http.ResponseWriter, c *wsConn, resp events.APIGatewayProxyResponse, err error) bool {
	switch {
	case errors.Is(err, errIntegrationTimeout):
		writeJSONMessage(w, http.StatusGatewayTimeout, "Endpoint request timed out")
	case errors.Is(err, errClosed):
		writeJSONMessage(w, http.StatusServiceUnavailable, "Service Unavailable")
	case err != nil:
		e.log.Warn("apigw: $connect handler failed", "connection_id", c.id, "err", err)
		writeJSONMessage(w, http.StatusInternalServerError, "Internal server error")
	case resp.StatusCode < 200 || resp.StatusCode > 599:
		e.log.Warn("apigw: $connect response has no valid statusCode", "connection_id", c.id, "status", resp.StatusCode)
		writeJSONMessage(w, http.StatusInternalServerError, "Internal server error")
	case resp.StatusCode > 299:
		body, err := responseBody(resp.Body, resp.IsBase64Encoded)
		if err != nil {
			writeJSONMessage(w, http.StatusInternalServerError, "Internal server error")
			return true
		}
		if ct := responseHeader(resp.Headers, resp.MultiValueHeaders, "Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		} else {
			w.Header()["Content-Type"] = nil // no sniffing
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	default:
		return false
	}
	return true
}

// open completes the upgrade: the connection becomes open and the 101
// response is written under the write lock, so no posted message can
// precede it, and no post can fail once the client has seen it. It
// reports false when Close began first.
func (c *wsConn) open(accept, subprotocol string) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.state != stateConnecting {
		c.mu.Unlock()
		return false
	}
	c.state = stateOpen
	c.lastActive = time.Now()
	c.idle = time.AfterFunc(c.e.limits.IdleTimeout, c.idleExpired)
	c.life = time.AfterFunc(c.e.limits.MaxConnectionLife, c.lifeExpired)
	c.mu.Unlock()
	c.e.wg.Add(1) // open runs in the upgrade's tracked goroutine
	go c.writeLoop()

	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n"
	if subprotocol != "" {
		resp += "Sec-WebSocket-Protocol: " + subprotocol + "\r\n"
	}
	resp += "\r\n"
	c.netConn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := io.WriteString(c.netConn, resp); err != nil {
		c.netConn.Close() // the read loop ends at once: 1006, $disconnect
	}
	return true
}

// readLoop reads frames until the connection ends, enforcing the frame
// and message limits and handing each complete message to $default.
func (c *wsConn) readLoop() {
	lim := c.e.limits
	var (
		msg   []byte
		msgOp byte
		inMsg bool
	)
	for {
		h, err := readFrameHeader(c.br)
		if err != nil {
			if errors.Is(err, errFrameLength) {
				c.closeWith(statusProtocolError, "Protocol error")
			}
			c.markAbnormal()
			return
		}
		if c.currentState() != stateOpen {
			// Closing: skip everything up to the client's close frame.
			if h.opcode == opClose || discard(c.br, h.length) != nil {
				return
			}
			continue
		}

		// fail closes the connection and skips the current payload; the
		// loop then waits for the client's close frame.
		fail := func(code int, reason string) {
			c.closeWith(code, reason)
			discard(c.br, h.length)
		}
		switch {
		case h.rsv != 0 || !h.masked:
			fail(statusProtocolError, "Protocol error")
			continue
		case h.isControl():
			if !h.fin || h.length > maxControlPayload {
				fail(statusProtocolError, "Protocol error")
				continue
			}
			payload := make([]byte, h.length)
			if _, err := io.ReadFull(c.br, payload); err != nil {
				c.markAbnormal()
				return
			}
			unmask(h.key, 0, payload)
			if done := c.control(h.opcode, payload); done {
				return
			}
			continue
		case h.opcode == opText || h.opcode == opBinary:
			if inMsg {
				fail(statusProtocolError, "Protocol error")
				continue
			}
			msgOp, inMsg, msg = h.opcode, true, nil
		case h.opcode == opContinuation:
			if !inMsg {
				fail(statusProtocolError, "Protocol error")
				continue
			}
		default:
			fail(statusProtocolError, "Protocol error")
			continue
		}

		if h.length > int64(lim.MaxFrameBytes) || int64(len(msg))+h.length > int64(lim.MaxMessageBytes) {
			fail(statusMessageTooBig, "Message too big")
			continue
		}
		start := len(msg)
		msg = slices.Grow(msg, int(h.length))[:start+int(h.length)]
		if _, err := io.ReadFull(c.br, msg[start:]); err != nil {
			c.markAbnormal()
			return
		}
		unmask(h.key, 0, msg[start:])
		if !h.fin {
			continue
		}
		inMsg = false
		if msgOp == opText && !utf8.Valid(msg) {
			c.closeWith(statusInvalidPayload, "Invalid UTF-8")
			continue
		}
		c.received(msgOp, msg)
		msg = nil
	}
}

// control handles a control frame on an open connection and reports
// whether the connection is done (the client closed it).
func (c *wsConn) control(opcode byte, payload []byte) (done bool) {
	switch opcode {
	case opPing:
		c.writeControl(opPong, payload)
	case opPong:
	case opClose:
		code, reason, err := parseClosePayload(payload)
		if err != nil {
			c.closeWith(statusProtocolError, "Protocol error")
			return true
		}
		if c.beginClose(code, reason, false) {
			// Echo the code (RFC 6455 section 5.5.1), then end: the
			// server closes the TCP connection first.
			c.writeClose(code, "")
		}
		return true
	default:
		c.closeWith(statusProtocolError, "Protocol error")
	}
	return false
}

// received accepts one complete client message and invokes $default with
// it in a goroutine of its own.
func (c *wsConn) received(op byte, msg []byte) {
	c.e.stats.add(func(s *Stats) { s.MessagesIn++; s.MeteredMessages += meteredUnits(len(msg)) })
	c.touch()
	c.e.wg.Add(1) // the read loop runs in a tracked goroutine
	go c.dispatch(op, msg)
}

// dispatch runs $default for one message and acts on the outcome: a route
// response, or the notice API Gateway sends a client when the integration
// fails.
func (c *wsConn) dispatch(op byte, msg []byte) {
	defer c.e.wg.Done()
	if f := c.e.hooks.dispatched; f != nil {
		defer f()
	}
	requestID := newConnectionID()
	h := c.e.cfg.WebSocket
	if h == nil {
		c.notify("Forbidden", requestID)
		return
	}
	ev := c.messageEvent(op, msg, requestID)
	resp, err := invoke(c.e, c.e.cfg.WebSocketConcurrency, func(s *Stats) { s.DefaultInvocations++ }, h, ev)
	switch {
	case errors.Is(err, errIntegrationTimeout):
		c.notify("Endpoint request timed out", requestID)
	case errors.Is(err, errClosed):
	case err != nil:
		c.e.log.Warn("apigw: $default handler failed", "connection_id", c.id, "err", err)
		c.notify("Internal server error", requestID)
	case c.e.cfg.RouteResponse && resp.Body != "":
		data, err := responseBody(resp.Body, resp.IsBase64Encoded)
		if err != nil {
			c.notify("Internal server error", requestID)
			return
		}
		op := byte(opText)
		if resp.IsBase64Encoded {
			op = opBinary
		}
		c.send(op, data)
	}
}

// notify sends the JSON notice API Gateway sends a client about a failed
// integration: {"message": ..., "connectionId": ..., "requestId": ...}.
func (c *wsConn) notify(message, requestID string) {
	b, _ := json.Marshal(struct {
		Message      string `json:"message"`
		ConnectionID string `json:"connectionId"`
		RequestID    string `json:"requestId"`
	}{message, c.id, requestID})
	c.send(opText, b)
}

// send queues one message for the client, split into frames of at most
// MaxFrameBytes; writeLoop writes it. It fails with errGone unless the
// connection is open, and with errBufferFull when the messages already
// waiting and this one would pass ClientBufferBytes.
func (c *wsConn) send(op byte, data []byte) error {
	frames := appendMessage(nil, op, data, c.e.limits.MaxFrameBytes)
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return errGone
	}
	if c.queued > 0 && c.queued+len(frames) > c.e.limits.ClientBufferBytes {
		c.mu.Unlock()
		return errBufferFull
	}
	c.out = append(c.out, frames)
	c.queued += len(frames)
	c.outReady.Broadcast()
	c.mu.Unlock()
	c.touch()
	c.e.stats.add(func(s *Stats) { s.MessagesOut++; s.MeteredMessages += meteredUnits(len(data)) })
	return nil
}

// writeLoop writes queued messages in order until the connection leaves
// the open state. When the emulator closes the connection the queue is
// written out before the close frame; when the client does, or the TCP
// connection ends, what is still queued is dropped. A failed write drops
// the connection, since a partial frame leaves the stream unusable.
func (c *wsConn) writeLoop() {
	defer c.e.wg.Done()
	for {
		c.mu.Lock()
		for len(c.out) == 0 && c.state == stateOpen {
			c.outReady.Wait()
		}
		if c.state != stateOpen && (!c.flushing || c.state == stateClosed || len(c.out) == 0) {
			c.out, c.queued = nil, 0
			c.outReady.Broadcast()
			c.mu.Unlock()
			return
		}
		frames := c.out[0]
		c.out[0] = nil
		c.out = c.out[1:]
		c.mu.Unlock()

		c.wmu.Lock()
		if st := c.currentState(); st == stateOpen || st == stateClosing {
			c.netConn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := c.netConn.Write(frames); err != nil {
				c.netConn.Close()
			}
		}
		c.wmu.Unlock()

		c.mu.Lock()
		c.queued -= len(frames)
		c.outReady.Broadcast()
		c.mu.Unlock()
	}
}

// writeControl writes a control frame unless the connection is closing.
func (c *wsConn) writeControl(op byte, payload []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.currentState() != stateOpen {
		return
	}
	c.netConn.SetWriteDeadline(time.Now().Add(writeTimeout))
	c.netConn.Write(appendFrame(nil, true, op, payload))
}

// beginClose moves an open connection to closing with the given status
// and reports whether it did. A connecting one is marked so that its
// upgrade is refused. flush keeps the queued messages, to be written
// before the close frame.
func (c *wsConn) beginClose(code int, reason string, flush bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateConnecting:
		c.state = stateClosing
		return false
	case stateOpen:
		c.state = stateClosing
		c.closeCode, c.closeReason = code, reason
		c.flushing = flush
		c.outReady.Broadcast()
		return true
	}
	return false
}

// writeClose writes a close frame; the connection must be closing.
func (c *wsConn) writeClose(code int, reason string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.netConn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.netConn.Write(appendFrame(nil, true, opClose, closePayload(code, reason)))
	return err
}

// closeWith starts the closing handshake from the server side: it lets
// the messages already queued go out (posts are refused from now on),
// sends a close frame and gives the client closeWait to answer before the
// read loop gives up. It does nothing unless the connection is open.
func (c *wsConn) closeWith(code int, reason string) { c.close(code, reason, true) }

// close is closeWith; flush false drops the queued messages, for Close,
// which must not wait on clients that stopped reading.
func (c *wsConn) close(code int, reason string, flush bool) {
	if !c.beginClose(code, reason, flush) {
		return
	}
	c.mu.Lock()
	for c.queued > 0 && c.state != stateClosed {
		c.outReady.Wait()
	}
	c.mu.Unlock()
	if err := c.writeClose(code, reason); err != nil {
		c.netConn.Close()
		return
	}
	c.netConn.SetReadDeadline(time.Now().Add(closeWait))
}

// markAbnormal records that the TCP connection ended without a close
// handshake (1006), unless a close was already under way.
func (c *wsConn) markAbnormal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateOpen {
		c.state = stateClosing
		c.closeCode, c.closeReason = statusAbnormalClosure, ""
		c.outReady.Broadcast()
	}
}

// finish ends the connection after the read loop: TCP close, removal from
// the registry (posts now answer 410), then $disconnect.
func (c *wsConn) finish() {
	c.mu.Lock()
	c.state = stateClosed
	c.outReady.Broadcast()
	code, reason := c.closeCode, c.closeReason
	c.idle.Stop()
	c.life.Stop()
	c.mu.Unlock()
	c.netConn.Close()
	c.e.unregister(c)
	c.e.stats.closed(code)
	c.e.log.Debug("apigw: disconnected", "connection_id", c.id, "code", code, "reason", reason)

	h := c.e.cfg.WebSocket
	if h == nil {
		return
	}
	if _, err := invoke(c.e, c.e.cfg.WebSocketConcurrency, func(s *Stats) { s.DisconnectInvocations++ }, h, c.disconnectEvent(code, reason)); err != nil {
		c.e.log.Warn("apigw: $disconnect handler failed", "connection_id", c.id, "err", err)
	}
}

func (c *wsConn) currentState() connState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// touch records activity: it restarts the idle timer.
func (c *wsConn) touch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastActive = time.Now()
	if c.idle != nil && c.state == stateOpen {
		c.idle.Reset(c.e.limits.IdleTimeout)
	}
}

func (c *wsConn) lastActiveAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastActive
}

// idleExpired runs when the idle timer fires. Activity may have raced
// with the timer; then the timer is re-armed for the time left.
func (c *wsConn) idleExpired() {
	if !c.e.enter() {
		return // Close closes the connection itself
	}
	defer c.e.wg.Done()
	c.mu.Lock()
	left := c.e.limits.IdleTimeout - time.Since(c.lastActive)
	if left > 0 && c.state == stateOpen {
		c.idle.Reset(left)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.closeWith(statusGoingAway, "Going away")
}

func (c *wsConn) lifeExpired() {
	if !c.e.enter() {
		return
	}
	defer c.e.wg.Done()
	c.closeWith(statusGoingAway, "Going away")
}

// register adds c to the registry unless Close has begun.
func (e *Emulator) register(c *wsConn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.conns[c.id] = c
	e.connWG.Add(1)
	return true
}

func (e *Emulator) unregister(c *wsConn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conns[c.id] == c {
		delete(e.conns, c.id)
	}
}

func (e *Emulator) lookup(id string) *wsConn {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conns[id]
}

// Events.

func (c *wsConn) requestContext(route, eventType string, now time.Time) events.APIGatewayWebsocketProxyRequestContext {
	return events.APIGatewayWebsocketProxyRequestContext{
		RouteKey:          route,
		EventType:         eventType,
		ExtendedRequestID: newConnectionID(),
		RequestID:         newConnectionID(),
		RequestTime:       requestTime(now),
		RequestTimeEpoch:  now.UnixMilli(),
		MessageDirection:  "IN",
		Stage:             c.e.cfg.WebSocketStage,
		ConnectedAt:       c.connectedAt.UnixMilli(),
		Identity:          events.APIGatewayRequestIdentity{SourceIP: c.sourceIP, UserAgent: c.userAgent},
		DomainName:        c.e.wsDomain,
		ConnectionID:      c.id,
		APIID:             c.e.wsAPIID,
	}
}

func (c *wsConn) connectEvent(r *http.Request, now time.Time) events.APIGatewayWebsocketProxyRequest {
	h := r.Header.Clone()
	protocol.RemoveHopByHop(h) // they end at API Gateway
	h.Set("Host", r.Host)
	addForwardingHeaders(h, c.sourceIP, c.e.wsDomain, now)
	single, multi := headerMaps(h, false)
	q, mq := queryMaps(r.URL.RawQuery)
	return events.APIGatewayWebsocketProxyRequest{
		Headers:                         single,
		MultiValueHeaders:               multi,
		QueryStringParameters:           q,
		MultiValueQueryStringParameters: mq,
		RequestContext:                  c.requestContext("$connect", "CONNECT", now),
	}
}

// messageEvent builds the $default event. Text arrives as the body;
// binary as base64 with isBase64Encoded.
func (c *wsConn) messageEvent(op byte, msg []byte, requestID string) events.APIGatewayWebsocketProxyRequest {
	rc := c.requestContext("$default", "MESSAGE", time.Now())
	rc.RequestID = requestID
	rc.MessageID = newConnectionID()
	ev := events.APIGatewayWebsocketProxyRequest{RequestContext: rc}
	if op == opBinary {
		ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(msg), true
	} else {
		ev.Body = string(msg)
	}
	return ev
}

func (c *wsConn) disconnectEvent(code int, reason string) events.APIGatewayWebsocketProxyRequest {
	rc := c.requestContext("$disconnect", "DISCONNECT", time.Now())
	rc.DisconnectStatusCode = int64(code)
	if reason == "" {
		switch code {
		case statusNoStatus:
			reason = "Client-side close frame status not set"
		case statusAbnormalClosure:
			reason = "Connection closed abnormally"
		}
	}
	rc.DisconnectReason = &reason
	return events.APIGatewayWebsocketProxyRequest{
		Headers:           map[string]string{"Host": c.host},
		MultiValueHeaders: map[string][]string{"Host": {c.host}},
		RequestContext:    rc,
	}
}

// Handshake helpers. internal/websocket has the same two, and frame.go's
// close-code check has a twin there too: the emulator keeps its own on
// purpose, so that it checks the tunnel's WebSocket as an independent
// implementation instead of agreeing with it by construction.

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// headerHasToken reports whether a comma-separated header contains token,
// case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func discard(r io.Reader, n int64) error {
	_, err := io.CopyN(io.Discard, r, n)
	return err
}
