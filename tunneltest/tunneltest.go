// Package tunneltest runs an in-process tunnel gateway for Go tests: a test
// exposes a handler at a public URL in two lines, on loopback, with no
// account and nothing left running when the test ends.
//
//	url := tunneltest.Expose(t, handler)
//	resp, err := http.Get(url + "/webhook")
//
// The gateway routes by path (http://127.0.0.1:PORT/<id>/...), so the URLs
// it hands out work with a plain http.Client on any machine, including
// those where *.localhost names do not resolve.
package tunneltest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/inspector"
)

// TB is the part of testing.TB this package uses. *testing.T and
// *testing.B satisfy it, and so can the test doubles of other frameworks.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
}

// Gateway is a tunnel gateway serving on a loopback port for the duration
// of a test.
type Gateway struct {
	// Server is the running gateway. Read its fields; do not change them.
	// Restart replaces it.
	Server *tunnel.Server
	// URL is the base URL of the gateway ("http://127.0.0.1:PORT"), to
	// pass to tunnel.Listen and tunnel.Forward. It stays the same across
	// Restart.
	URL string

	newServer func() *tunnel.Server // nil for a Gateway of NewGateway
	addr      string

	mu     sync.Mutex
	ln     *dropListener
	served chan error
}

// NewGateway starts srv on a loopback port and stops it when the test and
// its subtests finish. A nil srv means a gateway with default settings,
// path routing and no log output. Set srv's fields before the call, not
// after.
func NewGateway(t TB, srv *tunnel.Server) *Gateway {
	t.Helper()
	if srv == nil {
		srv = defaultServer()
	}
	return startGateway(t, "127.0.0.1:0", srv, nil)
}

// NewGatewayAt starts a gateway at addr, a loopback host:port the test
// chooses (an OAuth provider's registered redirect URI names one, say);
// ":0" ports are chosen by the system. newServer makes the gateway (nil:
// default settings, path routing, no log output); Restart calls it again
// for the gateway that replaces this one, at the same address. The
// gateway stops when the test finishes.
func NewGatewayAt(t TB, addr string, newServer func() *tunnel.Server) *Gateway {
	t.Helper()
	if newServer == nil {
		newServer = defaultServer
	}
	return startGateway(t, addr, newServer(), newServer)
}

func defaultServer() *tunnel.Server {
	return &tunnel.Server{
		Routing: tunnel.RoutePath,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func startGateway(t TB, addr string, srv *tunnel.Server, newServer func() *tunnel.Server) *Gateway {
	g := &Gateway{newServer: newServer}
	if err := g.start(addr, srv); err != nil {
		t.Fatalf("tunneltest: %v", err)
	}
	g.URL = "http://" + g.addr
	t.Cleanup(func() {
		if err := g.stop(); err != nil {
			t.Errorf("tunneltest: gateway: %v", err)
		}
	})
	return g
}

func (g *Gateway) start(addr string, srv *tunnel.Server) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	ln := &dropListener{Listener: l}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	g.mu.Lock()
	g.Server, g.ln, g.served, g.addr = srv, ln, served, l.Addr().String()
	g.mu.Unlock()
	return nil
}

// stop shuts the running gateway down, within 10 s.
func (g *Gateway) stop() error {
	g.mu.Lock()
	srv, served := g.Server, g.served
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(ctx)
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Restart stops the gateway (gracefully: its agents are told to go away)
// and starts a new one at the same address, made by NewGatewayAt's
// function, as an operator restarting it would. Agents reconnect by
// themselves and resume their tunnels at the same URLs: a test can check
// its own reconnect handling with it. It needs a Gateway of NewGatewayAt.
func (g *Gateway) Restart(t TB) {
	t.Helper()
	if g.newServer == nil {
		t.Fatalf("tunneltest: Restart needs a gateway made by NewGatewayAt, which knows how to make its successor")
		return
	}
	if err := g.stop(); err != nil {
		t.Errorf("tunneltest: gateway: %v", err)
	}
	if err := g.start(g.addr, g.newServer()); err != nil {
		t.Fatalf("tunneltest: restart: %v", err)
	}
}

// DropConnections cuts every connection the gateway has accepted so far,
// the agents' included, as a network failure would: no close handshake,
// nothing said. The gateway keeps serving; agents reconnect by themselves.
func (g *Gateway) DropConnections() {
	g.mu.Lock()
	ln := g.ln
	g.mu.Unlock()
	ln.drop()
}

// dropListener remembers the connections it accepts, for DropConnections.
// It hands them out as they are (a wrapper would hide the *net.TCPConn
// that the gateway's vectored writes need), so it keeps every one until the
// gateway stops: a test makes a bounded number of them.
type dropListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *dropListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns = append(l.conns, c)
	return c, nil
}

func (l *dropListener) drop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// Listen opens a tunnel through g and closes it when the test finishes.
func (g *Gateway) Listen(t TB, opts ...tunnel.Option) *tunnel.Listener {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts = append([]tunnel.Option{tunnel.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	ln, err := tunnel.Listen(ctx, g.URL, opts...)
	if err != nil {
		t.Fatalf("tunneltest: %v", err)
	}
	t.Cleanup(func() {
		// The connections the test accepted are closed by now (cleanups
		// run in reverse order, and Serve's runs first); bound the wait
		// for any the test left open.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ln.CloseWithContext(ctx)
	})
	return ln
}

// Expose serves h through a new tunnel of g and returns the tunnel's public
// URL. Everything stops when the test finishes.
func (g *Gateway) Expose(t TB, h http.Handler, opts ...tunnel.Option) string {
	t.Helper()
	ln := g.Listen(t, opts...)
	Serve(t, ln, h)
	return ln.URL()
}

// Serve serves h on ln (a tunnel Listener, or any listener) until the test
// finishes, then closes both and waits for the server to stop.
func Serve(t TB, ln net.Listener, h http.Handler) {
	t.Helper()
	srv := &http.Server{Handler: h}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		ln.Close()
		<-served
	})
}

// Expose starts a gateway for this test, serves h through a tunnel of it
// and returns the tunnel's public URL.
func Expose(t TB, h http.Handler) string {
	t.Helper()
	return NewGateway(t, nil).Expose(t, h)
}

// Recording is a handler exposed through a tunnel whose exchanges a test
// reads: what a webhook provider delivered, say.
type Recording struct {
	// URL is the tunnel's public URL.
	URL string
	// Recorder holds the exchanges; serve its Handler to look at them in a
	// browser while debugging a test.
	Recorder *inspector.Recorder
}

// ExposeRecorded starts a gateway for this test and exposes h (nil: a
// handler that answers 200 with no body) through a tunnel of it, recording
// every exchange: the five lines of a webhook test.
//
//	hook := tunneltest.ExposeRecorded(t, nil)
//	registerWebhook(hook.URL + "/events")
//	triggerPush()
//	got := hook.Next(t, 10*time.Second)
//	// got.Method, got.URL, got.RequestHeader, got.RequestBody.Data ...
func ExposeRecorded(t TB, h http.Handler) *Recording {
	t.Helper()
	return NewGateway(t, nil).ExposeRecorded(t, h)
}

// ExposeRecorded exposes h (nil: 200 with no body) through a new tunnel of
// g, recording every exchange.
func (g *Gateway) ExposeRecorded(t TB, h http.Handler, opts ...tunnel.Option) *Recording {
	t.Helper()
	if h == nil {
		h = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	}
	rec := inspector.New(&inspector.Options{Replay: h})
	return &Recording{URL: g.Expose(t, rec.Middleware(h), opts...), Recorder: rec}
}

// Requests returns the exchanges recorded so far, oldest first.
func (r *Recording) Requests() []inspector.Exchange { return r.Recorder.Exchanges() }

// Next waits for the next exchange to end (each one is returned once, in
// the order they ended, including those that ended before the call) and
// returns it; it fails the test if none does within timeout.
func (r *Recording) Next(t TB, timeout time.Duration) inspector.Exchange {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	e, err := r.Recorder.Next(ctx)
	if err != nil {
		t.Fatalf("tunneltest: no request through %s within %v: %v", r.URL, timeout, err)
	}
	return e
}
