package tunnel_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// echo answers with what it received, so tests can check every part of a
// request made it through.

func TestListenGetAndPost(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	ln := listen(t, gw)
	tunneltest.Serve(t, ln, http.HandlerFunc(echo))
	c := newClient(t)

	if !strings.HasPrefix(ln.URL(), gw.URL+"/") || !strings.HasSuffix(ln.URL(), "/"+ln.ID()) {
		t.Fatalf("URL() = %q, want %s/<id> with id %q", ln.URL(), gw.URL, ln.ID())
	}
	if len(ln.ID()) != 16 || strings.Trim(ln.ID(), "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		t.Errorf("generated ID %q is not 16 characters of [a-z0-9]", ln.ID())
	}
	if ln.Addr().String() != ln.URL() || ln.Addr().Network() != "tunnel" {
		t.Errorf("Addr() = %v %v", ln.Addr().Network(), ln.Addr())
	}

	status, hdr, body := get(t, c, ln.URL()+"/hello/world?x=1")
	if status != 200 || hdr.Get("X-Echo-Method") != "GET" || hdr.Get("X-Echo-Path") != "/hello/world" || hdr.Get("X-Echo-Query") != "x=1" || body != "" {
		t.Fatalf("GET: %d %v %q", status, hdr, body)
	}

	payload := strings.Repeat("post body ", 1000)
	resp, err := c.Post(ln.URL()+"/submit", "text/plain", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Echo-Method") != "POST" || string(got) != payload {
		t.Fatalf("POST: %d, body %d bytes, want %d", resp.StatusCode, len(got), len(payload))
	}
}

func TestForwardingPreservesRequestAndResponse(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	ln := listen(t, gw)
	tunneltest.Serve(t, ln, http.HandlerFunc(echo))
	c := newClient(t)

	// Escapes, repeated keys, a semicolon and a malformed escape: the query
	// must arrive byte for byte, and the path with its encoding.
	const rawQuery = "a=1&a=2&b=%2F%20x&c=semi;colon&d=%zz&e=caf%C3%A9&f"
	req, _ := http.NewRequest("GET", ln.URL()+"/p/a%2Fb%20c?"+rawQuery, nil)
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "two")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must not pass")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	checks := []struct{ name, got, want string }{
		{"query", h.Get("X-Echo-Query"), rawQuery},
		{"path", h.Get("X-Echo-Path"), "/p/a%2Fb%20c"},
		{"host", h.Get("X-Echo-Host"), strings.TrimPrefix(gw.URL, "http://")},
		{"x-forwarded-for", h.Get("X-Echo-Forwarded-For"), "127.0.0.1"},
		{"x-forwarded-proto", h.Get("X-Echo-Forwarded-Proto"), "http"},
		{"x-forwarded-host", h.Get("X-Echo-Forwarded-Host"), strings.TrimPrefix(gw.URL, "http://")},
		{"x-forwarded-prefix", h.Get("X-Echo-Forwarded-Prefix"), "/" + ln.ID()},
		{"hop-by-hop header", h.Get("X-Echo-Hop"), ""},
		{"repeated request header", strings.Join(h.Values("X-Echo-Multi"), ","), "one,two"},
		{"repeated response header", strings.Join(h.Values("Set-Cookie"), " | "), "a=1; Path=/ | b=2; Path=/"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if n := len(resp.Cookies()); n != 2 {
		t.Errorf("got %d cookies, want 2", n)
	}
}

func TestSubdomainRouting(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, &tunnel.Server{Domain: "tunnel.test"})
	ln := listen(t, gw)
	tunneltest.Serve(t, ln, http.HandlerFunc(echo))
	c := newClient(t)

	port := gw.URL[strings.LastIndex(gw.URL, ":"):]
	want := "http://" + ln.ID() + ".tunnel.test" + port
	if ln.URL() != want {
		t.Fatalf("URL() = %q, want %q", ln.URL(), want)
	}
	// *.tunnel.test does not resolve: send to the gateway with the Host set.
	req, _ := http.NewRequest("GET", gw.URL+"/"+ln.ID()+"/kept?q=1", nil)
	req.Host = ln.ID() + ".tunnel.test" + port
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// Routed by host: the path is not stripped.
	if p := resp.Header.Get("X-Echo-Path"); p != "/"+ln.ID()+"/kept" {
		t.Errorf("path = %q, want it unstripped", p)
	}
	if h := resp.Header.Get("X-Echo-Host"); h != req.Host {
		t.Errorf("Host = %q, want %q", h, req.Host)
	}
	// The path URL works as well in auto mode.
	if status, hdr, _ := get(t, c, gw.URL+"/"+ln.ID()+"/x"); status != 200 || hdr.Get("X-Echo-Path") != "/x" {
		t.Errorf("path routing in auto mode: %d %q", status, hdr.Get("X-Echo-Path"))
	}
}

func TestUnknownTunnel404(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	c := newClient(t)
	for _, path := range []string{"/nosuchtunnel/x", "/", "/UPPER/", "/bad_id/"} {
		status, hdr, body := get(t, c, gw.URL+path)
		wantError(t, status, hdr, body, http.StatusNotFound, tunnel.CodeTunnelNotFound)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, Authenticator: tunnel.NewStaticTokens("good-token")})
	ctx := context.Background()

	for _, opts := range [][]tunnel.Option{
		{tunnel.WithToken("bad-token")},
		{}, // no token
	} {
		_, err := tunnel.Listen(ctx, gw.URL, append(opts, tunnel.WithLogger(quiet))...)
		if !errors.Is(err, tunnel.ErrUnauthorized) {
			t.Fatalf("Listen with a bad token: err = %v, want ErrUnauthorized", err)
		}
		var te *tunnel.Error
		if !errors.As(err, &te) || te.HTTPStatus() != 401 || te.ID == "" {
			t.Errorf("error %#v: want *tunnel.Error with status 401 and an id", te)
		}
		if strings.Contains(err.Error(), "bad-token") {
			t.Errorf("error text shows the token: %v", err)
		}
	}

	// The raw answer is 401 JSON.
	status, hdr, body := get(t, newClient(t), gw.URL+"/_tunnel/connect")
	wantError(t, status, hdr, body, http.StatusUnauthorized, tunnel.CodeUnauthorized)
	if hdr.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}

	ln := listen(t, gw, tunnel.WithToken("good-token"))
	tunneltest.Serve(t, ln, http.HandlerFunc(echo))
	if status, _, _ := get(t, newClient(t), ln.URL()+"/"); status != 200 {
		t.Fatalf("with a good token: status %d", status)
	}
	// The query parameter works as a fallback.
	req := httptest.NewRequest("GET", "/_tunnel/connect?token=good-token", nil)
	if id, err := tunnel.NewStaticTokens("good-token").Authenticate(ctx, req); err != nil || !strings.HasPrefix(id.Subject, "token:") {
		t.Errorf("query token: %v %v", id, err)
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	ctx := context.Background()
	c := newClient(t)

	first, err := tunnel.Listen(ctx, gw.URL, tunnel.WithName("myapp"), tunnel.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	tunneltest.Serve(t, first, http.HandlerFunc(echo))
	if first.ID() != "myapp" || first.URL() != gw.URL+"/myapp" {
		t.Fatalf("ID %q URL %q", first.ID(), first.URL())
	}
	if status, _, _ := get(t, c, gw.URL+"/myapp/x"); status != 200 {
		t.Fatalf("named tunnel: status %d", status)
	}

	_, err = tunnel.Listen(ctx, gw.URL, tunnel.WithName("myapp"), tunnel.WithLogger(quiet))
	if !errors.Is(err, tunnel.ErrNameInUse) {
		t.Fatalf("second agent asking for a name in use: err = %v, want ErrNameInUse", err)
	}

	// Invalid names are refused before dialing.
	for _, name := range []string{"UPPER", "-x", "x-", "a.b", strings.Repeat("a", 64), "_tunnel"} {
		if _, err := tunnel.Listen(ctx, gw.URL, tunnel.WithName(name)); !errors.Is(err, tunnel.ErrInvalidRequest) {
			t.Errorf("WithName(%q): err = %v, want ErrInvalidRequest", name, err)
		}
	}

	// Closing frees the name at once.
	first.Close()
	again, err := tunnel.Listen(ctx, gw.URL, tunnel.WithName("myapp"), tunnel.WithLogger(quiet))
	if err != nil {
		t.Fatalf("name not freed by Close: %v", err)
	}
	again.Close()
}

func TestCloseUnblocksAccept(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	ln := listen(t, gw)
	errc := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		errc <- err
	}()
	ln.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) || !errors.Is(err, tunnel.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
	// Nothing was accepted, so the connection to the gateway closes at
	// once, and Done with it.
	select {
	case <-ln.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after Close")
	}
	if ln.Err() != nil {
		t.Errorf("Err() after Close = %v, want nil", ln.Err())
	}
	if err := ln.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestGatewayUnreachable(t *testing.T) {
	t.Parallel()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tunnel.Listen(ctx, "http://"+addr, tunnel.WithLogger(quiet)); err == nil {
		t.Fatal("Listen to a dead gateway succeeded")
	}
	// A context that ends bounds the attempt.
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := tunnel.Listen(ctx2, "http://"+addr); !errors.Is(err, context.Canceled) {
		t.Errorf("Listen with a canceled ctx: %v, want context.Canceled", err)
	}
	for _, u := range []string{"", "::bad", "ftp://host", "http://"} {
		if _, err := tunnel.Listen(context.Background(), u); err == nil {
			t.Errorf("Listen(%q) succeeded", u)
		}
	}
}

func TestSlowHandlerTimesOut(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, ResponseTimeout: timeout})
	ln := listen(t, gw)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	start := time.Now()
	status, hdr, body := get(t, newClient(t), ln.URL()+"/slow")
	elapsed := time.Since(start)
	wantError(t, status, hdr, body, http.StatusGatewayTimeout, tunnel.CodeGatewayTimeout)
	if elapsed < timeout {
		t.Errorf("504 after %v, before the %v timeout", elapsed, timeout)
	}
}
