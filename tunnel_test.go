package tunnel_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/e2e"
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

func TestForward(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	local := httptest.NewServer(http.HandlerFunc(echo))
	t.Cleanup(local.Close)
	c := newClient(t)

	ctx := context.Background()
	fw, err := tunnel.Forward(ctx, gw.URL, local.URL, tunnel.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })

	status, hdr, _ := get(t, c, fw.URL()+"/api/items?id=7&id=8")
	if status != 200 || hdr.Get("X-Echo-Path") != "/api/items" || hdr.Get("X-Echo-Query") != "id=7&id=8" {
		t.Fatalf("GET via Forward: %d path %q query %q", status, hdr.Get("X-Echo-Path"), hdr.Get("X-Echo-Query"))
	}
	if got, want := hdr.Get("X-Echo-Host"), strings.TrimPrefix(gw.URL, "http://"); got != want {
		t.Errorf("Host = %q, want the public host %q", got, want)
	}
	if hdr.Get("X-Echo-Forwarded-For") != "127.0.0.1" || hdr.Get("X-Echo-Forwarded-Proto") != "http" {
		t.Errorf("X-Forwarded-For/Proto lost on the local hop: %q %q", hdr.Get("X-Echo-Forwarded-For"), hdr.Get("X-Echo-Forwarded-Proto"))
	}
	if n := len(hdr.Values("Set-Cookie")); n != 2 {
		t.Errorf("Set-Cookie count = %d, want 2", n)
	}

	payload := bytes.Repeat([]byte{0, 1, 2, 255}, 64<<10)
	resp, err := c.Post(fw.URL()+"/upload", "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, payload) {
		t.Fatalf("POST via Forward: %d, %d bytes back, want %d", resp.StatusCode, len(got), len(payload))
	}

	// With WithRewriteHost the local service sees its own host.
	fw2, err := tunnel.Forward(ctx, gw.URL, local.URL, tunnel.WithLogger(quiet), tunnel.WithRewriteHost())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw2.Close() })
	_, hdr, _ = get(t, c, fw2.URL()+"/")
	if got, want := hdr.Get("X-Echo-Host"), strings.TrimPrefix(local.URL, "http://"); got != want {
		t.Errorf("rewritten Host = %q, want %q", got, want)
	}
	if got, want := hdr.Get("X-Echo-Forwarded-Host"), strings.TrimPrefix(gw.URL, "http://"); got != want {
		t.Errorf("X-Forwarded-Host = %q, want the public host %q", got, want)
	}
}

func TestForwardLocalServiceDown(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()

	fw, err := tunnel.Forward(context.Background(), gw.URL, dead, tunnel.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })
	status, hdr, body := get(t, newClient(t), fw.URL()+"/x")
	pe := wantError(t, status, hdr, body, http.StatusBadGateway, tunnel.CodeLocalServiceUnavailable)
	if strings.Contains(body, "127.0.0.1") || strings.Contains(body, "refused") {
		t.Errorf("error body leaks internal detail: %q (%v)", body, pe)
	}
}

func TestForwardRejectsBadLocalURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "localhost:3000", "ftp://x", "http://"} {
		if _, err := tunnel.Forward(context.Background(), "http://127.0.0.1:1", u); err == nil {
			t.Errorf("Forward(%q) succeeded", u)
		}
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

func TestSSEEventsArriveOneByOne(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	ln := listen(t, gw)
	next := make(chan struct{})
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 5; i++ {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			// The next event is sent only after the client has seen this
			// one: if the tunnel buffered events, the test would hang.
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	resp, err := newClient(t).Get(ln.URL() + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 0, 64)
	for i := 0; i < 5; i++ {
		want := fmt.Sprintf("data: event %d\n\n", i)
		buf = buf[:0]
		for len(buf) < len(want) {
			chunk := make([]byte, len(want)-len(buf))
			n, err := resp.Body.Read(chunk)
			buf = append(buf, chunk[:n]...)
			if err != nil {
				t.Fatalf("event %d: %v after %q", i, err, buf)
			}
		}
		if string(buf) != want {
			t.Fatalf("event %d = %q, want %q", i, buf, want)
		}
		next <- struct{}{}
	}
}

func TestConcurrentRequestsOverTenTunnels(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	const tunnels, requests, workers = 10, 1000, 64
	urls := make([]string, tunnels)
	for i := range urls {
		ln := listen(t, gw)
		name := fmt.Sprintf("tunnel-%d", i)
		tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s|%s|%s", name, r.URL.Query().Get("n"), body)
		}))
		urls[i] = ln.URL()
	}
	c := newClient(t)
	jobs := make(chan int)
	errs := make(chan error, requests)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for n := range jobs {
				i := n % tunnels
				payload := fmt.Sprintf("payload-%d", n)
				resp, err := c.Post(fmt.Sprintf("%s/r?n=%d", urls[i], n), "text/plain", strings.NewReader(payload))
				if err != nil {
					errs <- err
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("tunnel-%d|%d|%s", i, n, payload); resp.StatusCode != 200 || string(b) != want {
					errs <- fmt.Errorf("request %d: %d %q, want %q", n, resp.StatusCode, b, want)
				}
			}
		})
	}
	for n := 0; n < requests; n++ {
		jobs <- n
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLargeTransfersStreamWithFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MB")
	}
	// Not parallel: it measures the heap.
	gw, _ := gateway(t, nil)
	ln := listen(t, gw)
	const size = 100 << 20
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/download":
			w.Header().Set("Content-Length", fmt.Sprint(size))
			io.Copy(w, io.LimitReader(pattern{}, size))
		}
	}))
	c := newClient(t)

	want := sha256.New()
	io.Copy(want, io.LimitReader(pattern{}, size))
	wantSum := fmt.Sprintf("%x", want.Sum(nil))

	peak := watchHeap(t)
	resp, err := c.Post(ln.URL()+"/upload", "application/octet-stream", io.LimitReader(pattern{}, size))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := fmt.Sprintf("%d %s", size, wantSum); string(b) != got {
		t.Fatalf("upload: agent saw %q, want %q", b, got)
	}

	resp, err = c.Get(ln.URL() + "/download")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || fmt.Sprintf("%x", h.Sum(nil)) != wantSum {
		t.Fatalf("download: %d bytes, err %v, hash match %v", n, err, fmt.Sprintf("%x", h.Sum(nil)) == wantSum)
	}
	// The whole path holds a few windows and buffers, not the body.
	if grew := peak(); grew > 48<<20 {
		t.Errorf("heap grew by %d MiB while moving 2 x %d MiB", grew>>20, size>>20)
	}
}

// pattern is an endless deterministic byte stream.
type pattern struct{}

func (pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return len(p), nil
}

func TestWebSocketEchoThroughTunnel(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	ln := listen(t, gw)
	tunneltest.Serve(t, ln, http.HandlerFunc(e2e.WSEcho))
	e2e.CheckWSEcho(t, ln.URL())
}
