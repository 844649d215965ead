package tunnel_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
)

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

// A Forwarder keeps a local connection for each request a busy tunnel
// has in flight, as the gateway keeps a stream for each (256 idle): rounds
// of 100 concurrent requests reuse the connections of the first round
// instead of opening new ones. With 64 kept, each round after the first
// opened about 36 more.
func TestForwardReusesLocalConnections(t *testing.T) {
	t.Parallel()
	const concurrent, rounds = 100, 3
	var opened atomic.Int64
	var arrived atomic.Int64
	var release chan struct{}
	local := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Answer once the whole round has arrived, so that each round
		// needs its 100 connections at once.
		if arrived.Add(1)%concurrent == 0 {
			close(release)
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "ok")
	}))
	local.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			opened.Add(1)
		}
	}
	local.Start()
	t.Cleanup(local.Close)
	gw, _ := gateway(t, nil)
	fw, err := tunnel.Forward(context.Background(), gw.URL, local.URL, tunnel.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })
	c := newClient(t)
	for round := range rounds {
		release = make(chan struct{})
		errs := make(chan error, concurrent)
		for range concurrent {
			go func() {
				resp, err := c.Get(fw.URL() + "/")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				errs <- err
			}()
		}
		for range concurrent {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	// The first round opens 100; a few more may be opened by a request
	// that arrives as its connection is being returned to the pool.
	if n := opened.Load(); n < concurrent || n > concurrent+concurrent/10 {
		t.Errorf("%d rounds of %d concurrent requests opened %d local connections, want %d to %d",
			rounds, concurrent, n, concurrent, concurrent+concurrent/10)
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

// Forward with WithInspector records what it forwards, and a replay goes
// to the local service.
func TestForwardRecords(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	var hits atomic.Int32
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "local "+r.URL.Path)
	}))
	t.Cleanup(local.Close)
	fw, err := tunnel.Forward(t.Context(), gw.URL, local.URL, tunnel.WithLogger(quiet), tunnel.WithInspector(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })
	if status, _, _ := get(t, newClient(t), fw.URL()+"/hook"); status != 200 {
		t.Fatal(status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := fw.Inspector().Next(ctx)
	if err != nil || e.URL != "/hook" || string(e.ResponseBody.Data) != "local /hook" {
		t.Fatalf("recorded %+v, %v", e, err)
	}
	if _, err := fw.Inspector().Replay(ctx, e.ID, nil); err != nil {
		t.Fatal(err)
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("the local service got %d requests, want 2 (the replay too)", n)
	}
}
