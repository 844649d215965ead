// Package e2e holds what the end-to-end tests of this repository's modules
// share: a gateway that records its agents' connects, HTTP clients closed
// with the test, the check of a public error response, and a dialer whose
// connections a test can cut. The root module's tests and the integration
// module's use it alike, so that each helper exists once.
package e2e

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// Quiet is a logger for tests that do not look at logs.
var Quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Client returns an HTTP client whose idle connections are closed when the
// test ends, so that the leak check sees no stray goroutines.
func Client(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// Events records a gateway's connect and disconnect hooks.
type Events struct {
	Connected, Disconnected chan tunnel.Tunnel
}

// Gateway starts a gateway with srv's settings (nil: defaults, quiet, path
// routing) and records its connect events. It sets srv's OnConnect and
// OnDisconnect.
func Gateway(t testing.TB, srv *tunnel.Server) (*tunneltest.Gateway, *Events) {
	t.Helper()
	if srv == nil {
		srv = &tunnel.Server{Routing: tunnel.RoutePath}
	}
	if srv.Logger == nil {
		srv.Logger = Quiet
	}
	ev := &Events{Connected: make(chan tunnel.Tunnel, 64), Disconnected: make(chan tunnel.Tunnel, 64)}
	srv.OnConnect = func(tn tunnel.Tunnel) { ev.Connected <- tn }
	srv.OnDisconnect = func(tn tunnel.Tunnel) { ev.Disconnected <- tn }
	return tunneltest.NewGateway(t, srv), ev
}

// Next waits for the next event on ch, failing the test after 30 s.
func Next(t testing.TB, ch <-chan tunnel.Tunnel, what string) tunnel.Tunnel {
	t.Helper()
	select {
	case tn := <-ch:
		return tn
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return tunnel.Tunnel{}
	}
}

// Get fetches url and returns status, headers and body.
func Get(t testing.TB, c *http.Client, url string) (int, http.Header, string) {
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

// PublicError is the JSON body of a public error response.
type PublicError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	ErrorID string `json:"error_id"`
}

// WantError checks a public error response: status, JSON code, and an
// error id equal in body and header.
func WantError(t testing.TB, status int, hdr http.Header, body string, wantStatus int, wantCode tunnel.Code) PublicError {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status = %d, want %d (body %q)", status, wantStatus, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q, want JSON", ct)
	}
	var pe PublicError
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

// CutDialer records the TCP connections it makes so that a test can cut
// them, as a network failure would. Its Dial is a tunnel.WithDialer.
type CutDialer struct {
	mu    sync.Mutex
	conns []net.Conn
}

// Dial opens a TCP connection and records it.
func (d *CutDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.mu.Lock()
		d.conns = append(d.conns, c)
		d.mu.Unlock()
	}
	return c, err
}

// Cut closes every connection made so far.
func (d *CutDialer) Cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
	d.conns = nil
}

// DebugLog is a logger for tests whose gateway log helps when they fail:
// Quiet, unless TUNNEL_TEST_DEBUG is set, then debug lines on stderr.
func DebugLog(t testing.TB) *slog.Logger {
	if os.Getenv("TUNNEL_TEST_DEBUG") == "" {
		return Quiet
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Echo answers with the request's body, and in X-Echo-* headers what it
// saw of the request: method, path (escaped), raw query, Host, the
// forwarded headers, the values of X-Multi and X-Hop. It sets two cookies.
func Echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Echo-Method", r.Method)
	w.Header().Set("X-Echo-Path", r.URL.EscapedPath())
	w.Header().Set("X-Echo-Query", r.URL.RawQuery)
	w.Header().Set("X-Echo-Host", r.Host)
	w.Header().Set("X-Echo-Forwarded-For", r.Header.Get("X-Forwarded-For"))
	w.Header().Set("X-Echo-Forwarded-Proto", r.Header.Get("X-Forwarded-Proto"))
	w.Header().Set("X-Echo-Forwarded-Host", r.Header.Get("X-Forwarded-Host"))
	w.Header().Set("X-Echo-Forwarded-Prefix", r.Header.Get("X-Forwarded-Prefix"))
	w.Header()["X-Echo-Multi"] = r.Header["X-Multi"]
	w.Header().Set("X-Echo-Hop", r.Header.Get("X-Hop"))
	w.Header().Add("Set-Cookie", "a=1; Path=/")
	w.Header().Add("Set-Cookie", "b=2; Path=/")
	w.Write(body)
}

// ParallelGets runs GET url in parallel goroutines until the benchmark has
// its b.N requests.
func ParallelGets(b *testing.B, c *http.Client, url string) {
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// WSEcho is a WebSocket echo handler, on the module's own WebSocket server.
func WSEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		op, msg, err := c.ReadMessage(1 << 20)
		if err != nil {
			return
		}
		if err := c.WriteMessage(op, msg); err != nil {
			return
		}
	}
}

// CheckWSEcho dials url+"/ws" (served by WSEcho, through a tunnel) and
// checks that messages of several sizes come back whole.
func CheckWSEcho(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c, _, err := websocket.Dial(ctx, &http.Client{Transport: tr}, strings.Replace(url, "http", "ws", 1)+"/ws", nil, nil)
	if err != nil {
		t.Fatalf("WebSocket dial through the tunnel: %v", err)
	}
	defer c.CloseNow()
	stop := context.AfterFunc(ctx, func() { c.CloseNow() })
	defer stop()
	for i, msg := range []string{"hello", strings.Repeat("x", 100<<10), "bye"} {
		if err := c.WriteMessage(websocket.OpText, []byte(msg)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		op, got, err := c.ReadMessage(1 << 20)
		if err != nil || op != websocket.OpText || string(got) != msg {
			t.Fatalf("echo %d: op %d, %d bytes, err %v", i, op, len(got), err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "", time.Second)
}
