package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/tunneltest"
)

func TestRequestValidation(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, MaxBodyBytes: limit, MaxURIBytes: 2048, MaxHeaderCount: 20, MaxHeaderBytes: 8 << 10})
	ln := listen(t, gw)
	var received atomic.Int64
	var calls atomic.Int64
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		n, _ := io.Copy(io.Discard, r.Body)
		received.Store(n)
		fmt.Fprintf(w, "%d", n)
	}))
	c := newClient(t)
	base := ln.URL()

	do := func(req *http.Request) (int, http.Header, string) {
		t.Helper()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Method, req.URL, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}

	t.Run("body at the limit passes", func(t *testing.T) {
		req, _ := http.NewRequest("POST", base+"/up", strings.NewReader(strings.Repeat("x", limit)))
		if status, _, body := do(req); status != 200 || body != fmt.Sprint(limit) {
			t.Fatalf("%d %q", status, body)
		}
	})
	t.Run("content-length over the limit", func(t *testing.T) {
		before := calls.Load()
		req, _ := http.NewRequest("POST", base+"/up", strings.NewReader(strings.Repeat("x", limit+1)))
		status, hdr, body := do(req)
		wantError(t, status, hdr, body, http.StatusRequestEntityTooLarge, tunnel.CodePayloadTooLarge)
		if calls.Load() != before {
			t.Error("the agent was called for a body known to be too large")
		}
	})
	t.Run("chunked body over the limit", func(t *testing.T) {
		// No Content-Length: the gateway must count while streaming.
		pr, pw := io.Pipe()
		go func() {
			chunk := []byte(strings.Repeat("y", 4096))
			for i := 0; i < 4*limit/len(chunk); i++ {
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", base+"/up", pr)
		status, hdr, body := do(req)
		pr.CloseWithError(errors.New("done"))
		wantError(t, status, hdr, body, http.StatusRequestEntityTooLarge, tunnel.CodePayloadTooLarge)
		if got := received.Load(); got > limit {
			t.Errorf("the agent read %d bytes, over the %d limit", got, limit)
		}
	})
	t.Run("uri too long", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/"+strings.Repeat("a", 3000), nil)
		status, hdr, body := do(req)
		wantError(t, status, hdr, body, http.StatusRequestURITooLong, tunnel.CodeURITooLong)
	})
	t.Run("too many headers", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/", nil)
		for i := 0; i < 30; i++ {
			req.Header.Set(fmt.Sprintf("X-H%d", i), "v")
		}
		status, hdr, body := do(req)
		wantError(t, status, hdr, body, http.StatusRequestHeaderFieldsTooLarge, tunnel.CodeHeadersTooLarge)
	})
	t.Run("headers too large", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/", nil)
		req.Header.Set("X-Big", strings.Repeat("b", 9<<10))
		status, hdr, body := do(req)
		wantError(t, status, hdr, body, http.StatusRequestHeaderFieldsTooLarge, tunnel.CodeHeadersTooLarge)
	})
	for _, path := range []string{"/../etc/passwd", "/a/../../b", "/%2e%2e/x", "/a/..%2f..%2fb", "/%2E%2E"} {
		t.Run("traversal "+path, func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+"/x", nil)
			req.URL.Opaque = "" // keep the raw path as written
			req.URL.RawPath = "/" + ln.ID() + path
			req.URL.Path = "/" + ln.ID() + mustUnescape(t, path)
			status, hdr, body := do(req)
			wantError(t, status, hdr, body, http.StatusBadRequest, tunnel.CodeInvalidRequest)
		})
	}
}

func mustUnescape(t *testing.T, p string) string {
	t.Helper()
	r := strings.NewReplacer("%2e", ".", "%2E", ".", "%2f", "/", "%2F", "/")
	return r.Replace(p)
}

func TestRequestRateLimit(t *testing.T) {
	t.Parallel()
	lim := ratelimit.NewLocal(ratelimit.Limit{Events: 3, Period: time.Hour}, nil)
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, RequestLimiter: lim})
	a, b := listen(t, gw), listen(t, gw)
	tunneltest.Serve(t, a, http.HandlerFunc(echo))
	tunneltest.Serve(t, b, http.HandlerFunc(echo))
	c := newClient(t)
	for i := 0; i < 3; i++ {
		if status, _, _ := get(t, c, a.URL()+"/"); status != 200 {
			t.Fatalf("request %d: %d", i, status)
		}
	}
	status, hdr, body := get(t, c, a.URL()+"/")
	wantError(t, status, hdr, body, http.StatusTooManyRequests, tunnel.CodeRateLimited)
	if ra := hdr.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	// Tunnels have separate budgets.
	if status, _, _ := get(t, c, b.URL()+"/"); status != 200 {
		t.Fatalf("other tunnel: %d", status)
	}
}

func TestAgentRateLimit(t *testing.T) {
	t.Parallel()
	lim := ratelimit.NewLocal(ratelimit.Limit{Events: 1, Period: time.Hour}, nil)
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, AgentLimiter: lim})
	listen(t, gw)
	_, err := tunnel.Listen(context.Background(), gw.URL, tunnel.WithLogger(quiet))
	if !errors.Is(err, tunnel.ErrRateLimited) {
		t.Fatalf("second agent from the same IP: %v, want ErrRateLimited", err)
	}
}

// failingLimiter is a limiter whose backend is down.
type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.New("backend down")
}

func TestLimiterFailurePolicy(t *testing.T) {
	t.Parallel()
	for _, failClosed := range []bool{false, true} {
		gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, RequestLimiter: failingLimiter{}, LimiterFailClosed: failClosed})
		ln := listen(t, gw)
		tunneltest.Serve(t, ln, http.HandlerFunc(echo))
		status, hdr, body := get(t, newClient(t), ln.URL()+"/")
		if !failClosed {
			if status != 200 {
				t.Errorf("fail-open: status %d", status)
			}
			continue
		}
		wantError(t, status, hdr, body, http.StatusServiceUnavailable, tunnel.CodeUnavailable)
	}
}

func TestTrustProxy(t *testing.T) {
	t.Parallel()
	for _, trust := range []bool{false, true} {
		lim := ratelimit.NewLocal(ratelimit.Limit{Events: 1, Period: time.Hour}, nil)
		gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, TrustProxy: trust, AgentLimiter: lim})
		ln := listen(t, gw)
		tunneltest.Serve(t, ln, http.HandlerFunc(echo))
		req, _ := http.NewRequest("GET", ln.URL()+"/", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		req.Header.Set("X-Forwarded-Proto", "https")
		resp, err := newClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		xff, proto := resp.Header.Get("X-Echo-Forwarded-For"), resp.Header.Get("X-Echo-Forwarded-Proto")
		if trust && (xff != "203.0.113.7, 127.0.0.1" || proto != "https") {
			t.Errorf("trusted proxy: X-Forwarded-For %q, Proto %q", xff, proto)
		}
		if !trust && (xff != "127.0.0.1" || proto != "http") {
			t.Errorf("untrusted headers passed on: X-Forwarded-For %q, Proto %q", xff, proto)
		}
	}
}

func TestSentinelErrorsAreNotMutated(t *testing.T) {
	t.Parallel()
	auth := tunnel.AuthenticatorFunc(func(context.Context, *http.Request) (tunnel.Identity, error) {
		return tunnel.Identity{}, tunnel.ErrUnauthorized
	})
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, Authenticator: auth})
	c := newClient(t)
	ids := map[string]bool{}
	for i := 0; i < 3; i++ {
		status, hdr, body := get(t, c, gw.URL+"/_tunnel/connect")
		pe := wantError(t, status, hdr, body, http.StatusUnauthorized, tunnel.CodeUnauthorized)
		ids[pe.ErrorID] = true
	}
	if len(ids) != 3 {
		t.Errorf("three refusals got %d distinct error ids", len(ids))
	}
	if tunnel.ErrUnauthorized.ID != "" {
		t.Errorf("the sentinel's ID was set to %q", tunnel.ErrUnauthorized.ID)
	}
}
