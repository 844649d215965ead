// Package mux runs the stream multiplexer of mux mode over a WebSocket: the
// session layer between the handshake and the HTTP traffic of a tunnel.
//
// A tunnel's WebSocket carries hashicorp/yamux frames in binary messages once
// the handshake is over. The gateway is the yamux client (it opens one stream
// per HTTP connection to the agent); the agent is the yamux server. Streams
// the agent opens are control streams (see protocol/spec.md).
package mux

import (
	"io"
	"log"
	"net"
	"time"

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

// Client starts the gateway's side of a session over conn (the stream of
// the WebSocket the gateway accepted, websocket.Conn.NetConn). The session
// owns conn: closing the session closes it.
func Client(conn net.Conn, cfg Config) (*yamux.Session, error) {
	return yamux.Client(conn, cfg.yamux())
}

// Server starts the agent's side of a session over conn (the agent's
// WebSocket stream, websocket.Conn.NetConn). The session owns conn.
func Server(conn net.Conn, cfg Config) (*yamux.Session, error) {
	return yamux.Server(conn, cfg.yamux())
}
