package inspector

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/http-tunnel/tunnel/internal/websocket"
)

// maxHead bounds the response head read off a hijacked connection; a
// longer one is not parsed, and the bytes count as raw.
const maxHead = 64 << 10

// conn is a connection taken over from the server by a handler, recording
// what passes each way. Reads and writes pass through unchanged.
type conn struct {
	net.Conn
	rec *Recorder
	e   *entry

	inMu  sync.Mutex // guards early and in
	early []byte     // bytes the server had buffered, read first
	in    stream     // from the client

	outMu sync.Mutex
	out   stream // from the server

	closeOnce sync.Once
}

// stream is one direction of a hijacked connection.
type stream struct {
	fromClient bool
	mode       streamMode
	head       []byte // the response head so far, in modeHead
	ws         frameParser
}

type streamMode uint8

const (
	modeHead   streamMode = iota // reading the server's response head
	modeFrames                   // WebSocket frames
	modeRaw                      // another protocol: counted, kept as a body
)

// newConn wraps nc, hijacked from w's request. A request that asks for a
// WebSocket has its client bytes parsed as frames; the server's bytes
// start with the response head, unless the handler wrote it through the
// ResponseWriter before taking over.
func (r *Recorder) newConn(nc net.Conn, early []byte, w *responseWriter) *conn {
	c := &conn{Conn: nc, rec: r, e: w.e, early: early}
	c.in.fromClient = true
	c.in.mode = modeRaw
	if isUpgrade(w.req.Header, "websocket") {
		c.in.mode = modeFrames
	}
	c.out.mode = modeHead
	if w.wroteHeader {
		c.out.mode = modeRaw
		if c.in.mode == modeFrames && r.statusOf(w.e) == http.StatusSwitchingProtocols {
			c.out.mode = modeFrames
			r.setKind(w.e, KindWebSocket)
		}
	}
	return c
}

func (c *conn) Read(p []byte) (int, error) {
	c.inMu.Lock()
	if len(c.early) > 0 {
		n := copy(p, c.early)
		c.early = c.early[n:]
		c.record(&c.in, p[:n])
		c.inMu.Unlock()
		return n, nil
	}
	c.inMu.Unlock()
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.inMu.Lock()
		c.record(&c.in, p[:n])
		c.inMu.Unlock()
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.outMu.Lock()
		c.record(&c.out, p[:n])
		c.outMu.Unlock()
	}
	return n, err
}

// Close closes the connection and ends the exchange.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.rec.end(c.e, true) })
	return err
}

// CloseWrite half-closes the connection when it can (TCP).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// record takes p, bytes that went one way, with that direction's lock
// held.
func (c *conn) record(s *stream, p []byte) {
	if s.mode == modeHead {
		p = c.readHead(s, p)
	}
	if len(p) == 0 {
		return
	}
	body := &c.e.ex.ResponseBody
	if s.fromClient {
		body = &c.e.ex.RequestBody
	}
	if s.mode == modeFrames {
		c.rec.countBody(c.e, body, int64(len(p)))
		s.ws.feed(p, c.rec, c.e, s.fromClient)
		return
	}
	c.rec.appendBody(c.e, body, p, -1)
}

// readHead collects the response head the handler writes on the
// connection and records it; it returns the bytes after the head.
func (c *conn) readHead(s *stream, p []byte) []byte {
	from := len(s.head)
	s.head = append(s.head, p...)
	i := bytes.Index(s.head, []byte("\r\n\r\n"))
	if i < 0 {
		if len(s.head) > maxHead {
			s.mode = modeRaw
			rest := s.head
			s.head = nil
			return rest
		}
		return nil
	}
	all := s.head
	head, rest := all[:i+4], p[i+4-from:]
	s.head = nil
	s.mode = modeRaw
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), nil)
	if err != nil {
		return all
	}
	resp.Body.Close()
	ws := resp.StatusCode == http.StatusSwitchingProtocols && strings.EqualFold(resp.Header.Get("Upgrade"), "websocket")
	if ws {
		s.mode = modeFrames
	}
	c.rec.gotRawHeader(c.e, resp.StatusCode, resp.Header, ws)
	return rest
}

// gotRawHeader records a response head written on a hijacked connection.
func (r *Recorder) gotRawHeader(e *entry, code int, h http.Header, ws bool) {
	kept := r.maskHeader(h)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.ex.Status == 0 {
		e.ex.Status = code
		e.ex.HeaderTime = r.now().Sub(e.ex.Start)
	}
	e.ex.ResponseHeader = kept
	if ws {
		e.ex.Kind = KindWebSocket
	}
	r.growLocked(e, headerCost(kept))
	r.notifyLocked(e)
}

// countBody counts n bytes of b without keeping them.
func (r *Recorder) countBody(e *entry, b *Body, n int64) {
	r.mu.Lock()
	b.Size += n
	r.mu.Unlock()
}

func (r *Recorder) statusOf(e *entry) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return e.ex.Status
}

func (r *Recorder) setKind(e *entry, k Kind) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.ex.Kind = k
}

// isUpgrade reports whether h asks to upgrade to protocol.
func isUpgrade(h http.Header, protocol string) bool {
	if !websocket.HeaderHasToken(h, "Connection", "upgrade") {
		return false
	}
	return websocket.HeaderHasToken(h, "Upgrade", protocol)
}
