package tunnel_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
)

// http.Server.Shutdown on a tunnel listener: the request in flight is
// answered by the handler, not cut, and Shutdown returns nil; the
// connection to the gateway closes after it, and Done with it.
func TestHTTPServerShutdownKeepsRequestsInFlight(t *testing.T) {
	t.Parallel()
	eachTransport(t, testHTTPServerShutdownKeepsRequestsInFlight)
}

func testHTTPServerShutdownKeepsRequestsInFlight(t *testing.T, tr tunnel.Option) {
	gw, ev := gateway(t, nil)
	ln := listen(t, gw, tr)
	entered, release := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		w.Write([]byte("finished"))
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	next(t, ev.Connected, "connect")

	c := newClient(t)
	type result struct {
		status int
		body   string
	}
	res := make(chan result, 1)
	go func() {
		status, _, body := get(t, c, ln.URL()+"/slow")
		res <- result{status, body}
	}()
	<-entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	// Serve returns as soon as the listener is closed; the request is
	// still being handled.
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	select {
	case <-ln.Done():
		t.Fatal("the connection to the gateway closed with a request in flight")
	default:
	}
	close(release)
	if r := <-res; r.status != http.StatusOK || r.body != "finished" {
		t.Fatalf("request in flight during Shutdown: %d %q, want 200 from the handler", r.status, r.body)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-ln.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the listener did not stop after its last connection closed")
	}
	if ln.Err() != nil {
		t.Errorf("Err after a graceful stop: %v", ln.Err())
	}
	next(t, ev.Disconnected, "disconnect")
}

// CloseWithContext bounds the wait: when ctx ends first it cuts the
// connection, the request still in flight fails at the gateway, and it
// returns ctx's error.
func TestCloseWithContextCutsAtItsDeadline(t *testing.T) {
	t.Parallel()
	gw, ev := gateway(t, nil)
	ln := listen(t, gw)
	entered, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	next(t, ev.Connected, "connect")

	c := newClient(t)
	type result struct {
		status int
		hdr    http.Header
		body   string
	}
	res := make(chan result, 1)
	go func() {
		status, hdr, body := get(t, c, ln.URL()+"/stuck")
		res <- result{status, hdr, body}
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ln.CloseWithContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CloseWithContext = %v, want the deadline", err)
	}
	select {
	case <-ln.Done():
	default:
		t.Fatal("CloseWithContext returned before the listener stopped")
	}
	r := <-res
	wantError(t, r.status, r.hdr, r.body, http.StatusBadGateway, tunnel.CodeAgentUnavailable)
}
