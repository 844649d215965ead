package tunnel_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// TestListenOverTLS runs the gateway behind TLS: the agent dials wss://
// trusting the gateway's CA through WithTLSConfig, public requests arrive
// over https, and the tunnel's URL says so. Without the CA, Listen fails
// with a certificate error.
func TestListenOverTLS(t *testing.T) {
	t.Parallel()
	eachTransport(t, testListenOverTLS)
}

func testListenOverTLS(t *testing.T, tr tunnel.Option) {
	srv := &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet}
	ts := httptest.NewUnstartedServer(srv)
	ts.StartTLS()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ts.Close()
	})
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tunnel.Listen(ctx, ts.URL, tunnel.WithLogger(quiet), tr); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Listen without the gateway's CA: %v, want a certificate error", err)
	}

	ln, err := tunnel.Listen(ctx, ts.URL, tunnel.WithLogger(quiet), tr, tunnel.WithTLSConfig(&tls.Config{RootCAs: roots}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tunneltest.Serve(t, ln, http.HandlerFunc(echo))
	if !strings.HasPrefix(ln.URL(), "https://") {
		t.Errorf("tunnel URL %q, want https", ln.URL())
	}

	client := ts.Client()
	t.Cleanup(client.CloseIdleConnections)
	// Larger than a stream window, so that frames of every size cross TLS
	// both ways.
	body := bytes.Repeat([]byte("0123456789abcdef"), 200_000)
	resp, err := client.Post(ln.URL()+"/upload", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("echo over TLS: status %d, %d of %d bytes, %v", resp.StatusCode, len(got), len(body), err)
	}
	if p := resp.Header.Get("X-Echo-Forwarded-Proto"); p != "https" {
		t.Errorf("X-Forwarded-Proto %q, want https", p)
	}
}
