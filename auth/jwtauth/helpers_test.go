package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/http-tunnel/tunnel"
)

// testKey is a signing key of a test, and the algorithm it signs with.
type testKey struct {
	name    string // of the subtest
	method  jwt.SigningMethod
	private any // what signs: a private key or an HMAC secret
	public  any // what verifies
	kid     string
}

// sign returns a token of claims signed by k, with k's kid in its header
// unless noKID.
func (k testKey) sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(k.method, claims)
	if k.kid != "" {
		tok.Header["kid"] = k.kid
	}
	s, err := tok.SignedString(k.private)
	if err != nil {
		t.Fatalf("sign with %s: %v", k.name, err)
	}
	return s
}

// withKID returns k naming kid in the tokens it signs ("" for none).
func (k testKey) withKID(kid string) testKey { k.kid = kid; return k }

// withMethod returns k signing with another algorithm of its family.
func (k testKey) withMethod(m jwt.SigningMethod) testKey {
	k.method, k.name = m, m.Alg()
	return k
}

// jwk returns k's public JWK, with its kid and, if alg, its algorithm.
func (k testKey) jwk(t *testing.T, alg bool) jwkset.JWK {
	t.Helper()
	md := jwkset.JWKMetadataOptions{KID: k.kid, USE: jwkset.UseSig}
	if alg {
		md.ALG = jwkset.ALG(k.method.Alg())
	}
	j, err := jwkset.NewJWKFromKey(k.public, jwkset.JWKOptions{Metadata: md, Marshal: jwkset.JWKMarshalOptions{Private: true}})
	if err != nil {
		t.Fatalf("JWK of %s: %v", k.name, err)
	}
	return j
}

// jwkList returns the JWKs of keys: each with its kid, and its algorithm
// unless it is an RSA key (which verifies RS* and PS* tokens alike).
func jwkList(t *testing.T, keys ...testKey) []jwkset.JWK {
	t.Helper()
	var list []jwkset.JWK
	for _, k := range keys {
		_, isRSA := k.public.(*rsa.PublicKey)
		list = append(list, k.jwk(t, !isRSA))
	}
	return list
}

// jwkSetJSON returns the JWK set of keys, as a provider serves it (and
// as a file holds it, "oct" keys included).
func jwkSetJSON(t *testing.T, keys ...jwkset.JWK) []byte {
	t.Helper()
	store := jwkset.NewMemoryStorage()
	for _, k := range keys {
		if err := store.KeyWrite(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	set, err := store.JSONPrivate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Freshly generated keys, one of each type, shared by the tests: RSA
// keys take a while to make.
var testKeys = sync.OnceValues(func() (map[string]testKey, error) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	keys := map[string]testKey{
		"RS256": {method: jwt.SigningMethodRS256, private: rsaKey, public: &rsaKey.PublicKey},
		"HS256": {method: jwt.SigningMethodHS256, private: []byte("a shared secret of the test, 32+ bytes long"), public: []byte("a shared secret of the test, 32+ bytes long")},
	}
	for alg, curve := range map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()} {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			return nil, err
		}
		keys[alg] = testKey{method: jwt.GetSigningMethod(alg), private: k, public: &k.PublicKey}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	keys["EdDSA"] = testKey{method: jwt.SigningMethodEdDSA, private: priv, public: pub}
	for alg, k := range keys {
		k.name, k.kid = alg, "kid-"+alg
		keys[alg] = k
	}
	return keys, nil
})

// key returns the test key of alg's family, signing with alg.
func key(t *testing.T, alg string) testKey {
	t.Helper()
	keys, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	family := map[string]string{"HS384": "HS256", "HS512": "HS256", "RS384": "RS256", "RS512": "RS256", "PS256": "RS256", "PS384": "RS256", "PS512": "RS256"}[alg]
	if family == "" {
		return keys[alg]
	}
	return keys[family].withMethod(jwt.GetSigningMethod(alg))
}

// newES256Key returns a fresh ES256 key, kid, that no configuration
// knows yet.
func newES256Key(t *testing.T, kid string) testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{name: kid, method: jwt.SigningMethodES256, private: k, public: &k.PublicKey, kid: kid}
}

// pemFile writes the public keys of keys as PEM blocks of the kinds a
// key file may hold (PKCS #1 for RSA, a certificate for Ed25519, PKIX for
// the rest) and returns the file's name.
func pemFile(t *testing.T, keys ...testKey) string {
	t.Helper()
	var data []byte
	for _, k := range keys {
		var block *pem.Block
		switch pub := k.public.(type) {
		case *rsa.PublicKey:
			block = &pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)}
		case ed25519.PublicKey:
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, k.private)
			if err != nil {
				t.Fatal(err)
			}
			block = &pem.Block{Type: "CERTIFICATE", Bytes: der}
		default:
			der, err := x509.MarshalPKIXPublicKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			block = &pem.Block{Type: "PUBLIC KEY", Bytes: der}
		}
		data = append(data, pem.EncodeToMemory(block)...)
	}
	return writeFile(t, "keys.pem", data)
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// claims returns valid claims for subject alice, expiring in an hour of
// now, with extra added.
func claims(now time.Time, extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "alice", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// jwksServer serves a JWK set over TLS on loopback and counts the
// requests for it. Its set, and whether it fails, can change.
type jwksServer struct {
	*httptest.Server
	requests atomic.Int64

	mu     sync.Mutex
	set    []byte
	status int  // answer this instead of the set, if not 0
	hang   bool // answer nothing: the connection is held open, silent
	held   []net.Conn
}

func newJWKSServer(t *testing.T, keys ...jwkset.JWK) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.publish(t, keys...)
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		set, status, hang := s.set, s.status, s.hang
		s.mu.Unlock()
		switch {
		case hang:
			// Take the connection from the server and never answer on it:
			// returning, even once the request is cancelled, would send a
			// 200 with no body, which a client may yet read.
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				s.mu.Lock()
				s.held = append(s.held, c)
				s.mu.Unlock()
			}
		case status != 0:
			http.Error(w, "unavailable", status)
		default:
			w.Header().Set("Content-Type", "application/jwk-set+json")
			w.Write(set)
		}
	}))
	t.Cleanup(func() {
		s.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.held {
			c.Close()
		}
	})
	return s
}

// publish replaces the set the server serves.
func (s *jwksServer) publish(t *testing.T, keys ...jwkset.JWK) {
	t.Helper()
	set := jwkSetJSON(t, keys...)
	s.mu.Lock()
	s.set = set
	s.mu.Unlock()
}

// fail makes the server answer status (0: the set again), or hang.
func (s *jwksServer) fail(status int, hang bool) {
	s.mu.Lock()
	s.status, s.hang = status, hang
	s.mu.Unlock()
}

// config returns a Config that fetches the server's set.
func (s *jwksServer) config() Config {
	return Config{JWKSURL: s.URL + "/.well-known/jwks.json", HTTPClient: s.Client()}
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// mustNew returns an Authenticator of cfg on clock (nil: the real one).
func mustNew(t *testing.T, cfg Config, clock *fakeClock) *Authenticator {
	t.Helper()
	now := time.Now
	if clock != nil {
		now = clock.Now
	}
	a, err := newAuthenticator(context.Background(), cfg, now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// authenticate presents token as an agent's bearer token.
func authenticate(a *Authenticator, token string) (tunnel.Identity, error) {
	r := httptest.NewRequest(http.MethodGet, "/_tunnel/connect", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return a.Authenticate(context.Background(), r)
}

// authenticateQuery presents token in the query, as the original agent's
// first versions did.
func authenticateQuery(a *Authenticator, token string) (tunnel.Identity, error) {
	r := httptest.NewRequest(http.MethodGet, "/_tunnel/connect?token="+url.QueryEscape(token), nil)
	return a.Authenticate(context.Background(), r)
}

// logRecords is a slog handler that keeps the records it gets.
type logRecords struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r)
	h.mu.Unlock()
	return nil
}
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecords) WithGroup(string) slog.Handler      { return h }

func (h *logRecords) count(level slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Level == level {
			n++
		}
	}
	return n
}
