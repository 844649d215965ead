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
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/http-tunnel/tunnel"
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
	Server *tunnel.Server
	// URL is the base URL of the gateway ("http://127.0.0.1:PORT"), to
	// pass to tunnel.Listen and tunnel.Forward.
	URL string
}

// NewGateway starts srv on a loopback port and stops it when the test and
// its subtests finish. A nil srv means a gateway with default settings,
// path routing and no log output. Set srv's fields before the call, not
// after.
func NewGateway(t TB, srv *tunnel.Server) *Gateway {
	t.Helper()
	if srv == nil {
		srv = &tunnel.Server{
			Routing: tunnel.RoutePath,
			Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tunneltest: listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("tunneltest: gateway shutdown: %v", err)
		}
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("tunneltest: gateway serve: %v", err)
		}
	})
	return &Gateway{Server: srv, URL: "http://" + ln.Addr().String()}
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
