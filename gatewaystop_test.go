package tunnel_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// serveGateway runs srv on loopback; the test stops it itself.
func serveGateway(t *testing.T, srv *tunnel.Server) (string, chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return "http://" + l.Addr().String(), done
}

// A gateway stop is not an outage: with a server-sent event stream and a
// WebSocket open through a tunnel, Shutdown returns within its grace plus
// a little, the stream ends, and the WebSocket's client gets a close with
// 1001 (going away), not a broken connection.
func TestShutdownWithOpenStreams(t *testing.T) {
	t.Parallel()
	eachTransport(t, testShutdownWithOpenStreams)
}

func testShutdownWithOpenStreams(t *testing.T, tr tunnel.Option) {
	const grace = 500 * time.Millisecond
	srv := &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet, ShutdownGrace: grace}
	gwURL, _ := serveGateway(t, srv)
	ln, err := tunnel.Listen(context.Background(), gwURL, tunnel.WithLogger(quiet), tr, tunnel.WithBackoff(time.Hour, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				op, msg, err := c.ReadMessage(1 << 20)
				if err != nil || c.WriteMessage(op, msg) != nil {
					return
				}
			}
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				return
			}
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}))

	// The event stream.
	resp, err := newClient(t).Get(ln.URL() + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := bufio.NewReader(resp.Body)
	if line, err := events.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data:") {
		t.Fatalf("first event: %q, %v", line, err)
	}
	// The WebSocket.
	ht := &http.Transport{}
	t.Cleanup(ht.CloseIdleConnections)
	ws, _, err := websocket.Dial(context.Background(), &http.Client{Transport: ht}, strings.Replace(ln.URL(), "http", "ws", 1)+"/ws", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.WriteMessage(websocket.OpText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.ReadMessage(1 << 10); err != nil || string(msg) != "hi" {
		t.Fatalf("echo: %q, %v", msg, err)
	}
	wsDone := make(chan error, 1)
	go func() {
		_, _, err := ws.ReadMessage(1 << 10)
		wsDone <- err
	}()
	streamDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, events)
		streamDone <- err
	}()

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	took := time.Since(start)
	t.Logf("Shutdown with an open event stream and WebSocket took %v (grace %v)", took, grace)
	if took > grace+time.Second {
		t.Errorf("Shutdown took %v, want the grace (%v) plus under 1 s", took, grace)
	}
	select {
	case <-streamDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the event stream is still open after Shutdown")
	}
	select {
	case err := <-wsDone:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
			t.Fatalf("the WebSocket's client saw %v, want a close with 1001", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the WebSocket is still open after Shutdown")
	}
}

// Agents move first: a node that shuts down tells its agents to go away,
// they move to the next gateway of their list at once, the other node
// serves the tunnel while this one drains, and the request in flight on
// this node finishes.
func TestShutdownMovesAgentsFirst(t *testing.T) {
	t.Parallel()
	eachTransport(t, testShutdownMovesAgentsFirst)
}

func testShutdownMovesAgentsFirst(t *testing.T, tr tunnel.Option) {
	shared := store.NewMemory()
	mk := func() (*tunnel.Server, string) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + l.Addr().String()
		srv := &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet, Store: shared, Cache: noCache{},
			NodeURL: url, NodeSecret: "cluster", BaseURL: "http://tunnels.test", ShutdownGrace: 10 * time.Second}
		go srv.Serve(l)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		})
		return srv, url
	}
	a, aURL := mk()
	_, bURL := mk()

	var mu sync.Mutex
	var gateways []string
	moved := make(chan struct{}, 1)
	ln, err := tunnel.Listen(context.Background(), aURL, tunnel.WithLogger(quiet), tr, tunnel.WithFallbackGateways(bURL),
		tunnel.WithBackoff(time.Hour, time.Hour), // only the move may reconnect it
		tunnel.WithEvents(func(e tunnel.Event) {
			if e.Kind == tunnel.EventConnected {
				mu.Lock()
				gateways = append(gateways, e.Gateway)
				mu.Unlock()
				if e.Attempt > 0 {
					moved <- struct{}{}
				}
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	entered, release := make(chan struct{}), make(chan struct{})
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	path := "/" + ln.ID()
	c := newClient(t)

	slow := make(chan string, 1)
	go func() {
		status, _, body := get(t, c, aURL+path+"/slow")
		slow <- fmt.Sprint(status, " ", body)
	}()
	<-entered

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stopped <- a.Shutdown(ctx)
	}()
	select {
	case <-moved:
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not move to the other gateway")
	}
	// While node A drains, node B serves the tunnel.
	for i := range 20 {
		if status, _, body := get(t, c, bURL+path+fmt.Sprint("/during-", i)); status != 200 || body != fmt.Sprint("ok /during-", i) {
			t.Fatalf("request %d through node B while A shuts down: %d %q", i, status, body)
		}
	}
	close(release)
	if got := <-slow; got != "200 ok /slow" {
		t.Fatalf("the request in flight on the stopping node: %s", got)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if status, _, _ := get(t, c, bURL+path+"/after"); status != 200 {
		t.Fatalf("after node A stopped: %d", status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(gateways) != 2 || !strings.HasPrefix(gateways[1], strings.Replace(bURL, "http", "ws", 1)) {
		t.Errorf("connected to %v, want A then B", gateways)
	}
}
