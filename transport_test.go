package tunnel_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/logbuf"
	"github.com/http-tunnel/tunnel/protocol"
)

// asksForRaw reports whether r is an agent's upgrade to the raw transport.
func asksForRaw(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), protocol.UpgradeMux)
}

// front is an HTTP server in front of a gateway: answer gets each agent
// upgrade to the raw transport and the other requests go to the gateway.
// It counts the upgrades of each kind.
type front struct {
	URL             string
	raw, websockets atomic.Int32
}

// newFront serves srv behind answer until the test ends.
func newFront(t *testing.T, srv *tunnel.Server, answer http.HandlerFunc) *front {
	t.Helper()
	f := &front{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case asksForRaw(r):
			f.raw.Add(1)
			answer(w, r)
			return
		case strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
			f.websockets.Add(1)
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ts.Close()
	})
	f.URL = ts.URL
	return f
}

// connected collects a Listener's EventConnected.
func connected() (tunnel.Option, <-chan tunnel.Event) {
	ch := make(chan tunnel.Event, 16)
	return tunnel.WithEvents(func(e tunnel.Event) {
		if e.Kind == tunnel.EventConnected {
			ch <- e
		}
	}), ch
}

// infoLog is a logger whose INFO lines a test reads.
func infoLog() (*slog.Logger, *logbuf.Buffer) {
	b := &logbuf.Buffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo})), b
}

// An agent whose raw upgrade is refused (by a gateway that does not know
// it, API Gateway's 426, a proxy's error or hang-up, a 101 to something
// else) opens
// a WebSocket at once, within the same Listen, says so once at INFO, and
// serves; one that asked for raw only gets an error instead.
func TestRawUpgradeRefusedFallsBackToWebSocket(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		answer func(srv *tunnel.Server) http.HandlerFunc
	}{
		{"an older gateway", func(srv *tunnel.Server) http.HandlerFunc {
			// The gateway sees a GET without the upgrade, as a gateway of
			// before the raw transport sees its token: 400 invalid_request.
			return func(w http.ResponseWriter, r *http.Request) {
				r.Header.Del("Upgrade")
				r.Header.Del("Connection")
				srv.ServeHTTP(w, r)
			}
		}},
		{"426 Upgrade Required", func(*tunnel.Server) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Upgrade", "websocket")
				http.Error(w, `{"message":"Upgrade Required"}`, http.StatusUpgradeRequired)
			}
		}},
		{"403 from something in front", func(*tunnel.Server) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				io.WriteString(w, `{"message":"Forbidden"}`)
			}
		}},
		{"502 from a proxy", func(*tunnel.Server) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "bad gateway", http.StatusBadGateway) }
		}},
		{"503 without the error body", func(*tunnel.Server) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
			}
		}},
		{"a connection closed without an answer", func(*tunnel.Server) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
					c.Close()
				}
			}
		}},
		{"a 101 and then an HTTP answer to the ready line", func(*tunnel.Server) http.HandlerFunc {
			// A proxy that passes the upgrade's answer but goes on
			// speaking HTTP after it, as if the ready were a request.
			return func(w http.ResponseWriter, r *http.Request) {
				c, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					return
				}
				defer c.Close()
				brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + protocol.UpgradeMux + "\r\n\r\n")
				brw.Flush()
				brw.ReadString('\n')
				brw.WriteString("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				brw.Flush()
			}
		}},
		{"101 to another protocol", func(*tunnel.Server) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				c, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					return
				}
				defer c.Close()
				brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: something-else\r\n\r\n")
				brw.Flush()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet}
			f := newFront(t, srv, tc.answer(srv))

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := tunnel.Listen(ctx, f.URL, tunnel.WithLogger(quiet), tunnel.WithTransport(tunnel.TransportRaw)); err == nil {
				t.Fatal("WithTransport(TransportRaw): Listen succeeded through a refused upgrade")
			}
			if n := f.websockets.Load(); n != 0 {
				t.Fatalf("WithTransport(TransportRaw) opened %d WebSockets", n)
			}

			log, logs := infoLog()
			events, conns := connected()
			ln, err := tunnel.Listen(ctx, f.URL, tunnel.WithLogger(log), events, tunnel.WithTransport(tunnel.TransportAuto))
			if err != nil {
				t.Fatalf("Listen: %v", err)
			}
			t.Cleanup(func() { ln.Close() })
			serveEcho(t, ln)
			if e := <-conns; e.Transport != tunnel.TransportWebSocket {
				t.Errorf("connected over %q, want websocket", e.Transport)
			}
			if raw, ws := f.raw.Load(), f.websockets.Load(); raw != 2 || ws != 1 {
				t.Errorf("%d raw upgrades and %d WebSockets in all, want 2 (one forced) and 1", raw, ws)
			}
			if n := strings.Count(logs.String(), "refused the raw transport"); n != 1 {
				t.Errorf("the fallback was logged %d times, want once:\n%s", n, logs)
			}
		})
	}
}

// serveEcho serves echo on ln and checks a round trip through it.
func serveEcho(t *testing.T, ln *tunnel.Listener) {
	t.Helper()
	hs := &http.Server{Handler: http.HandlerFunc(echo)}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	if status, _, body := get(t, newClient(t), ln.URL()+"/echo"); status != http.StatusOK {
		t.Fatalf("through the tunnel: %d %q", status, body)
	}
}

// An answer to the raw upgrade that refuses the agent itself means what it
// means to a WebSocket: no WebSocket follows it, and Listen returns it.
func TestRawUpgradeRefusalsKeepTheirMeaning(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   error
	}{
		{"401 unauthorized", http.StatusUnauthorized, `{"error":"unauthorized","message":"no"}`, tunnel.ErrUnauthorized},
		{"403 forbidden", http.StatusForbidden, `{"error":"forbidden","message":"no"}`, tunnel.ErrForbidden},
		{"429", http.StatusTooManyRequests, "", tunnel.ErrRateLimited},
		{"503 unavailable", http.StatusServiceUnavailable, `{"error":"unavailable","message":"shutting down"}`, tunnel.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFront(t, &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet}, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := tunnel.Listen(ctx, f.URL, tunnel.WithLogger(quiet), tunnel.WithTransport(tunnel.TransportAuto))
			if !errors.Is(err, tc.want) {
				t.Errorf("Listen: %v, want %v", err, tc.want)
			}
			if n := f.websockets.Load(); n != 0 {
				t.Errorf("%d WebSockets after the refusal, want none", n)
			}
		})
	}
	// The gateway's own refusal of a bad token, over the raw upgrade.
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, Authenticator: tunnel.NewStaticTokens("good")})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tunnel.Listen(ctx, gw.URL, tunnel.WithLogger(quiet), tunnel.WithTransport(tunnel.TransportRaw), tunnel.WithToken("bad")); !errors.Is(err, tunnel.ErrUnauthorized) {
		t.Errorf("raw upgrade with a bad token: %v, want ErrUnauthorized", err)
	}
}

// A ReverseProxy passes the raw upgrade as it passes WebSockets; a proxy
// that passes WebSockets only strips it, and the agent falls back.
func TestRawTransportThroughProxies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		stripping bool
		want      tunnel.Transport
	}{
		{"a reverse proxy", false, tunnel.TransportRaw},
		{"a proxy that passes WebSockets only", true, tunnel.TransportWebSocket},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gw, _ := gateway(t, nil)
			target, _ := url.Parse(gw.URL)
			var sawRaw atomic.Int32
			rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.Host = pr.In.Host
			}}
			proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if asksForRaw(r) {
					sawRaw.Add(1)
					if tc.stripping {
						r.Header.Del("Upgrade")
						r.Header.Del("Connection")
					}
				}
				rp.ServeHTTP(w, r)
			}))
			t.Cleanup(proxy.Close)

			events, conns := connected()
			ln, err := tunnel.Listen(context.Background(), proxy.URL, tunnel.WithLogger(quiet), events, tunnel.WithTransport(tunnel.TransportAuto))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			if e := <-conns; e.Transport != tc.want {
				t.Errorf("connected over %q, want %q", e.Transport, tc.want)
			}
			if sawRaw.Load() != 1 {
				t.Errorf("the proxy saw %d raw upgrades, want 1", sawRaw.Load())
			}
			// The tunnel's public URL is the proxy's (the Host it kept).
			serveEcho(t, ln)
		})
	}
}

// After a fallback the Listener keeps to WebSocket: its reconnects open
// WebSockets at once, without asking for the raw transport again.
func TestRawFallbackRememberedAcrossReconnects(t *testing.T) {
	t.Parallel()
	srv := &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet}
	f := newFront(t, srv, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upgrade not allowed", http.StatusBadRequest)
	})
	var d cuttableDialer
	events, conns := connected()
	log, logs := infoLog()
	ln, err := tunnel.Listen(context.Background(), f.URL, tunnel.WithLogger(log), events, tunnel.WithDialer(d.Dial), tunnel.WithTransport(tunnel.TransportAuto),
		tunnel.WithBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	serveEcho(t, ln)
	for i := range 3 {
		e := <-conns
		if e.Transport != tunnel.TransportWebSocket {
			t.Fatalf("connection %d: %+v, want a WebSocket", i, e)
		}
		if i < 2 {
			d.Cut()
		}
	}
	if raw, ws := f.raw.Load(), f.websockets.Load(); raw != 1 || ws < 3 {
		t.Errorf("%d raw upgrades and %d WebSockets over 3 connections, want 1 and at least 3", raw, ws)
	}
	if n := strings.Count(logs.String(), "refused the raw transport"); n != 1 {
		t.Errorf("the fallback was logged %d times, want once", n)
	}
	if status, _, _ := get(t, newClient(t), ln.URL()+"/"); status != http.StatusOK {
		t.Errorf("after the reconnects: %d", status)
	}
}

// WithTransport refuses a transport it does not know.
func TestWithTransportUnknown(t *testing.T) {
	t.Parallel()
	_, err := tunnel.Listen(context.Background(), "http://127.0.0.1:1", tunnel.WithTransport("carrier-pigeon"))
	if !errors.Is(err, tunnel.ErrInvalidRequest) || !strings.Contains(err.Error(), "carrier-pigeon") {
		t.Errorf("Listen: %v, want invalid_request naming the transport", err)
	}
}

// rawUpgrade opens the raw transport to a gateway by hand, as a hostile
// agent would, and returns the connection after the 101 answer.
func rawUpgrade(t *testing.T, gwURL, token string) (net.Conn, *bufio.Reader) {
	t.Helper()
	u, err := url.Parse(gwURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\nAuthorization: Bearer %s\r\n\r\n", protocol.ConnectPath, u.Host, protocol.UpgradeMux, token)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != protocol.UpgradeMux {
		t.Fatalf("raw upgrade answered %s, Upgrade %q", resp.Status, resp.Header.Get("Upgrade"))
	}
	return c, br
}

// The raw transport's handshake keeps the WebSocket's bounds: a ready
// line over 16 KiB, a connection that never sends one, and a malformed or
// wrong first message are cut off, the last two after an error line, and
// the gateway serves on.
func TestRawHandshakeBounds(t *testing.T) {
	t.Parallel()
	srv := &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet, HandshakeTimeout: 300 * time.Millisecond}
	gw, _ := gateway(t, srv)
	for _, tc := range []struct {
		name    string
		send    string
		wantErr string // the code of the error line; "" for a close without one
	}{
		{"a ready over 16 KiB", `{"type":"ready","name":"` + strings.Repeat("a", 17<<10), ""},
		{"no ready", "", ""},
		{"a malformed ready", "{\"type\":\"ready\",\n", string(tunnel.CodeInvalidRequest)},
		{"not a ready", "{\"type\":\"ping\"}\n", string(tunnel.CodeInvalidRequest)},
		{"a bad name", "{\"type\":\"ready\",\"version\":4,\"name\":\"Not A Label\"}\n", string(tunnel.CodeInvalidRequest)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, br := rawUpgrade(t, gw.URL, "")
			io.WriteString(c, tc.send)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			rest, err := io.ReadAll(br)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("the gateway did not close the connection: %v", err)
			}
			if tc.wantErr == "" {
				if len(rest) != 0 {
					t.Errorf("answered %q, want a close without an answer", rest)
				}
				return
			}
			line, _, _ := strings.Cut(string(rest), "\n")
			msg, err := protocol.Unmarshal([]byte(line), protocol.MaxHandshakeBytes)
			if e, ok := msg.(*protocol.Error); err != nil || !ok || e.Code != tc.wantErr {
				t.Errorf("answered %q, want an error line with %s", rest, tc.wantErr)
			}
		})
	}
	ln := listen(t, gw, tunnel.WithTransport(tunnel.TransportRaw))
	serveEcho(t, ln)
}

// A ready sent in the same packet as the upgrade request, before the 101,
// is read, not lost in the HTTP server's buffer.
func TestRawReadyBehindTheUpgrade(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	u, _ := url.Parse(gw.URL)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n{\"type\":\"ready\",\"version\":4}\n",
		protocol.ConnectPath, u.Host, protocol.UpgradeMux)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	line, err := br.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	msg, err := protocol.Unmarshal(line[:len(line)-1], protocol.MaxHandshakeBytes)
	if est, ok := msg.(*protocol.ConnectionEstablished); err != nil || !ok || est.TunnelID == "" {
		t.Fatalf("answer to the early ready: %s", line)
	}
}

// The agent endpoint answers 101 to the raw transport's token only on an
// HTTP/1.1 GET, and refuses other upgrade tokens as it refuses a request
// that is not an upgrade, naming both upgrades it takes.
func TestAgentEndpointRefusesUnknownUpgrades(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	c := newClient(t)
	for _, tc := range []struct {
		name, method, upgrade string
	}{
		{"another token", http.MethodGet, "h2c"},
		{"the raw token in a POST", http.MethodPost, protocol.UpgradeMux},
	} {
		req, _ := http.NewRequest(tc.method, gw.URL+protocol.ConnectPath, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", tc.upgrade)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantError(t, resp.StatusCode, resp.Header, string(body), http.StatusBadRequest, tunnel.CodeInvalidRequest)
		if tc.method == http.MethodGet && resp.Header.Get("Upgrade") != protocol.UpgradeMux+", websocket" {
			t.Errorf("%s: Upgrade %q, want both upgrades the endpoint takes", tc.name, resp.Header.Get("Upgrade"))
		}
	}
}

// Both transports reach a TLS gateway through an HTTP CONNECT proxy
// (WithProxy), which passes the bytes of either unchanged.
func TestTransportsThroughConnectProxyOverTLS(t *testing.T) {
	t.Parallel()
	srv := &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet}
	ts := httptest.NewUnstartedServer(srv)
	ts.StartTLS()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ts.Close()
	})
	var tunnels atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer up.Close()
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		tunnels.Add(1)
		brw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
		brw.Flush()
		done := make(chan struct{})
		go func() {
			io.Copy(up, brw)
			up.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		io.Copy(c, up)
		c.Close()
		<-done
	}))
	t.Cleanup(proxy.Close)
	proxyURL, _ := url.Parse(proxy.URL)
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())

	for _, tc := range []struct{ tr, want tunnel.Transport }{
		{tunnel.TransportAuto, tunnel.TransportRaw},
		{tunnel.TransportWebSocket, tunnel.TransportWebSocket},
	} {
		tr, want := tc.tr, tc.want
		events, conns := connected()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ln, err := tunnel.Listen(ctx, ts.URL, tunnel.WithLogger(quiet), events, tunnel.WithTransport(tr),
			tunnel.WithProxy(http.ProxyURL(proxyURL)), tunnel.WithTLSConfig(&tls.Config{RootCAs: roots}))
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
		t.Cleanup(func() { ln.Close() })
		if e := <-conns; e.Transport != want {
			t.Errorf("%s: connected over %q, want %q", tr, e.Transport, want)
		}
		hs := &http.Server{Handler: http.HandlerFunc(echo)}
		go hs.Serve(ln)
		t.Cleanup(func() { hs.Close() })
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
		t.Cleanup(c.CloseIdleConnections)
		resp, err := c.Get(ln.URL() + "/via-connect")
		if err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: through the tunnel: %d", tr, resp.StatusCode)
		}
	}
	if n := tunnels.Load(); n != 2 {
		t.Errorf("the proxy carried %d connections, want 2 (one per agent)", n)
	}
}

// A proxy that takes the raw upgrade and never answers it (some hold
// requests with a token they do not know) does not strand the agent: with
// nothing answering within half the handshake timeout, the same attempt
// opens a WebSocket, and the Listener keeps to WebSocket once that
// connected. Forced to raw, the agent waits out the attempt and fails.
func TestRawUpgradeUnansweredFallsBackToWebSocket(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet}
	f := newFront(t, srv, func(w http.ResponseWriter, r *http.Request) {
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			<-release // held, never answered
			c.Close()
		}
	})
	t.Cleanup(func() { close(release) })
	const attempt = 2 * time.Second

	start := time.Now()
	_, err := tunnel.Listen(context.Background(), f.URL, tunnel.WithLogger(quiet),
		tunnel.WithTransport(tunnel.TransportRaw), tunnel.WithHandshakeTimeout(attempt))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WithTransport(TransportRaw) through a proxy that never answers: %v; want a timeout", err)
	}
	if d := time.Since(start); d < attempt {
		t.Errorf("forced raw gave up after %v; want the whole attempt, %v", d, attempt)
	}

	log, logs := infoLog()
	events, conns := connected()
	var d cuttableDialer
	start = time.Now()
	ln, err := tunnel.Listen(context.Background(), f.URL, tunnel.WithLogger(log), events, tunnel.WithDialer(d.Dial),
		tunnel.WithHandshakeTimeout(attempt), tunnel.WithBackoff(10*time.Millisecond, 10*time.Millisecond), tunnel.WithTransport(tunnel.TransportAuto))
	if err != nil {
		t.Fatalf("Listen through a proxy that holds the raw upgrade: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	if d := time.Since(start); d >= attempt {
		t.Errorf("Listen took %v; want the fallback within the attempt (%v)", d, attempt)
	}
	serveEcho(t, ln)
	if e := <-conns; e.Transport != tunnel.TransportWebSocket {
		t.Errorf("connected over %q; want websocket", e.Transport)
	}
	if n := strings.Count(logs.String(), "refused the raw transport"); n != 1 {
		t.Errorf("the fallback was logged %d times; want once:\n%s", n, logs)
	}

	// A reconnect goes straight to a WebSocket.
	raw := f.raw.Load()
	d.Cut()
	if e := <-conns; e.Transport != tunnel.TransportWebSocket {
		t.Errorf("reconnected over %q; want websocket", e.Transport)
	}
	if n := f.raw.Load(); n != raw {
		t.Errorf("the reconnect asked for the raw transport again (%d upgrades, %d before)", n, raw)
	}
}

// A proxy that answers 502 to everything while its gateway restarts (both
// the raw upgrade and the WebSocket fail) does not move the agent off the
// raw transport: once the gateway is back, it reconnects over raw.
func TestRawKeptThroughAnOutageBehindAProxy(t *testing.T) {
	t.Parallel()
	srv := &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet}
	var down atomic.Bool
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "upstream restarting", http.StatusBadGateway)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ts.Close()
	})
	var d cuttableDialer
	conns := make(chan tunnel.Event, 16)
	failed := make(chan struct{}, 64) // a reconnect attempt after a failed one
	ln, err := tunnel.Listen(context.Background(), ts.URL, tunnel.WithDialer(d.Dial), tunnel.WithTransport(tunnel.TransportAuto),
		tunnel.WithBackoff(time.Millisecond, 10*time.Millisecond),
		tunnel.WithEvents(func(e tunnel.Event) {
			switch {
			case e.Kind == tunnel.EventConnected:
				conns <- e
			case e.Kind == tunnel.EventReconnecting && e.Err != nil:
				select {
				case failed <- struct{}{}:
				default:
				}
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if e := <-conns; e.Transport != tunnel.TransportRaw {
		t.Fatalf("first connection: %+v, want raw", e)
	}
	down.Store(true)
	d.Cut()
	for range 3 {
		<-failed // attempts refused over both transports
	}
	down.Store(false)
	if e := <-conns; e.Transport != tunnel.TransportRaw {
		t.Errorf("after the outage: %+v, want raw again", e)
	}
}
