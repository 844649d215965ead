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
	"encoding/binary"
	"io"
	"log"
	"net"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/yamux"
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

// yamux frame header layout (see yamux's spec.md): version, type, flags,
// stream ID, length. Only data frames are followed by a body of length bytes.
const (
	headerSize = 12
	typeData   = 0
)

// Conn adapts the gateway's end of a WebSocket to the byte stream yamux
// expects, sending each yamux frame as one binary message.
//
// yamux writes a data frame's header and body with two Write calls; sent
// as they come they would double the number of WebSocket messages and
// syscalls. Conn holds a data header until its body arrives and sends both
// in one message. Writes come from yamux's single send loop, but Conn does
// not rely on that: a mutex orders them.
type Conn struct {
	net.Conn
	ws *websocket.Conn

	mu      sync.Mutex
	held    bool
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
		buf:  make([]byte, 0, headerSize+32<<10),
	}
}

// Write sends p, coalescing a data frame header with its body.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held {
		c.held = false
		c.buf = append(c.buf[:headerSize], p...)
		if _, err := c.Conn.Write(c.buf); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == headerSize && p[1] == typeData && binary.BigEndian.Uint32(p[8:]) > 0 {
		c.buf = append(c.buf[:0], p...)
		c.held = true
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Close closes the WebSocket at once, without the closing handshake: yamux
// calls it when the session is already over (peer gone, keepalive failed,
// or a local Close), so there is nobody to wait for. Graceful closes go
// through the WebSocket's own Close before the session is closed.
func (c *Conn) Close() error {
	var err error
	c.closeMu.Do(func() { err = c.ws.CloseNow() })
	return err
}
