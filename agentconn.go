package tunnel

import (
	"time"

	"github.com/http-tunnel/tunnel/protocol"
)

// agentConn is one connection of a Listener to the gateway: the handshake's
// answer and the session of the mode the gateway chose.
type agentConn struct {
	agentSession
	est       *protocol.ConnectionEstablished
	gateway   int       // index in Listener.gateways
	transport Transport // TransportRaw or TransportWebSocket
}

// agentSession is what the supervisor and the Listener need of a
// connection's session, whatever its mode: mux mode (muxSession) or json
// mode (jsonSession).
type agentSession interface {
	// start begins handing the connection's public requests to Accept,
	// on goroutines of the session's own.
	start()
	// done returns a channel closed when the connection has ended and the
	// supervisor must reconnect.
	done() <-chan struct{}
	// lost says why done was closed: errConnectionLost, or
	// errLifetimeReached for a planned reconnect.
	lost() error
	// goingAway returns a channel closed when the gateway says it is going
	// away: the agent moves, and this connection goes on for what it
	// carries until the gateway closes it. Nil for a mode without it.
	goingAway() <-chan struct{}
	// drain tells the gateway the agent is leaving, so that its name is
	// free at once; it returns when the gateway acknowledged, or within a
	// second.
	drain()
	// awaitStreams waits, until deadline, for Accept to take the public
	// connections the gateway sent before it acknowledged drain: they
	// were routed here, and are this agent's to serve.
	awaitStreams(deadline time.Time)
	// close ends the connection, cutting the requests it still carries.
	close()
}

// isClosed reports whether c's connection has ended.
func (c *agentConn) isClosed() bool {
	select {
	case <-c.done():
		return true
	default:
		return false
	}
}
