package tunnel_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// headersHandler answers with the request's headers and Host, as JSON.
var headersHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := r.Header.Clone()
	h.Set("Host", r.Host)
	json.NewEncoder(w).Encode(h)
})

func seenHeaders(t *testing.T, resp *http.Response) http.Header {
	t.Helper()
	defer resp.Body.Close()
	var h http.Header
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// The headers the gateway owns cannot be forged by a client, nor stripped
// by naming them in Connection.
func TestGatewayOwnedHeaders(t *testing.T) {
	t.Parallel()
	for _, trust := range []bool{false, true} {
		gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, TrustProxy: trust})
		ln := listen(t, gw)
		tunneltest.Serve(t, ln, headersHandler)
		req, _ := http.NewRequest(http.MethodGet, ln.URL()+"/x", nil)
		req.Header.Set("X-Forwarded-Prefix", "/evil")
		req.Header.Set("X-Real-Ip", "192.0.2.66")
		req.Header.Set("X-Forwarded-Port", "1")
		req.Header.Set("X-Tunnel-Client", "192.0.2.99:1")
		req.Header.Set("Connection", "X-Request-Id, X-Forwarded-For, X-Forwarded-Prefix, Traceparent")
		resp, err := newClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		h := seenHeaders(t, resp)
		wantPrefix := "/" + ln.ID()
		if trust {
			wantPrefix = "/evil/" + ln.ID() // a trusted proxy's prefix comes first
		}
		if got := h.Get("X-Forwarded-Prefix"); got != wantPrefix {
			t.Errorf("trust %v: X-Forwarded-Prefix %q, want %q", trust, got, wantPrefix)
		}
		if got := h.Get("X-Real-Ip"); trust != (got == "192.0.2.66") || (!trust && got != "") {
			t.Errorf("trust %v: X-Real-Ip %q", trust, got)
		}
		if got := h.Get("X-Forwarded-Port"); !trust && got != "" {
			t.Errorf("untrusted X-Forwarded-Port passed: %q", got)
		}
		if got := h.Get("X-Tunnel-Client"); got != "" {
			t.Errorf("X-Tunnel-Client reached the agent: %q", got)
		}
		if h.Get("X-Request-Id") == "" || h.Get("X-Forwarded-For") == "" {
			t.Errorf("trust %v: naming them in Connection stripped X-Request-Id %q or X-Forwarded-For %q", trust, h.Get("X-Request-Id"), h.Get("X-Forwarded-For"))
		}
	}
}

// An HTTP/1.0 request without Host reaches the app with the tunnel's host,
// not the address the gateway dials the agent at.
func TestRequestWithoutHost(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	ln := listen(t, gw)
	tunneltest.Serve(t, ln, headersHandler)
	resp, body := rawRequest(t, gw.URL, "GET /"+ln.ID()+"/x HTTP/1.0\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s", resp.Status, body)
	}
	var h http.Header
	json.Unmarshal([]byte(body), &h)
	u, _ := url.Parse(ln.URL())
	if got := h.Get("Host"); got != u.Host {
		t.Errorf("Host %q, want the tunnel's %q", got, u.Host)
	}
}
