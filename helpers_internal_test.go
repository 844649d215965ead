package tunnel

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// The internal tests cannot import tunneltest (it imports this package),
// so these are its few parts they need.

// quietLog is a logger for internal tests that do not look at logs.
var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// startGateway serves srv (nil: path routing, quiet) on loopback until the
// test ends and returns its URL.
func startGateway(t *testing.T, srv *Server) string {
	t.Helper()
	if srv == nil {
		srv = &Server{Routing: RoutePath, Logger: quietLog}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return "http://" + l.Addr().String()
}

// startListener opens a tunnel through the gateway at url and serves h on
// it until the test ends.
func startListener(t *testing.T, url string, h http.Handler, opts ...Option) *Listener {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := Listen(ctx, url, append([]Option{WithLogger(quietLog)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h}
	go hs.Serve(ln)
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ln.CloseWithContext(ctx)
	})
	return ln
}
