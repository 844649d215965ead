package tunnel_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/leakcheck"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// quiet is a logger for tests that do not look at logs.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newClient returns an HTTP client whose idle connections are closed when
// the test ends, so that the leak check sees no stray goroutines.
func newClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// gateway starts a gateway with srv's settings (nil: defaults, quiet, path
// routing) and records its connect events.
func gateway(t testing.TB, srv *tunnel.Server) (*tunneltest.Gateway, *events) {
	t.Helper()
	if srv == nil {
		srv = &tunnel.Server{Routing: tunnel.RoutePath}
	}
	if srv.Logger == nil {
		srv.Logger = quiet
	}
	ev := &events{connected: make(chan tunnel.Tunnel, 64), disconnected: make(chan tunnel.Tunnel, 64)}
	srv.OnConnect = func(tn tunnel.Tunnel) { ev.connected <- tn }
	srv.OnDisconnect = func(tn tunnel.Tunnel) { ev.disconnected <- tn }
	return tunneltest.NewGateway(t, srv), ev
}

// events records a gateway's connect and disconnect hooks.
type events struct {
	connected, disconnected chan tunnel.Tunnel
}

// next waits for the next event on ch.
func next(t testing.TB, ch <-chan tunnel.Tunnel, what string) tunnel.Tunnel {
	t.Helper()
	select {
	case tn := <-ch:
		return tn
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return tunnel.Tunnel{}
	}
}

// listen opens a tunnel through gw, closed when the test ends.
func listen(t testing.TB, gw *tunneltest.Gateway, opts ...tunnel.Option) *tunnel.Listener {
	t.Helper()
	return gw.Listen(t, opts...)
}

// get fetches url and returns status, headers and body.
func get(t testing.TB, c *http.Client, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// publicError is the JSON body of a public error response.
type publicError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	ErrorID string `json:"error_id"`
}

// wantError checks a public error response: status, JSON code, and an
// error id equal in body and header.
func wantError(t testing.TB, status int, hdr http.Header, body string, wantStatus int, wantCode tunnel.Code) publicError {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status = %d, want %d (body %q)", status, wantStatus, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q, want JSON", ct)
	}
	var pe publicError
	if err := json.Unmarshal([]byte(body), &pe); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if pe.Error != string(wantCode) {
		t.Errorf("error code = %q, want %q", pe.Error, wantCode)
	}
	if pe.ErrorID == "" || hdr.Get(tunnel.ErrorIDHeader) != pe.ErrorID {
		t.Errorf("error id: body %q, header %q; want equal and non-empty", pe.ErrorID, hdr.Get(tunnel.ErrorIDHeader))
	}
	if pe.Message == "" {
		t.Errorf("error message is empty")
	}
	return pe
}

// cuttableDialer records the TCP connections it makes so a test can cut
// them, as a network failure would.
type cuttableDialer struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (d *cuttableDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.mu.Lock()
		d.conns = append(d.conns, c)
		d.mu.Unlock()
	}
	return c, err
}

// cut closes every connection made so far.
func (d *cuttableDialer) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
	d.conns = nil
}
