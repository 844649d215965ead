package tunnel

import (
	"bufio"
	"log/slog"
	"time"

	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/internal/yamux"
	"github.com/http-tunnel/tunnel/protocol"
)

// agentConn is one connection of a Listener to the gateway, in mux mode
// (mux set) or json mode (json set).
type agentConn struct {
	ws      *websocket.Conn
	mux     *yamux.Session
	json    *jsonSession
	est     *protocol.ConnectionEstablished
	gateway int // index in Listener.gateways
}

// closed returns a channel closed when the connection has ended and the
// supervisor must reconnect.
func (c *agentConn) closed() <-chan struct{} {
	if c.json != nil {
		return c.json.done
	}
	return c.mux.CloseChan()
}

// isClosed reports whether closed() is closed.
func (c *agentConn) isClosed() bool {
	select {
	case <-c.closed():
		return true
	default:
		return false
	}
}

// heartbeat pings the gateway every heartbeat interval, reporting the
// round trip, and closes the connection when a ping fails (yamux's own
// keepalive is off for the agent so that the round trip can be observed).
func (l *Listener) heartbeat(c *agentConn) {
	t := time.NewTicker(orDefault(l.opts.heartbeat, DefaultHeartbeat))
	defer t.Stop()
	for {
		select {
		case <-c.mux.CloseChan():
			return
		case <-t.C:
		}
		rtt, err := c.mux.Ping()
		if err != nil {
			if !c.mux.IsClosed() {
				l.log.Warn("tunnel heartbeat failed; reconnecting", slog.String("tunnel_id", c.est.TunnelID), slog.Any("err", err))
				c.mux.Close()
			}
			return
		}
		l.emit(Event{Kind: EventHeartbeat, TunnelID: c.est.TunnelID, URL: c.est.PublicURL, Gateway: redact(l.gateways[c.gateway]), RTT: rtt})
	}
}

// acceptLoop hands the streams the gateway opens on c to Accept.
func (l *Listener) acceptLoop(c *agentConn) {
	for {
		st, err := c.mux.AcceptStream()
		if err != nil {
			return
		}
		conn := l.active.track(st, tunnelAddr(l.URL()))
		select {
		case l.conns <- conn:
		case <-l.closed:
			conn.Close()
			return
		}
	}
}

// close ends the connection with a WebSocket close handshake, bounded to a
// second, so the gateway sees a clean departure.
func (c *agentConn) close() {
	if c.json != nil {
		c.json.close()
		return
	}
	if !c.mux.IsClosed() {
		c.ws.Close(websocket.StatusNormalClosure, "agent closing", time.Second)
	}
	c.mux.Close()
}

// drain tells the gateway that the agent is leaving, on a control stream,
// and waits for its acknowledgement: from then on the tunnel's name is
// free. It gives up after a second; the close that follows frees the
// tunnel too, only later. Json mode has no drain: the close frees it.
func (c *agentConn) drain() {
	if c.json != nil {
		return
	}
	st, err := c.mux.OpenStream()
	if err != nil {
		return
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(time.Second))
	b, err := protocol.Marshal(&protocol.Drain{})
	if err != nil {
		return
	}
	if _, err := st.Write(append(b, '\n')); err != nil {
		return
	}
	line, err := readLine(bufio.NewReaderSize(st, 64), protocol.MaxControlBytes)
	if err != nil {
		return
	}
	protocol.Unmarshal(line, protocol.MaxControlBytes)
}
