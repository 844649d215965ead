package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/ratelimit"
)

// testCA is a certificate authority of a test's own.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tunnel test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a certificate for names and its key to PEM files, and
// returns their paths.
func (ca *testCA) issue(t *testing.T, names ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// forward opens a tunnel named name to local through the gateway at
// gatewayURL, trusting roots and dialing loopback for its domain, and
// closes it when the test ends.
func forward(t *testing.T, gatewayURL, name, local string, roots *x509.CertPool) *tunnel.Forwarder {
	t.Helper()
	tlsConfig := &tls.Config{RootCAs: roots}
	fw, err := tunnel.Forward(t.Context(), gatewayURL, local,
		tunnel.WithName(name), tunnel.WithTLSConfig(tlsConfig), tunnel.WithDialer(loopbackDial))
	if err != nil {
		t.Fatalf("Forward through %s: %v", gatewayURL, err)
	}
	t.Cleanup(func() { fw.Close() })
	return fw
}

// startTLSGateway starts a gateway with args and returns it with the
// ports of its HTTPS listener and of its plain-HTTP listener ("" if none).
func startTLSGateway(t *testing.T, args ...string) (gw *running, httpsPort, httpPort string) {
	t.Helper()
	addrs, plain := make(chan string, 1), make(chan string, 1)
	gw = start(t, command.gateway, nil, command{
		listening:     func(a net.Addr) { addrs <- a.String() },
		httpListening: func(a net.Addr) { plain <- a.String() },
	}, args...)
	select {
	case addr := <-addrs:
		_, httpsPort, _ = net.SplitHostPort(addr)
	case <-gw.done:
		t.Fatalf("gateway returned before listening: %v\nstderr:\n%s", gw.err, gw.stderr)
	case <-time.After(waitTimeout):
		t.Fatalf("gateway did not start; stderr:\n%s", gw.stderr)
	}
	select {
	case addr := <-plain:
		_, httpPort, _ = net.SplitHostPort(addr)
	default:
	}
	return gw, httpsPort, httpPort
}

// TestGatewayTLSCert serves a certificate of the test's CA for the
// domain and its subdomains: the agent connects over TLS, the public
// reaches the tunnel at an https subdomain URL over HTTP/2, the plain-HTTP
// listener redirects there, and --hsts adds its header.
func TestGatewayTLSCert(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	certFile, keyFile := ca.issue(t, "example.test", "*.example.test")
	local := localService(t)
	for _, tt := range []struct {
		name      string
		hsts      []string
		wantHSTS  string
		wantProto int
	}{
		{"without HSTS", nil, "", 2},
		{"with HSTS", []string{"--hsts", "8760h"}, "max-age=31536000", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gw, port, httpPort := startTLSGateway(t, append([]string{"--listen", "127.0.0.1:0", "--insecure-no-auth",
				"--domain", "example.test", "--tls-cert", certFile, "--tls-key", keyFile, "--http-listen", "127.0.0.1:0"}, tt.hsts...)...)
			if httpPort == "" {
				t.Fatalf("no plain-HTTP listener; stdout:\n%s", gw.stdout)
			}
			fw := forward(t, "https://example.test:"+port, "tls-app", local.URL, ca.pool)
			if want := "https://tls-app.example.test:" + port; fw.URL() != want {
				t.Errorf("tunnel URL %q; want %q", fw.URL(), want)
			}
			if _, ok := gw.stdout.find("gateway listening on 127.0.0.1:" + port + " (https)"); !ok {
				t.Errorf("start line does not say https:\n%s", gw.stdout)
			}

			c := testClient(t, ca.pool)
			resp, err := c.Get(fw.URL() + "/hello")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != tt.wantProto {
				t.Errorf("GET = %d over %s; want 200 over HTTP/%d", resp.StatusCode, resp.Proto, tt.wantProto)
			}
			if got := resp.Header.Get("Strict-Transport-Security"); got != tt.wantHSTS {
				t.Errorf("Strict-Transport-Security = %q; want %q", got, tt.wantHSTS)
			}

			resp, err = c.Get("http://tls-app.example.test:" + httpPort + "/a/b?c=d")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := "https://tls-app.example.test:" + port + "/a/b?c=d"; resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
				t.Errorf("plain HTTP: %d to %q; want 308 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
			}

			fw.Close()
			if err := gw.stop(t); err != nil {
				t.Errorf("gateway: %v", err)
			}
		})
	}
}

// TestGatewayTLSBadCert checks that a certificate that cannot be loaded
// stops the gateway at startup, naming the flags.
func TestGatewayTLSBadCert(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing.pem")
	var stdout, stderr output
	c := command{stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
	err := c.gateway(t.Context(), []string{"--insecure-no-auth", "--listen", "127.0.0.1:0", "--tls-cert", missing, "--tls-key", missing})
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("gateway with a missing certificate: %v; want an error naming --tls-cert", err)
	}
}

func TestHostPolicy(t *testing.T) {
	t.Parallel()
	errStore := errors.New("store down")
	exists := func(_ context.Context, id string) (bool, error) {
		switch id {
		case "live":
			return true, nil
		case "broken":
			return false, errStore
		}
		return false, nil
	}
	tests := []struct {
		host       string
		subdomains bool
		wantErr    error // nil: allowed; errAny: any error
	}{
		{"example.test", true, nil},
		{"EXAMPLE.test.", true, nil},
		{"example.test:8080", true, nil},
		{"live.example.test:80", true, nil},
		{"live.example.test", true, nil},
		{"Live.Example.Test", true, nil},
		{"gone.example.test", true, errNotATunnel},
		{"broken.example.test", true, errStore},
		{"a.live.example.test", true, errAny},
		{"-bad.example.test", true, errAny},
		{"live.example.test.evil.test", true, errAny},
		{"other.test", true, errAny},
		{"notexample.test", true, errAny},
		{"live.example.test", false, errAny},
		{"example.test", false, nil},
	}
	for _, tt := range tests {
		p := &hostPolicy{domain: "example.test", subdomains: tt.subdomains, exists: exists}
		err := p.allow(t.Context(), tt.host)
		switch {
		case tt.wantErr == nil && err != nil:
			t.Errorf("allow(%q, subdomains %v) = %v; want allowed", tt.host, tt.subdomains, err)
		case tt.wantErr == errAny && err == nil:
			t.Errorf("allow(%q, subdomains %v) allowed; want refused", tt.host, tt.subdomains)
		case tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
			t.Errorf("allow(%q, subdomains %v) = %v; want %v", tt.host, tt.subdomains, err, tt.wantErr)
		}
	}
}

// errAny stands for any error in TestHostPolicy.
var errAny = errors.New("any error")

// TestOrderBound checks the bound on new certificate orders: cache misses
// for certificates spend the rate, and are refused past it; misses for
// the account key and tokens, and hits, are never refused.
func TestOrderBound(t *testing.T) {
	t.Parallel()
	cache := autocert.DirCache(t.TempDir())
	if err := cache.Put(t.Context(), "cached.example.test", []byte("pem")); err != nil {
		t.Fatal(err)
	}
	var log output
	c := &orderBound{Cache: cache, domain: "example.test", orders: ratelimit.NewLocal(ratelimit.Limit{Events: 2, Period: time.Hour}, nil), log: newLogger(&log, false, 0)}
	get := func(key string) error {
		_, err := c.Get(t.Context(), key)
		return err
	}
	for _, key := range []string{"a.example.test", "b.example.test+rsa"} {
		if err := get(key); err != autocert.ErrCacheMiss {
			t.Errorf("Get(%q) = %v; want ErrCacheMiss within the rate", key, err)
		}
	}
	if err := get("c.example.test"); err == nil || err == autocert.ErrCacheMiss || !strings.Contains(err.Error(), "--acme-rate") {
		t.Errorf("Get past the rate = %v; want an error naming --acme-rate", err)
	}
	if _, ok := log.find("ACME order refused"); !ok {
		t.Errorf("no warning logged:\n%s", log.String())
	}
	for _, key := range []string{"acme_account+key", "acme_account.key", "c.example.test+token", "tok+http-01", "other.test"} {
		if err := get(key); err != autocert.ErrCacheMiss {
			t.Errorf("Get(%q) past the rate = %v; want ErrCacheMiss: not a certificate", key, err)
		}
	}
	if err := get("cached.example.test"); err != nil {
		t.Errorf("Get of a cached certificate past the rate = %v; want it", err)
	}
}

func TestRedirectToHTTPS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		port, host, target, want string
	}{
		{"443", "app.example.test", "/a?b=c", "https://app.example.test/a?b=c"},
		{"", "app.example.test:80", "/", "https://app.example.test/"},
		{"8443", "app.example.test:8080", "/x/../y", "https://app.example.test:8443/x/../y"},
		{"8443", "[::1]:8080", "/", "https://[::1]:8443/"},
		{"443", "[::1]", "/", "https://[::1]/"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodPost, "http://placeholder"+tt.target, nil)
		req.Host = tt.host
		rec := httptest.NewRecorder()
		redirectToHTTPS(tt.port).ServeHTTP(rec, req)
		if rec.Code != http.StatusPermanentRedirect || rec.Header().Get("Location") != tt.want {
			t.Errorf("redirect of %s%s (port %q) = %d %q; want 308 %q", tt.host, tt.target, tt.port, rec.Code, rec.Header().Get("Location"), tt.want)
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = ""
	rec := httptest.NewRecorder()
	redirectToHTTPS("443").ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("redirect without a Host = %d; want 400", rec.Code)
	}
}
