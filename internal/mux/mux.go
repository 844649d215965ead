// Package mux runs the stream multiplexer of mux mode over a WebSocket: the
// session layer between the handshake and the HTTP traffic of a tunnel.
//
// A tunnel's WebSocket carries hashicorp/yamux frames in binary messages once
// the handshake is over. The gateway is the yamux client (it opens one stream
// per HTTP connection to the agent); the agent is the yamux server. Streams
// the agent opens are control streams (see protocol/spec.md).
package mux

import (
	"context"
	"io"
	"log"
	"net"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/http-tunnel/tunnel/internal/yamux"
)

// StreamWindow is the flow-control window of one stream. yamux's default of
// 256 KiB caps a single stream at one window per round trip; 1 MiB keeps
// bulk transfers fast while bounding what a slow reader can make its peer
// buffer.
const StreamWindow = 1 << 20

// Config describes a session. The zero value is valid.
type Config struct {
	// Heartbeat is the interval of yamux keepalive pings. A session whose
	// peer does not answer is closed. Zero means 15 s.
	Heartbeat time.Duration
	// Logger receives the multiplexer's own log lines. Nil discards them.
	Logger *log.Logger
	// ManualKeepAlive turns yamux's own keepalive off: the caller pings
	// with Session.Ping every Heartbeat (to observe round-trip times) and
	// closes the session when a ping fails.
	ManualKeepAlive bool
}

func (c Config) yamux() *yamux.Config {
	y := yamux.DefaultConfig()
	y.AcceptBacklog = 1024
	y.EnableKeepAlive = !c.ManualKeepAlive
	y.KeepAliveInterval = c.Heartbeat
	if y.KeepAliveInterval <= 0 {
		y.KeepAliveInterval = 15 * time.Second
	}
	y.ConnectionWriteTimeout = 10 * time.Second
	y.MaxStreamWindowSize = StreamWindow
	y.StreamCloseTimeout = time.Minute
	if c.Logger != nil {
		y.Logger = c.Logger
	} else {
		y.LogOutput = io.Discard
	}
	return y
}

// Client starts the gateway's side of a session over conn (a NewConn). The
// session owns conn: closing the session closes it.
func Client(conn net.Conn, cfg Config) (*yamux.Session, error) {
	return yamux.Client(conn, cfg.yamux())
}

// Server starts the agent's side of a session over conn (the agent's
// WebSocket stream, wsclient.Conn.NetConn). The session owns conn.
func Server(conn net.Conn, cfg Config) (*yamux.Session, error) {
	return yamux.Server(conn, cfg.yamux())
}

// Conn adapts the gateway's end of a WebSocket to the byte stream yamux
// expects. The session sends a frame's header and body, or several queued
// frames, through WriteParts as one binary message.
type Conn struct {
	net.Conn
	ws *websocket.Conn

	mu      sync.Mutex
	buf     []byte
	closeMu sync.Once
}

// NewConn returns a net.Conn over ws for a yamux session. Reads and writes
// are not bounded by a context: the session's own keepalive and write
// timeout detect a dead peer, and Close ends them.
func NewConn(ws *websocket.Conn) *Conn {
	return &Conn{
		Conn: websocket.NetConn(context.Background(), ws, websocket.MessageBinary),
		ws:   ws,
	}
}

// WriteParts sends parts back to back as one binary message: the yamux
// session writes a frame's header and body, or several queued frames, with
// one call. Up to maxKeptBuffer bytes are joined in the Conn's buffer and
// sent as one frame; larger messages (bulk uploads, up to a stream window)
// are streamed as one frame per part, so that no buffer of that size is
// allocated or kept.
func (c *Conn) WriteParts(parts [][]byte) error {
	if len(parts) == 1 {
		_, err := c.Conn.Write(parts[0])
		return err
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > maxKeptBuffer {
		return c.writeStreamed(parts)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = c.buf[:0]
	for _, p := range parts {
		c.buf = append(c.buf, p...)
	}
	_, err := c.Conn.Write(c.buf)
	return err
}

// writeStreamed sends parts as the frames of one message.
func (c *Conn) writeStreamed(parts [][]byte) error {
	w, err := c.ws.Writer(context.Background(), websocket.MessageBinary)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// maxKeptBuffer bounds the buffer a Conn joins a message's parts in.
const maxKeptBuffer = 64 << 10

// Close closes the WebSocket at once, without the closing handshake: yamux
// calls it when the session is already over (peer gone, keepalive failed,
// or a local Close), so there is nobody to wait for. Graceful closes go
// through the WebSocket's own Close before the session is closed.
func (c *Conn) Close() error {
	var err error
	c.closeMu.Do(func() { err = c.ws.CloseNow() })
	return err
}
