package tunnel

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Listener is a net.Listener whose connections are public HTTP requests
// arriving through a gateway. Serve it with http.Serve or an http.Server.
//
// A Listener reconnects by itself when its connection to the gateway
// drops, with jittered exponential backoff, and keeps its ID and URL
// across reconnects; Accept keeps working throughout. If another agent
// holds the name when it comes back (it was away longer than the gateway's
// lease), it keeps asking for it, with backoff, and logs a warning. It
// stops for good only on Close, or when the gateway refuses the agent
// itself (ErrUnauthorized, ErrForbidden, ErrInvalidRequest): then Done is
// closed and Accept returns that error.
//
// A Listener is safe for concurrent use.
type Listener struct {
	gateways []string // agent endpoint URLs: the one given to Listen, then fallbacks
	opts     options
	log      *slog.Logger
	client   *http.Client

	conns     chan net.Conn
	closed    chan struct{} // closed by stop: Accept returns ErrClosed
	closeOnce sync.Once
	cut       chan struct{} // closed when CloseWithContext's ctx ended
	cutOnce   sync.Once
	done      chan struct{} // closed when the supervisor has returned
	err       error         // why the listener stopped; read after done is closed

	mu        sync.Mutex
	transport Transport // the one to dial: after a refused raw upgrade, TransportWebSocket
	id        string
	url       string
	resume    string
	current   *agentConn
	drained   *agentConn   // the connection stop told the gateway about
	retiring  []*agentConn // connections of gateways going away, still carrying streams

	active activity // connections handed out by Accept and not yet closed
	events eventQueue
}

var _ net.Listener = (*Listener)(nil)

// Accept waits for and returns the next public connection. After Close it
// returns ErrClosed (which matches net.ErrClosed); after the listener
// stopped because the gateway refused to resume the tunnel, that error.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, ErrClosed
	case <-l.done:
		if l.err != nil {
			return nil, l.err
		}
		return nil, ErrClosed
	}
}

// Close stops the listener, as Close does for every net.Listener: the
// gateway stops routing new requests to the tunnel and frees its name, and
// Accept returns ErrClosed once it has handed out the connections the
// gateway sent before that (at once when there are none; at most 2 s
// later), so that no request routed here is lost. Connections that Accept
// returned live on until they are closed, so that http.Server.Shutdown can
// finish them; the connection to the gateway closes when the last of them has
// (or when it breaks), and then Done is closed. Use CloseWithContext to
// wait for that, or to bound it. Closing a closed Listener does nothing.
func (l *Listener) Close() error {
	l.stop()
	return nil
}

// CloseWithContext is Close, and then waits until the connections Accept
// returned have all been closed and the connection to the gateway with
// them. If ctx ends first, it cuts the connection to the gateway, which
// ends those connections too (their public clients get 502), and returns
// ctx's error.
func (l *Listener) CloseWithContext(ctx context.Context) error {
	l.stop()
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		l.cutOnce.Do(func() { close(l.cut) })
		<-l.done
		return ctx.Err()
	}
}

// stop stops accepting: it tells the gateway that the agent is leaving (no
// new requests arrive, and the name is free), then makes Accept return
// ErrClosed. The supervisor closes the connection to the gateway later, in
// finish.
//
// The gateway acknowledges drain once it opens no more streams to the
// agent, and the streams it opened before are its last requests for this
// agent: Accept hands them out before it returns ErrClosed, on a goroutine
// of their own, so that Close does not wait for the program's Accept
// (http.Server.Shutdown holds the server's lock while it closes its
// listeners, which its Serve loop needs to take a connection).
func (l *Listener) stop() {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		c := l.current
		l.drained = c
		l.mu.Unlock()
		if c.isClosed() {
			l.endAccept()
			return
		}
		c.drain()
		go func() {
			c.awaitStreams(time.Now().Add(drainHandOverTimeout))
			l.endAccept()
		}()
	})
}

// endAccept makes Accept return ErrClosed.
func (l *Listener) endAccept() {
	close(l.closed)
	l.active.close()
}

// drainHandOverTimeout bounds how long Accept goes on handing out, after
// Close, the connections the gateway sent before it acknowledged: a
// program that no longer calls Accept must not keep them waiting.
const drainHandOverTimeout = 2 * time.Second

// finish ends c, the listener's connection when it was closed, once the
// connections Accept handed out have all been closed, c has ended by
// itself, or CloseWithContext's ctx has ended (cut).
func (l *Listener) finish(c *agentConn) {
	l.mu.Lock()
	drained := l.drained == c
	l.mu.Unlock()
	if !drained && !c.isClosed() {
		// A reconnect that raced stop: this connection was not told.
		c.drain()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.cut:
		case <-c.done():
		case <-ctx.Done():
		}
		cancel()
	}()
	l.active.wait(ctx)
	c.close()
	l.mu.Lock()
	retiring := slices.Clone(l.retiring)
	l.mu.Unlock()
	for _, r := range retiring {
		r.close()
	}
}

// Done returns a channel that is closed when the listener has stopped for
// good: after Close, once its connection to the gateway has closed, or when
// the gateway refused to resume the tunnel.
func (l *Listener) Done() <-chan struct{} { return l.done }

// Err returns why the listener stopped: nil while it runs and after Close,
// the gateway's refusal otherwise.
func (l *Listener) Err() error {
	select {
	case <-l.done:
		return l.err
	default:
		return nil
	}
}

// Addr returns the tunnel's address: network "tunnel", its public URL.
func (l *Listener) Addr() net.Addr { return tunnelAddr(l.URL()) }

// URL returns the tunnel's public URL, such as "https://abc.example.com" or
// "http://127.0.0.1:8080/abc" for path routing. It does not end in a slash:
// append request paths to it.
func (l *Listener) URL() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.url
}

// ID returns the tunnel's ID, its subdomain label and path segment.
func (l *Listener) ID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id
}

// tunnelAddr is the net.Addr of a tunnel: its public URL.
type tunnelAddr string

func (tunnelAddr) Network() string  { return "tunnel" }
func (a tunnelAddr) String() string { return string(a) }

// track wraps a stream for Accept, counting it in l.active until it is
// closed: client is its remote address, and rest the stream's first bytes,
// already read. It returns nil, having closed c, once the listener no
// longer hands out connections.
func (l *Listener) track(c net.Conn, client net.Addr, rest []byte) net.Conn {
	if !l.active.enter() {
		c.Close()
		return nil
	}
	return &trackedConn{Conn: c, local: tunnelAddr(l.URL()), remote: client, rest: rest, release: l.active.leave}
}

// unknownAddr is the remote address of a connection whose public client
// the gateway did not name (a gateway of protocol version 1): the
// unspecified address, port 0, which net.SplitHostPort still parses.
var unknownAddr net.Addr = &net.TCPAddr{IP: net.IPv4zero}

// addrOf returns a client address as a net.Addr: unknownAddr if invalid.
func addrOf(a netip.AddrPort) net.Addr {
	if !a.IsValid() {
		return unknownAddr
	}
	return net.TCPAddrFromAddrPort(a)
}

// trackedConn is a stream handed out by Accept.
type trackedConn struct {
	net.Conn
	local, remote net.Addr
	rest          []byte // read from the stream before Accept: served first
	once          sync.Once
	release       func()
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// LocalAddr returns the tunnel's address: network "tunnel", its public URL.
func (c *trackedConn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the public client's address, a *net.TCPAddr: the one
// the gateway determined (the client's TCP peer address, or behind a
// proxy it trusts the last X-Forwarded-For address, with port 0). It is
// 0.0.0.0:0 when the gateway did not say (protocol version 1).
func (c *trackedConn) RemoteAddr() net.Addr { return c.remote }
