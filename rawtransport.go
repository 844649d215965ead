package tunnel

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/protocol"
)

// Transport is how an agent's connection to the gateway carries mux mode:
// on the connection itself after an HTTP/1.1 Upgrade (TransportRaw), or
// in the binary messages of a WebSocket (TransportWebSocket). Json mode,
// for gateways behind API Gateway, always runs over a WebSocket.
type Transport string

// The transports WithTransport takes.
const (
	// TransportAuto asks for the raw transport first and, when the
	// gateway or something in front of it refuses the upgrade, opens a
	// WebSocket at once and keeps to WebSocket for the Listener's
	// reconnects. It is the default.
	TransportAuto Transport = "auto"
	// TransportRaw asks for the raw transport only: a refused upgrade
	// is an error, as a refused WebSocket is.
	TransportRaw Transport = "raw"
	// TransportWebSocket opens a WebSocket only, as agents did before the
	// raw transport existed.
	TransportWebSocket Transport = "websocket"
)

// WithTransport chooses the transport to the gateway: TransportAuto (the
// default; also what the empty Transport means), TransportRaw or
// TransportWebSocket. Listen refuses any other value (ErrInvalidRequest).
// The transport in use is in EventConnected's Transport.
func WithTransport(t Transport) Option { return func(o *options) { o.transport = t } }

// defaultTransport is the transport of a Listener without WithTransport:
// TransportAuto. The tests of this package set it from the environment
// (TUNNEL_TEST_TRANSPORT), to run the whole suite over one transport.
var defaultTransport = TransportAuto

// validTransport reports whether t is one WithTransport takes.
func validTransport(t Transport) bool {
	switch t {
	case "", TransportAuto, TransportRaw, TransportWebSocket:
		return true
	}
	return false
}

// agentLink is the connection between an agent and its gateway as the
// handshake and a mux-mode session use it: a WebSocket (*websocket.Conn)
// or the raw transport (*rawLink). The handshake's messages are JSON text
// messages of the one, lines of the other.
type agentLink interface {
	Subprotocol() string
	ReadMessage(limit int) (byte, []byte, error)
	WriteMessage(op byte, p []byte) error
	// NetConn returns the byte stream the yamux session runs over.
	NetConn() net.Conn
	// Close ends the connection cleanly: a WebSocket sends a close frame
	// with code and reason, the raw transport half-closes (TCP FIN, or a
	// TLS close_notify); either waits up to wait for the peer to end its
	// side before it closes the connection.
	Close(code int, reason string, wait time.Duration) error
	// CloseAndDrain is Close for a connection nobody else reads.
	CloseAndDrain(code int, reason string, wait time.Duration) error
	CloseNow() error
}

var (
	_ agentLink = (*websocket.Conn)(nil)
	_ agentLink = (*rawLink)(nil)
)

// transportOf returns the transport of a link.
func transportOf(l agentLink) Transport {
	if _, ok := l.(*rawLink); ok {
		return TransportRaw
	}
	return TransportWebSocket
}

// rawReadBuffer is the read buffer of a raw link, which the yamux session
// reads through (rawLink.ReadIsBuffered): as large as a WebSocket's.
const rawReadBuffer = 64 << 10

// rawLink is a connection upgraded to the raw transport. Before the
// session starts it reads and writes the handshake's lines; then it is the
// yamux session's byte stream (NetConn, a rawStream). Only the
// session's send loop writes then, so writes need no framing, but they are
// serialized with the half-close of Close so that a FIN never cuts a frame.
type rawLink struct {
	conn net.Conn      // the TCP or TLS connection, for writes, deadlines and half-close
	br   *bufio.Reader // reads: bytes the HTTP layer had buffered first, then conn
	rc   io.Closer     // what closes the connection (the response body, on the agent)

	wmu         sync.Mutex
	vec         net.Buffers // a batch of parts, for one writev on TCP
	writeClosed bool

	peerDone  chan struct{} // closed when reading has ended: the peer's FIN, or an error
	peerOnce  sync.Once
	closeOnce sync.Once
}

func newRawLink(conn net.Conn, r io.Reader, rc io.Closer) *rawLink {
	return &rawLink{conn: conn, br: bufio.NewReaderSize(r, rawReadBuffer), rc: rc, peerDone: make(chan struct{})}
}

// Subprotocol returns mux mode's name: the raw transport carries nothing
// else.
func (c *rawLink) Subprotocol() string { return protocol.SubprotocolMux }

// ReadMessage reads one handshake line of at most limit bytes, without its
// '\n'; the type is always text. A longer line is protocol.ErrTooLarge.
func (c *rawLink) ReadMessage(limit int) (byte, []byte, error) {
	// Peek, so that a line over the limit is refused as soon as its
	// first limit+1 bytes are in, not once the buffer is full.
	n := 1
	for {
		data, err := c.br.Peek(min(max(n, c.br.Buffered()), limit+1))
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line := bytes.Clone(data[:i])
			c.br.Discard(i + 1)
			return websocket.OpText, line, nil
		}
		if len(data) > limit {
			return 0, nil, protocol.ErrTooLarge
		}
		if err != nil {
			return 0, nil, c.readErr(err)
		}
		n = len(data) + 1
	}
}

// WriteMessage writes p, a handshake message, as one line.
func (c *rawLink) WriteMessage(_ byte, p []byte) error {
	_, err := c.Write(append(p[:len(p):len(p)], '\n'))
	return err
}

// NetConn returns the link as the session's byte stream.
func (c *rawLink) NetConn() net.Conn { return rawStream{c} }

// rawStream is a raw link as a net.Conn, the yamux session's byte stream.
// Its Close closes at once: yamux calls it when the session is already
// over. Graceful closes go through rawLink.Close first.
type rawStream struct{ *rawLink }

var _ net.Conn = rawStream{}

func (s rawStream) Close() error { return s.CloseNow() }

// Read reads the stream, past what the handshake read.
func (c *rawLink) Read(p []byte) (int, error) {
	n, err := c.br.Read(p)
	if err != nil {
		err = c.readErr(err)
	}
	return n, err
}

// readErr records that reading has ended, unless at a deadline, which ends
// nothing.
func (c *rawLink) readErr(err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		c.peerOnce.Do(func() { close(c.peerDone) })
	}
	return err
}

// ReadIsBuffered reports that reads are buffered here, so that the yamux
// session puts no buffer of its own in front.
func (c *rawLink) ReadIsBuffered() bool { return true }

func (c *rawLink) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writeClosed {
		return 0, net.ErrClosed
	}
	return c.conn.Write(p)
}

// WriteParts writes parts back to back, in one system call on TCP
// (writev): the yamux session hands a frame's header and body, or several
// queued frames, in one call. On any other connection (TLS) the small parts
// are joined, up to a TLS record's 16 KiB, in a pooled buffer, so that a
// frame's header and a small body leave in one record, and a large part is
// written as it is: nothing is allocated or kept for the link's life.
func (c *rawLink) WriteParts(parts [][]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writeClosed {
		return net.ErrClosed
	}
	if tc, ok := c.conn.(*net.TCPConn); ok {
		c.vec = append(c.vec[:0], parts...)
		v := c.vec
		_, err := v.WriteTo(tc)
		clear(c.vec)
		return err
	}
	buf := joinBuffers.Get().(*[joinMax]byte)
	defer joinBuffers.Put(buf)
	n := 0
	for _, p := range parts {
		if n > 0 && n+len(p) > joinMax {
			if _, err := c.conn.Write(buf[:n]); err != nil {
				return err
			}
			n = 0
		}
		if len(p) >= joinMax {
			if _, err := c.conn.Write(p); err != nil {
				return err
			}
			continue
		}
		n += copy(buf[n:], p)
	}
	if n > 0 {
		_, err := c.conn.Write(buf[:n])
		return err
	}
	return nil
}

// joinMax is the most WriteParts joins into one write: a TLS record's
// payload.
const joinMax = 16 << 10

// joinBuffers lends WriteParts its buffers.
var joinBuffers = sync.Pool{New: func() any { return new([joinMax]byte) }}

// closeWrite ends the writing side: no frame is cut, and nothing more is
// written.
func (c *rawLink) closeWrite() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writeClosed {
		return
	}
	c.writeClosed = true
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		cw.CloseWrite()
	}
}

// Close half-closes the connection once the write in progress, if any, is
// done, waits for the peer to close its side (read by whoever is reading),
// then closes it; all of it within wait, so that a peer that stopped
// reading, and holds a write up, cannot hold Close up too. With wait zero it
// closes at once. The raw transport has no close codes: code and reason
// are for a WebSocket's close frame.
func (c *rawLink) Close(_ int, _ string, wait time.Duration) error {
	if wait <= 0 {
		return c.CloseNow()
	}
	half := make(chan struct{})
	go func() {
		// Once CloseNow has closed the connection, a stuck write returns
		// and this goroutine ends.
		c.closeWrite()
		close(half)
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-half:
		select {
		case <-c.peerDone:
		case <-t.C:
		}
	case <-t.C:
	}
	return c.CloseNow()
}

// CloseAndDrain half-closes the connection, then reads and discards what
// the peer still sends until it closes its side, for at most wait: the
// peer reads the last message (an error) before the connection closes.
func (c *rawLink) CloseAndDrain(_ int, _ string, wait time.Duration) error {
	c.closeWrite()
	c.conn.SetReadDeadline(time.Now().Add(wait))
	io.Copy(io.Discard, io.LimitReader(c.br, 1<<20))
	return c.CloseNow()
}

// CloseNow closes the connection at once.
func (c *rawLink) CloseNow() error {
	var err error
	c.closeOnce.Do(func() { err = c.rc.Close() })
	return err
}

// LocalAddr, RemoteAddr and the deadlines are the connection's.
func (c *rawLink) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *rawLink) RemoteAddr() net.Addr               { return c.conn.RemoteAddr() }
func (c *rawLink) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *rawLink) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *rawLink) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// errUpgradeRefused is wrapped by dialRaw's error when the answer to the
// upgrade says that the way to the gateway does not pass the raw
// transport: the agent opens a WebSocket instead.
var errUpgradeRefused = errors.New("the raw transport's upgrade was refused")

// errUpgradeUnanswered is wrapped by dialRaw's error when the upgrade
// request was sent and nothing answered it within the time allowed: some
// proxies hold requests with a token they do not know. The agent tries a
// WebSocket in the same attempt, and keeps to WebSocket only if that
// connects (a gateway that is merely slow would be slow to both).
var errUpgradeUnanswered = errors.New("the raw transport's upgrade got no answer")
