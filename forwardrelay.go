package tunnel

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/http-tunnel/tunnel/internal/h1relay"
	"github.com/http-tunnel/tunnel/observability"
)

// RequestLog describes a request a Forwarder forwarded, once its response
// has ended: see WithRequestLog.
type RequestLog struct {
	Method string
	// Target is the request-target as the gateway sent it: the path and
	// the query, which may hold secrets.
	Target string
	// Status is the final status sent back; 0 if there was none (the
	// public client left first). 101 for an upgrade, reported when the
	// upgraded connection ends.
	Status int
	// Duration runs from the request's arrival at the agent to the end
	// of its response.
	Duration time.Duration
}

// WithRequestLog makes Forward call fn as each request it forwards ends,
// on the goroutine that served it: fn should return promptly. It is the
// cheap way to log requests; WithInspector records them whole. Listen
// ignores it. Default: none.
func WithRequestLog(fn func(RequestLog)) Option {
	return func(o *options) { o.requestLog = fn }
}

// logRequests wraps a Forwarder's handler so that fn hears of each
// request as it ends.
func logRequests(h http.Handler, fn func(RequestLog)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		fn(RequestLog{Method: r.Method, Target: r.RequestURI, Status: sw.status, Duration: time.Since(start)})
	})
}

// relayable reports whether Forward can relay to the local service as
// bytes (the h1relay package) instead of through an http.Server and a
// ReverseProxy: the service speaks HTTP/1.1 without TLS, the request's
// target is sent as it came (no path or query to join), and nothing
// wants each request parsed (an inspector records them). Tracing is
// decided per stream (serveRelay).
func relayable(local *url.URL, h2c bool, o *options) bool {
	return local.Scheme == "http" && !h2c && (local.Path == "" || local.Path == "/") &&
		local.RawQuery == "" && local.User == nil && o.inspect == nil
}

// startRelay makes f relay its streams to the local service with h1relay,
// handing to f.srv (serving the returned listener) the streams it cannot:
// those while spans are recorded, and those of json mode, whose close is
// seen only by reading.
func (f *Forwarder) startRelay() net.Listener {
	ln := f.ln
	addr := net.JoinHostPort(f.local.Hostname(), cmp.Or(f.local.Port(), "80"))
	f.relay = &h1relay.Relay{
		Dial:    func(ctx context.Context) (net.Conn, error) { return localDialer.DialContext(ctx, "tcp", addr) },
		Buffers: proxyBuffers,
		Fail:    f.localFailed,
	}
	if ln.opts.rewriteHost {
		f.relay.Host = f.local.Host
	}
	if fn := ln.opts.requestLog; fn != nil {
		f.relay.Done = func(method, target string, status int, d time.Duration) {
			fn(RequestLog{Method: method, Target: target, Status: status, Duration: d})
		}
	}
	rest := &connQueue{conns: make(chan net.Conn), closed: make(chan struct{}), addr: ln.Addr()}
	f.relayDone = make(chan struct{})
	go f.serveRelay(rest)
	return rest
}

// serveRelay accepts the Listener's streams and relays each, or hands it
// to rest, until the Listener closes.
func (f *Forwarder) serveRelay(rest *connQueue) {
	defer close(f.relayDone)
	defer rest.Close()
	tp := f.ln.opts.tracerProvider
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		var pc h1relay.PeerCloser
		if tc, ok := c.(*trackedConn); ok {
			pc, _ = tc.Conn.(h1relay.PeerCloser)
		}
		if pc == nil || observability.Tracing(tp) {
			rest.push(c)
			continue
		}
		f.relayed.Add(1)
		go func() {
			defer f.relayed.Done()
			if err := f.relay.Serve(c, pc); err != nil {
				// What was not answered was logged with an error id (Fail);
				// this is the end of a connection past that point.
				f.ln.log.Debug("tunnel: relayed connection ended", slog.String("tunnel_id", f.ln.ID()), slog.Any("err", err))
			}
		}()
	}
}

// closeRelay ends the relay, cutting what it still serves, and waits for
// its goroutines.
func (f *Forwarder) closeRelay() {
	if f.relay == nil {
		return
	}
	f.relay.Close()
	<-f.relayDone
	f.relayed.Wait()
}

// connQueue is a net.Listener of the connections pushed to it.
type connQueue struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func (q *connQueue) push(c net.Conn) {
	select {
	case q.conns <- c:
	case <-q.closed:
		c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
