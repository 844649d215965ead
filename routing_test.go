package tunnel_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// doHost sends a GET for path to the gateway with the given Host header.
func doHost(t *testing.T, c *http.Client, gwURL, host, path string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, gwURL+path, nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// A Host is compared without case, port or trailing dot; a host under the
// gateway's domain is routed by its subdomain or refused, never by its
// path; and a tunnel's host owns every path, the agent endpoint's too.
func TestHostRouting(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, &tunnel.Server{Domain: "Tunnel.Test."})
	a := listen(t, gw)
	b := listen(t, gw)
	tunneltest.Serve(t, a, http.HandlerFunc(echo))
	tunneltest.Serve(t, b, http.HandlerFunc(echo))
	c := newClient(t)
	port := gw.URL[strings.LastIndex(gw.URL, ":"):]

	for _, host := range []string{
		a.ID() + ".tunnel.test" + port,
		a.ID() + ".tunnel.test." + port,
		strings.ToUpper(a.ID()) + ".TUNNEL.test",
		a.ID() + ".tunnel.test.",
	} {
		resp, _ := doHost(t, c, gw.URL, host, "/"+b.ID()+"/x")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Echo-Path") != "/"+b.ID()+"/x" {
			t.Errorf("Host %q: %d, path %q; want tunnel %s by its host, the path unstripped", host, resp.StatusCode, resp.Header.Get("X-Echo-Path"), a.ID())
		}
	}
	// Under the domain but not a tunnel's host: 404, not the path's tunnel.
	for _, host := range []string{"nope-nope.tunnel.test.", "x." + a.ID() + ".tunnel.test", "bad_label.tunnel.test"} {
		resp, body := doHost(t, c, gw.URL, host, "/"+b.ID()+"/x")
		wantError(t, resp.StatusCode, resp.Header, body, http.StatusNotFound, tunnel.CodeTunnelNotFound)
	}
	// The domain itself routes by path.
	if resp, _ := doHost(t, c, gw.URL, "TUNNEL.TEST.", "/"+b.ID()+"/y"); resp.StatusCode != 200 || resp.Header.Get("X-Echo-Path") != "/y" {
		t.Errorf("the gateway's own host: %d %q, want path routing", resp.StatusCode, resp.Header.Get("X-Echo-Path"))
	}
	// The agent endpoint's path on a tunnel's host belongs to the tunnel.
	resp, _ := doHost(t, c, gw.URL, a.ID()+".tunnel.test", protocol.ConnectPath)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Echo-Path") != protocol.ConnectPath {
		t.Errorf("%s on a tunnel's host: %d %q, want the tunnel to answer", protocol.ConnectPath, resp.StatusCode, resp.Header.Get("X-Echo-Path"))
	}
}

// GET /<id> under path routing redirects to /<id>/ (query kept), so that
// the page's relative links stay inside the tunnel; other methods and
// deeper paths are forwarded as they are.
func TestPathRoutingRedirectsTheBareTunnelPath(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	ln := listen(t, gw)
	tunneltest.Serve(t, ln, http.HandlerFunc(echo))
	noFollow := newClient(t)
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(method, ln.URL()+"?a=1&b=%2F", nil)
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "/"+ln.ID()+"/?a=1&b=%2F" {
			t.Errorf("%s %s: %d Location %q, want 308 to /%s/?a=1&b=%%2F", method, ln.URL(), resp.StatusCode, resp.Header.Get("Location"), ln.ID())
		}
	}
	// A browser that follows it lands in the tunnel.
	status, hdr, _ := get(t, newClient(t), ln.URL())
	if status != 200 || hdr.Get("X-Echo-Path") != "/" {
		t.Errorf("following the redirect: %d path %q", status, hdr.Get("X-Echo-Path"))
	}
	resp, err := noFollow.Post(ln.URL(), "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Echo-Path") != "/" {
		t.Errorf("POST to the bare path: %d %q, want it forwarded to /", resp.StatusCode, resp.Header.Get("X-Echo-Path"))
	}
}
