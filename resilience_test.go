package tunnel_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// watchHeap samples the live heap (what the last garbage collection found
// reachable) until the returned function is called, which returns the
// largest growth seen. Garbage is left out: how much of it piles up between
// collections depends on the machine's load and on earlier tests, not on
// what the code under test holds.
func watchHeap(t testing.TB) func() uint64 {
	t.Helper()
	runtime.GC()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	live := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := live()
	stop := make(chan struct{})
	result := make(chan uint64)
	go func() {
		peak := base
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				result <- peak - base
				return
			case <-tick.C:
				peak = max(peak, live())
			}
		}
	}()
	return func() uint64 {
		close(stop)
		grew := <-result
		// A last collection, so that what is still held at the end counts
		// even if no collection ran during the test.
		runtime.GC()
		if end := live(); end > base {
			grew = max(grew, end-base)
		}
		return grew
	}
}

func TestReconnectAfterCutKeepsURL(t *testing.T) {
	t.Parallel()
	gw, ev := gateway(t, nil)
	d := &cuttableDialer{}
	ln := listen(t, gw, tunnel.WithDialer(d.Dial), tunnel.WithBackoff(10*time.Millisecond, 100*time.Millisecond), tunnel.WithHeartbeat(time.Second))
	tunneltest.Serve(t, ln, http.HandlerFunc(echo))
	c := newClient(t)
	first := next(t, ev.Connected, "the first connection")
	url, id := ln.URL(), ln.ID()
	if status, _, _ := get(t, c, url+"/before"); status != 200 {
		t.Fatalf("before the cut: %d", status)
	}

	d.Cut()
	second := next(t, ev.Connected, "the reconnect")
	if second.ID != first.ID || second.ConnectionID == first.ConnectionID {
		t.Fatalf("reconnect: %+v after %+v; want the same tunnel on a new connection", second, first)
	}
	if ln.URL() != url || ln.ID() != id {
		t.Fatalf("after reconnect URL %q ID %q, want %q %q", ln.URL(), ln.ID(), url, id)
	}
	if status, hdr, _ := get(t, c, url+"/after"); status != 200 || hdr.Get("X-Echo-Path") != "/after" {
		t.Fatalf("after the reconnect: %d", status)
	}
	select {
	case <-ln.Done():
		t.Fatal("listener stopped after a cut")
	default:
	}
}

func TestAgentGoneMidRequest(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	d := &cuttableDialer{}
	ln := listen(t, gw, tunnel.WithDialer(d.Dial), tunnel.WithBackoff(time.Hour, time.Hour))
	entered := make(chan struct{})
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	}))
	go func() {
		<-entered
		d.Cut()
	}()
	status, hdr, body := get(t, newClient(t), ln.URL()+"/x")
	wantError(t, status, hdr, body, http.StatusBadGateway, tunnel.CodeAgentUnavailable)

	// The tunnel is known but its agent is away: 502, not 404.
	status, hdr, body = get(t, newClient(t), ln.URL()+"/y")
	wantError(t, status, hdr, body, http.StatusBadGateway, tunnel.CodeAgentUnavailable)
}

func TestGatewayRestartAgentComesBack(t *testing.T) {
	t.Parallel()
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l1.Addr().String()
	connected := make(chan tunnel.Tunnel, 4)
	newServer := func() *tunnel.Server {
		return &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet, OnConnect: func(tn tunnel.Tunnel) { connected <- tn }}
	}
	gw1 := newServer()
	go gw1.Serve(l1)

	ln, err := tunnel.Listen(context.Background(), "http://"+addr, tunnel.WithLogger(quiet), tunnel.WithBackoff(10*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tunneltest.Serve(t, ln, http.HandlerFunc(echo))
	c := newClient(t)
	first := next(t, connected, "the first connection")
	url := ln.URL()
	if status, _, _ := get(t, c, url+"/a"); status != 200 {
		t.Fatalf("before restart: %d", status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gw1.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	c.CloseIdleConnections()

	// A new gateway process on the same address, with an empty store.
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	gw2 := newServer()
	go gw2.Serve(l2)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw2.Shutdown(ctx)
	})

	second := next(t, connected, "the reconnect to the new gateway")
	if second.ID != first.ID || ln.URL() != url {
		t.Fatalf("after restart tunnel %q URL %q, want %q %q", second.ID, ln.URL(), first.ID, url)
	}
	if status, hdr, _ := get(t, c, url+"/b"); status != 200 || hdr.Get("X-Echo-Path") != "/b" {
		t.Fatalf("after restart: %d", status)
	}
}

func TestShutdownFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	srv := &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(gl) }()
	ln, err := tunnel.Listen(context.Background(), "http://"+gl.Addr().String(), tunnel.WithLogger(quiet), tunnel.WithBackoff(time.Hour, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	entered, release := make(chan struct{}), make(chan struct{})
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		w.Write([]byte("finished"))
	}))

	type result struct {
		status int
		body   string
	}
	res := make(chan result, 1)
	c := newClient(t)
	go func() {
		status, _, body := get(t, c, ln.URL()+"/slow")
		res <- result{status, body}
	}()
	<-entered
	shutdownErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shutdownErr <- srv.Shutdown(ctx)
	}()
	// New agents are refused while it drains. Until Shutdown has begun
	// they may still connect; those are closed, not left reconnecting.
	for {
		early, err := tunnel.Listen(context.Background(), "http://"+gl.Addr().String(), tunnel.WithLogger(quiet))
		if err != nil {
			break
		}
		early.Close()
	}
	close(release)
	if r := <-res; r.status != 200 || r.body != "finished" {
		t.Fatalf("in-flight request: %d %q", r.status, r.body)
	}
	if err := <-shutdownErr; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v", err)
	}
}

func TestCloseWithContextLetsRequestsFinish(t *testing.T) {
	t.Parallel()
	gw, ev := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, Logger: debugLog(t)})
	ln := listen(t, gw)
	entered, release := make(chan struct{}), make(chan struct{})
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		w.Write([]byte("done"))
	}))
	c := newClient(t)
	// Warm a keep-alive stream so that draining has an idle one to close.
	if status, _, _ := get(t, c, ln.URL()+"/fast"); status != 200 {
		t.Fatal(status)
	}
	res := make(chan string, 1)
	go func() {
		_, _, body := get(t, c, ln.URL()+"/slow")
		res <- body
	}()
	<-entered
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		closed <- ln.CloseWithContext(ctx)
	}()
	// The gateway learns of the drain: the tunnel goes away for new requests.
	next(t, ev.Connected, "connect")
	for {
		status, _, _ := get(t, c, ln.URL()+"/fast")
		if status == http.StatusNotFound {
			break
		}
	}
	close(release)
	if body := <-res; body != "done" {
		t.Fatalf("in-flight request during CloseWithContext: %q", body)
	}
	if err := <-closed; err != nil {
		t.Fatalf("CloseWithContext: %v", err)
	}
	next(t, ev.Disconnected, "disconnect")
}

func TestAgentEndpointRefusesNonUpgrades(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, Authenticator: tunnel.NewStaticTokens("tok")})
	c := newClient(t)
	upgrade := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	for _, tc := range []struct {
		name, method string
		header       http.Header
		wantHeader   string
	}{
		{"plain GET", "GET", http.Header{}, "Upgrade"},
		{"POST upgrade", "POST", upgrade, "Allow"},
		{"no version", "GET", upgrade, "Sec-Websocket-Version"},
	} {
		req, _ := http.NewRequest(tc.method, gw.URL+protocol.ConnectPath, nil)
		req.Header = tc.header.Clone()
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pe := wantError(t, resp.StatusCode, resp.Header, string(body), http.StatusBadRequest, tunnel.CodeInvalidRequest)
		if !strings.Contains(pe.Message, "WebSocket") {
			t.Errorf("%s: message %q does not say what was wrong", tc.name, pe.Message)
		}
		if resp.Header.Get(tc.wantHeader) == "" {
			t.Errorf("%s: no %s header", tc.name, tc.wantHeader)
		}
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	gw, ev := gateway(t, nil)
	d := &cuttableDialer{}
	events := make(chan tunnel.Event, 256)
	ln := listen(t, gw, tunnel.WithDialer(d.Dial), tunnel.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		tunnel.WithHeartbeat(20*time.Millisecond), tunnel.WithEvents(func(e tunnel.Event) {
			select {
			case events <- e:
			default: // a slow test must not block the listener
			}
		}))
	next(t, ev.Connected, "connect")
	wait := func(kind tunnel.EventKind) tunnel.Event {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case e := <-events:
				if e.Kind == kind {
					return e
				}
			case <-timeout:
				t.Fatalf("no %v event", kind)
			}
		}
	}
	if e := wait(tunnel.EventConnected); e.Attempt != 0 || e.TunnelID != ln.ID() || e.URL != ln.URL() {
		t.Fatalf("first connect event %+v", e)
	}
	if e := wait(tunnel.EventHeartbeat); e.RTT <= 0 {
		t.Fatalf("heartbeat event %+v", e)
	}
	d.Cut()
	if e := wait(tunnel.EventDisconnected); e.Err == nil || e.TunnelID != ln.ID() {
		t.Fatalf("disconnect event %+v", e)
	}
	if e := wait(tunnel.EventReconnecting); e.Attempt != 1 || e.Delay <= 0 {
		t.Fatalf("reconnecting event %+v", e)
	}
	if e := wait(tunnel.EventConnected); e.Attempt < 1 || e.TunnelID != ln.ID() {
		t.Fatalf("reconnect event %+v", e)
	}
	if got := tunnel.EventHeartbeat.String(); got != "heartbeat" {
		t.Errorf("String() = %q", got)
	}
}
