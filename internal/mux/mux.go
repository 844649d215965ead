// Package mux runs the stream multiplexer of mux mode over the agent's
// connection, a WebSocket or the raw transport: the session layer between
// the handshake and the HTTP traffic of a tunnel.
//
// Once the handshake is over, a tunnel's WebSocket carries hashicorp/yamux
// frames in binary messages; the raw transport carries them as they are. The gateway is the yamux client (it opens one stream
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

// The stream limits of a session, on each side. The gateway opens one
// stream per public connection, the agent a control stream now and then
// (a drain message); each side refuses to open more than its peer accepts,
// so a busy tunnel's session never ends on a limit.
const (
	// MaxControlStreams is the most streams the agent may have open at
	// once. An agent that opens more is hostile or broken: the gateway's
	// session ends, and Session.Err matches yamux.ErrTooManyStreams.
	MaxControlStreams = 16

	// MaxTunnelStreams is the most streams the gateway may have open to
	// one agent at once: public connections in flight on one tunnel
	// (idle keep-alive connections included). The gateway's Open fails
	// with yamux.ErrStreamLimit past it, and the connection should be
	// refused (503); the agent ends the session of a gateway that opens
	// more. Each stream can hold a StreamWindow of unread data on either
	// side, so this also bounds that memory (4 GiB at most, per tunnel).
	MaxTunnelStreams = 4096
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

// yamux returns the configuration of the gateway's side (gateway true) or
// of the agent's.
func (c Config) yamux(gateway bool) *yamux.Config {
	y := yamux.DefaultConfig()
	if gateway {
		y.MaxIncomingStreams, y.MaxOutgoingStreams = MaxControlStreams, MaxTunnelStreams
	} else {
		y.MaxIncomingStreams, y.MaxOutgoingStreams = MaxTunnelStreams, MaxControlStreams
	}
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
// the WebSocket the gateway accepted, websocket.Conn.NetConn, or the
// connection upgraded to the raw transport). The session
// owns conn: closing the session closes it. Its Open fails with
// yamux.ErrStreamLimit while MaxTunnelStreams streams are open; the session
// ends, and its Err matches yamux.ErrTooManyStreams, when the agent opens
// more than MaxControlStreams.
func Client(conn net.Conn, cfg Config) (*yamux.Session, error) {
	return yamux.Client(conn, cfg.yamux(true))
}

// Server starts the agent's side of a session over conn (the agent's
// WebSocket stream, websocket.Conn.NetConn, or its raw transport). The session owns conn. Its
// Open fails with yamux.ErrStreamLimit while MaxControlStreams streams are
// open; the session ends, with yamux.ErrTooManyStreams, when the gateway
// opens more than MaxTunnelStreams.
func Server(conn net.Conn, cfg Config) (*yamux.Session, error) {
	return yamux.Server(conn, cfg.yamux(false))
}
