package jwtauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// New refuses, before any token arrives, a configuration that could never
// authenticate anyone or only by a secret anyone may know; its errors say
// what is wrong and show no secret.
func TestNewFailsEarly(t *testing.T) {
	t.Parallel()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	privatePEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	onlyOct := newJWKSServer(t, key(t, "HS256").jwk(t, false))
	badJWK := []byte(`{"keys":[{"kty":"RSA","kid":"broken","n":"!!","e":"AQAB"}]}`)

	tests := []struct {
		name string
		cfg  Config
		is   error // errors.Is(err, is), if not nil
	}{
		{"no keys", Config{}, nil},
		{"only checks", Config{Issuer: "https://issuer.example", Audience: "gw"}, nil},
		{"missing key file", Config{KeyFile: filepath.Join(t.TempDir(), "absent.pem")}, fs.ErrNotExist},
		{"empty key file", Config{KeyFile: writeFile(t, "empty.pem", nil)}, nil},
		{"key file of no keys", Config{KeyFile: writeFile(t, "notes.txt", []byte("hello"))}, nil},
		{"private key", Config{KeyFile: writeFile(t, "private.pem", privatePEM)}, nil},
		{"certificate request", Config{KeyData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1}})}, nil},
		{"bad JWK", Config{KeyData: badJWK}, nil},
		{"JWK set of no keys", Config{KeyData: []byte(`{"keys":[]}`)}, nil},
		{"key file and key data", Config{KeyFile: pemFile(t, key(t, "ES256")), KeyData: []byte("x")}, nil},
		{"empty secret", Config{HMACSecret: []byte{}}, nil},
		{"the original's default secret", Config{HMACSecret: []byte("default-secret-change-in-production")}, nil},
		{"plain http", Config{JWKSURL: "http://login.example.com/jwks.json"}, nil},
		{"not http", Config{JWKSURL: "ftp://login.example.com/jwks.json"}, nil},
		{"relative URL", Config{JWKSURL: "/jwks.json"}, nil},
		{"fetched set of shared secrets only", onlyOct.config(), nil},
		{"negative timeout", Config{HMACSecret: []byte("s3cr3t"), FetchTimeout: -1}, nil},
		{"negative attempts", Config{HMACSecret: []byte("s3cr3t"), FetchAttempts: -1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := New(t.Context(), tt.cfg)
			if err == nil {
				t.Fatalf("New = %v, nil; want an error", a)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want one wrapping %v", err, tt.is)
			}
			if !strings.HasPrefix(err.Error(), "jwtauth: ") {
				t.Errorf("err = %q, want the package's prefix", err)
			}
			if s := tt.cfg.HMACSecret; len(s) > 0 && strings.Contains(err.Error(), string(s)) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
	t.Cleanup(func() { // after the parallel subtests
		if got := onlyOct.requests.Load(); got != 1 {
			t.Errorf("the set of shared secrets was fetched %d times, want 1", got)
		}
	})
}

// Plain http is allowed to loopback addresses, where keys cannot be
// tampered with on the way.
func TestJWKSURLOnLoopback(t *testing.T) {
	t.Parallel()
	set := jwkSetJSON(t, jwkList(t, key(t, "ES256"))...)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Write(set)
	}))
	t.Cleanup(srv.Close)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	for _, u := range []string{srv.URL + "/jwks.json", "http://localhost" + port + "/jwks.json"} {
		if _, err := New(t.Context(), Config{JWKSURL: u, HTTPClient: srv.Client()}); err != nil {
			t.Errorf("New with %s: %v", u, err)
		}
	}
	if requests.Load() == 0 {
		t.Fatal("the set was never fetched")
	}
}
