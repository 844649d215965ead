package tunnel

import (
	"bufio"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/internal/yamux"
	"github.com/http-tunnel/tunnel/protocol"
)

// muxSession is an agent connection in mux mode: every stream the gateway
// opens is one public connection for Accept.
type muxSession struct {
	l       *Listener
	ws      agentLink // the raw transport or a WebSocket
	mux     *yamux.Session
	est     *protocol.ConnectionEstablished
	gateway string // the gateway's URL, redacted, for events

	// handled counts the streams from the gateway that were handed to
	// Accept or dropped; settled has a value when it changes. drain waits
	// for the streams the gateway opened before it acknowledged.
	handled atomic.Uint64
	settled chan struct{}
}

var _ agentSession = (*muxSession)(nil)

func (s *muxSession) start() {
	s.settled = make(chan struct{}, 1)
	go s.acceptLoop()
	go s.heartbeat()
}

func (s *muxSession) done() <-chan struct{} { return s.mux.CloseChan() }

func (s *muxSession) lost() error { return errConnectionLost }

func (s *muxSession) goingAway() <-chan struct{} { return s.mux.RemoteGoAwayChan() }

// heartbeat pings the gateway every heartbeat interval, reporting the
// round trip, and closes the connection when a ping fails (yamux's own
// keepalive is off for the agent so that the round trip can be observed).
func (s *muxSession) heartbeat() {
	l := s.l
	t := time.NewTicker(orDefault(l.opts.heartbeat, DefaultHeartbeat))
	defer t.Stop()
	for {
		select {
		case <-s.mux.CloseChan():
			return
		case <-t.C:
		}
		rtt, err := s.mux.Ping()
		if err != nil {
			if !s.mux.IsClosed() {
				l.log.Warn("tunnel heartbeat failed; reconnecting", slog.String("tunnel_id", s.est.TunnelID), slog.Any("err", err))
				s.mux.Close()
			}
			return
		}
		l.emit(Event{Kind: EventHeartbeat, TunnelID: s.est.TunnelID, URL: s.est.PublicURL, Gateway: s.gateway, RTT: rtt})
	}
}

// acceptLoop hands the streams the gateway opens to Accept. From protocol
// version 2 on each stream starts with a PROXY header naming its client,
// read on a goroutine of the stream's own so that a stream slow to send it
// holds up no other.
func (s *muxSession) acceptLoop() {
	for {
		st, err := s.mux.AcceptStream()
		if err != nil {
			return
		}
		if s.est.Version < 2 {
			ok := s.handOver(st, unknownAddr, nil)
			s.done1()
			if !ok {
				return
			}
			continue
		}
		go func() {
			defer s.done1()
			st.SetReadDeadline(time.Now().Add(proxyHeaderTimeout))
			client, rest, err := protocol.ReadProxyHeader(st)
			st.SetReadDeadline(time.Time{})
			if err != nil {
				s.l.log.Warn("tunnel: gateway stream without a valid PROXY header; closing it", slog.String("tunnel_id", s.est.TunnelID), slog.Any("err", err))
				st.Close()
				return
			}
			s.handOver(st, addrOf(client), rest)
		}()
	}
}

// done1 counts one stream from the gateway as handled.
func (s *muxSession) done1() {
	s.handled.Add(1)
	select {
	case s.settled <- struct{}{}:
	default:
	}
}

// awaitStreams waits until every stream the gateway opened so far has been
// handed to Accept (or dropped), until deadline. After drain, that is every
// stream it will open: the gateway opens none after its acknowledgement,
// and each one it opened before arrived before it.
func (s *muxSession) awaitStreams(deadline time.Time) {
	opened := s.mux.IncomingStreams()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for s.handled.Load() < opened {
		select {
		case <-s.settled:
		case <-s.mux.CloseChan():
			return
		case <-t.C:
			return
		}
	}
}

// proxyHeaderTimeout bounds the wait for a stream's PROXY header, which the
// gateway writes as it opens the stream.
const proxyHeaderTimeout = 10 * time.Second

// handOver gives a stream to Accept, with its client's address and the
// bytes already read past its header; it reports false once the listener
// is closed.
func (s *muxSession) handOver(st net.Conn, client net.Addr, rest []byte) bool {
	l := s.l
	conn := l.track(st, client, rest)
	if conn == nil {
		return false
	}
	select {
	case l.conns <- conn:
		return true
	case <-l.closed:
		conn.Close()
		return false
	}
}

// close ends the connection cleanly (a WebSocket close handshake, or the
// raw transport's half-close), bounded to a second, so the gateway sees a
// clean departure.
func (s *muxSession) close() {
	if !s.mux.IsClosed() {
		s.ws.Close(websocket.StatusNormalClosure, "agent closing", time.Second)
	}
	s.mux.Close()
}

// drain tells the gateway that the agent is leaving, on a control stream,
// and waits for its acknowledgement: from then on the tunnel's name is
// free. It gives up after a second; the close that follows frees the
// tunnel too, only later.
func (s *muxSession) drain() {
	st, err := s.mux.OpenStream()
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
