package tunnel_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// protoHandler answers with the protocol the local service was spoken to in.
var protoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, r.Proto)
})

// forward opens a Forwarder to local through gw, closed with the test.
func forward(t *testing.T, gw *tunneltest.Gateway, local string, opts ...tunnel.Option) *tunnel.Forwarder {
	t.Helper()
	fw, err := tunnel.Forward(t.Context(), gw.URL, local, append([]tunnel.Option{tunnel.WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatalf("Forward(%q): %v", local, err)
	}
	t.Cleanup(func() { fw.Close() })
	return fw
}

// Forward reaches an HTTPS local service with a development certificate
// once told its CA, and speaks HTTP/2 to it; without the CA the public
// client gets local_service_unavailable, not a hang.
func TestForwardToHTTPSLocalService(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	local := httptest.NewUnstartedServer(protoHandler)
	local.EnableHTTP2 = true
	local.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	local.StartTLS()
	t.Cleanup(local.Close)
	c := newClient(t)

	untrusted := forward(t, gw, local.URL)
	status, hdr, body := get(t, c, untrusted.URL()+"/")
	wantError(t, status, hdr, body, http.StatusBadGateway, tunnel.CodeLocalServiceUnavailable)

	pool := x509.NewCertPool()
	pool.AddCert(local.Certificate())
	trusted := forward(t, gw, local.URL, tunnel.WithLocalTLSConfig(&tls.Config{RootCAs: pool}))
	if status, _, body := get(t, c, trusted.URL()+"/"); status != 200 || body != "HTTP/2.0" {
		t.Errorf("with the local CA: %d %q, want 200 over HTTP/2.0", status, body)
	}
	skip := forward(t, gw, local.URL, tunnel.WithLocalTLSConfig(&tls.Config{InsecureSkipVerify: true}))
	if status, _, _ := get(t, c, skip.URL()+"/"); status != 200 {
		t.Errorf("with verification off: %d", status)
	}
}

// h2c:// speaks HTTP/2 without TLS to the local service, as a gRPC server
// expects; a bare port and host:port mean http://.
func TestForwardLocalURLForms(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	h2c := httptest.NewUnstartedServer(protoHandler)
	h2c.Config.Protocols = new(http.Protocols)
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	t.Cleanup(h2c.Close)
	plain := httptest.NewServer(protoHandler)
	t.Cleanup(plain.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(plain.URL, "http://"))
	c := newClient(t)

	for local, want := range map[string]string{
		strings.Replace(h2c.URL, "http://", "h2c://", 1): "HTTP/2.0",
		strings.TrimPrefix(plain.URL, "http://"):         "HTTP/1.1",
		port:                                             "HTTP/1.1",
		":" + port:                                       "HTTP/1.1",
	} {
		fw := forward(t, gw, local)
		if status, _, body := get(t, c, fw.URL()+"/"); status != 200 || body != want {
			t.Errorf("Forward to %q: %d %q, want %s", local, status, body, want)
		}
	}
	for _, bad := range []string{"ftp://x", "", "http://", "99999"} {
		if _, err := tunnel.Forward(t.Context(), gw.URL, bad, tunnel.WithLogger(quiet)); err == nil {
			t.Errorf("Forward to %q: no error", bad)
		}
	}
}

// The gateway serves HTTP/2 in cleartext to clients that know it (gRPC):
// the public side speaks HTTP/2 while the tunnel carries HTTP/1.1.
func TestPublicSideSpeaksH2C(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	ln := listen(t, gw)
	tunneltest.Serve(t, ln, http.HandlerFunc(echo))
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Post(ln.URL()+"/h2", "text/plain", strings.NewReader("over h2c"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || resp.StatusCode != 200 || string(b) != "over h2c" {
		t.Errorf("h2c request: %s %d %q", resp.Proto, resp.StatusCode, b)
	}
}

// The connection to the gateway goes through a proxy only when asked:
// HTTP_PROXY alone does not divert it.
func TestProxyOnlyWhenAsked(t *testing.T) {
	gw, _ := gateway(t, nil)
	target, _ := url.Parse(gw.URL)
	var proxied atomic.Int32
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		proxied.Add(1)
		pr.SetURL(target)
		pr.Out.URL.Path = pr.In.URL.Path
	}})
	t.Cleanup(proxy.Close)
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("HTTPS_PROXY", proxy.URL)

	direct := listen(t, gw)
	if n := proxied.Load(); n != 0 || direct.ID() == "" {
		t.Fatalf("without WithProxy the agent went through HTTP_PROXY (%d requests)", n)
	}
	proxyURL, _ := url.Parse(proxy.URL)
	via := listen(t, gw, tunnel.WithProxy(http.ProxyURL(proxyURL)))
	tunneltest.Serve(t, via, http.HandlerFunc(echo))
	if n := proxied.Load(); n == 0 {
		t.Fatal("WithProxy: the agent did not go through the proxy")
	}
	if status, _, _ := get(t, newClient(t), via.URL()+"/"); status != 200 {
		t.Errorf("tunnel through a proxy: %d", status)
	}
}
