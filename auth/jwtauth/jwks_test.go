package jwtauth

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Key rotation: a token signed by a key the provider has just published
// is accepted after one fetch of the set, one signed by the old key
// still is while that key is published, and no longer once the provider
// withdrew it and the set was fetched again.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := newES256Key(t, "2024-old"), newES256Key(t, "2025-new")
	srv := newJWKSServer(t, jwkList(t, oldKey)...)
	clock := newFakeClock()
	a := mustNew(t, srv.config(), clock)
	wantRequests := func(n int64) {
		t.Helper()
		if got := srv.requests.Load(); got != n {
			t.Fatalf("the JWK set was requested %d times, want %d", got, n)
		}
	}
	accept := func(k testKey) {
		t.Helper()
		if id, err := authenticate(a, k.sign(t, claims(clock.Now(), nil))); err != nil || id.Subject != "jwt:alice" {
			t.Fatalf("token of %s: %+v, %v; want jwt:alice", k.kid, id, err)
		}
	}
	refuse := func(k testKey) error {
		t.Helper()
		tok := k.sign(t, claims(clock.Now(), nil))
		_, err := authenticate(a, tok)
		checkRefusal(t, err, tok, "invalid agent token: unknown signing key")
		if !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("errors.Is(err, ErrUnknownKey) = false for %v", err)
		}
		return err
	}
	wantRequests(1) // New's
	accept(oldKey)
	wantRequests(1)

	// The provider publishes the new key next to the old one. A token of
	// the new key within MinRefreshInterval of the last fetch is refused
	// without a fetch; after it, the fetch finds the key.
	srv.publish(t, jwkList(t, oldKey, newKey)...)
	var tooSoon errTooSoon
	if err := refuse(newKey); !errors.As(err, &tooSoon) {
		t.Fatalf("refusal within MinRefreshInterval: %v, want errTooSoon in its cause", err)
	}
	wantRequests(1)
	clock.Advance(DefaultMinRefreshInterval)
	accept(newKey)
	wantRequests(2)
	accept(oldKey)
	accept(newKey)
	wantRequests(2)

	// The provider withdraws the old key. The set in hand still has it
	// until it is MaxKeyAge old; then the next call fetches it again.
	srv.publish(t, jwkList(t, newKey)...)
	accept(oldKey)
	wantRequests(2)
	clock.Advance(DefaultMaxKeyAge)
	refuse(oldKey)
	wantRequests(3)
	accept(newKey)
	wantRequests(3)
}

// A burst of tokens naming a key nobody published makes one fetch of
// the set, shared by the concurrent calls, and refuses them all; more
// within MinRefreshInterval make none.
func TestUnknownKeyDoesNotHammerTheKeyServer(t *testing.T) {
	t.Parallel()
	known := newES256Key(t, "known")
	srv := newJWKSServer(t, jwkList(t, known)...)
	clock := newFakeClock()
	a := mustNew(t, srv.config(), clock)
	clock.Advance(DefaultMinRefreshInterval)

	burst := func() {
		t.Helper()
		var tokens []string
		for i := range 50 {
			k := newES256Key(t, fmt.Sprintf("unknown-%d", i))
			tokens = append(tokens, k.sign(t, claims(clock.Now(), nil)))
		}
		errs := make(chan error, len(tokens))
		var wg sync.WaitGroup
		for _, tok := range tokens {
			wg.Go(func() {
				_, err := authenticate(a, tok)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("err = %v, want ErrUnknownKey", err)
			}
		}
	}
	burst()
	if got := srv.requests.Load(); got != 2 {
		t.Fatalf("after a burst of 50 unknown keys: %d requests, want 2 (New's and one fetch)", got)
	}
	clock.Advance(DefaultMinRefreshInterval / 2)
	burst()
	if got := srv.requests.Load(); got != 2 {
		t.Fatalf("after a second burst within MinRefreshInterval: %d requests, want 2", got)
	}
	if _, err := authenticate(a, known.sign(t, claims(clock.Now(), nil))); err != nil {
		t.Fatalf("the known key after the bursts: %v", err)
	}
}

// A key server that fails gets FetchAttempts requests, no more; a token
// naming an unknown key is then refused as unauthorized, with the fetch's
// failure as its cause, within the fetch's bounds; and the keys fetched
// before keep working.
func TestKeyServerDown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		hang     bool
		cfg      Config
		attempts int
		timeout  bool // whether the cause is a timeout
	}{
		{"503", http.StatusServiceUnavailable, false, Config{}, DefaultFetchAttempts, false},
		{"429", http.StatusTooManyRequests, false, Config{FetchAttempts: 2}, 2, false},
		{"404 is not retried", http.StatusNotFound, false, Config{}, 1, false},
		{"hangs", 0, true, Config{FetchTimeout: 100 * time.Millisecond, FetchAttempts: 2}, 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			known := newES256Key(t, "known")
			srv := newJWKSServer(t, jwkList(t, known)...)
			cfg := srv.config()
			cfg.FetchTimeout, cfg.FetchAttempts = tt.cfg.FetchTimeout, tt.cfg.FetchAttempts
			clock := newFakeClock()
			a := mustNew(t, cfg, clock)
			srv.fail(tt.status, tt.hang)
			clock.Advance(DefaultMinRefreshInterval)

			start := time.Now()
			tok := newES256Key(t, "rotated-in").sign(t, claims(clock.Now(), nil))
			_, err := authenticate(a, tok)
			elapsed := time.Since(start)
			checkRefusal(t, err, tok, "invalid agent token: unknown signing key")
			var fe *FetchError
			if !errors.As(err, &fe) || fe.Attempts != tt.attempts {
				t.Fatalf("err = %v, want a *FetchError of %d attempts in its cause", err, tt.attempts)
			}
			var ne net.Error // a *tunnel.Error is one too: look past it
			if tt.timeout && !(errors.As(fe.Err, &ne) && ne.Timeout()) {
				t.Errorf("err = %v, want a timeout in its cause", err)
			}
			if got := srv.requests.Load(); got != int64(1+tt.attempts) {
				t.Errorf("the key server got %d requests, want %d (New's and %d attempts)", got, 1+tt.attempts, tt.attempts)
			}
			if elapsed > 5*time.Second {
				t.Errorf("the refusal took %v", elapsed)
			}
			if _, err := authenticate(a, known.sign(t, claims(clock.Now(), nil))); err != nil {
				t.Errorf("a token of a key fetched before: %v", err)
			}
		})
	}
}

// New fetches the set, and fails, after its attempts, when it cannot.
func TestNewFailsWhenTheKeyServerIsDown(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwkList(t, newES256Key(t, "k"))...)
	srv.fail(http.StatusBadGateway, false)
	_, err := New(t.Context(), srv.config())
	var fe *FetchError
	if !errors.As(err, &fe) || fe.Attempts != DefaultFetchAttempts {
		t.Fatalf("New = %v, want a *FetchError of %d attempts", err, DefaultFetchAttempts)
	}
	if srv.requests.Load() != DefaultFetchAttempts {
		t.Fatalf("the key server got %d requests, want %d", srv.requests.Load(), DefaultFetchAttempts)
	}
}

// When the set is older than MaxKeyAge and cannot be fetched again, the
// keys in hand stay in use, the Logger gets one warning, and the next
// attempt waits for MinRefreshInterval.
func TestStaleKeySetStaysInUse(t *testing.T) {
	t.Parallel()
	k := newES256Key(t, "k")
	srv := newJWKSServer(t, jwkList(t, k)...)
	logs := &logRecords{}
	cfg := srv.config()
	cfg.Logger = slog.New(logs)
	cfg.FetchAttempts = 1
	clock := newFakeClock()
	a := mustNew(t, cfg, clock)
	srv.fail(http.StatusInternalServerError, false)
	clock.Advance(DefaultMaxKeyAge)
	for range 3 {
		if _, err := authenticate(a, k.sign(t, claims(clock.Now(), nil))); err != nil {
			t.Fatalf("token of the stale set's key: %v", err)
		}
	}
	if got := srv.requests.Load(); got != 2 {
		t.Fatalf("the key server got %d requests, want 2 (New's and one refresh)", got)
	}
	if got := logs.count(slog.LevelWarn); got != 1 {
		t.Fatalf("%d warnings, want 1", got)
	}
	srv.fail(0, false)
	clock.Advance(DefaultMinRefreshInterval)
	if _, err := authenticate(a, k.sign(t, claims(clock.Now(), nil))); err != nil {
		t.Fatal(err)
	}
	if got := srv.requests.Load(); got != 3 {
		t.Fatalf("the key server got %d requests, want 3", got)
	}
}

// A fetched set's shared secrets are ignored: HMAC tokens are not
// accepted on the strength of a URL. With an HMAC secret configured too,
// an HMAC token naming the RSA key of the set and "signed" with that
// key's public bytes (PEM, DER, the JWK's modulus) is refused.
func TestFetchedSetAndHMACConfusion(t *testing.T) {
	t.Parallel()
	rsaKey := key(t, "RS256")
	oct := key(t, "HS256").withKID("shared")
	srv := newJWKSServer(t, append(jwkList(t, rsaKey), oct.jwk(t, false))...)

	onlyURL := mustNew(t, srv.config(), nil)
	tok := oct.sign(t, claims(time.Now(), nil))
	_, err := authenticate(onlyURL, tok)
	checkRefusal(t, err, tok, "invalid agent token: signing algorithm not accepted")

	cfg := srv.config()
	cfg.HMACSecret = []byte("the gateway's own secret, which the attacker lacks")
	both := mustNew(t, cfg, nil)
	pub := rsaKey.public.(*rsa.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	forgeries := map[string][]byte{
		"PEM":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"DER":     der,
		"PKCS1":   x509.MarshalPKCS1PublicKey(pub),
		"modulus": []byte(base64.RawURLEncoding.EncodeToString(pub.N.Bytes())),
	}
	for name, secret := range forgeries {
		for _, alg := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS512} {
			forged := testKey{name: name, method: alg, private: secret, kid: rsaKey.kid}
			tok := forged.sign(t, claims(time.Now(), nil))
			_, err := authenticate(both, tok)
			checkRefusal(t, err, tok, "invalid agent token: bad signature")
			if !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
				t.Errorf("%s/%s: err = %v, want jwt.ErrTokenSignatureInvalid", name, alg.Alg(), err)
			}
			forged.kid = "shared" // the oct key of the fetched set
			tok = forged.sign(t, claims(time.Now(), nil))
			_, err = authenticate(both, tok)
			checkRefusal(t, err, tok, "invalid agent token: bad signature")
		}
	}
	if got := srv.requests.Load(); got != 2 {
		t.Errorf("the key server got %d requests, want 2 (one per New): a kid whose key does not fit is no reason to fetch", got)
	}
	if !bytes.Contains(srv.set, []byte(`"oct"`)) {
		t.Fatal("the served set has no oct key to ignore")
	}
}

// A JWK's "alg" binds it: a token of another algorithm that names it is
// refused, even one its key type could verify.
func TestJWKAlgorithmBindsTheKey(t *testing.T) {
	t.Parallel()
	rsaKey := key(t, "RS256")
	srv := newJWKSServer(t, rsaKey.jwk(t, true))
	a := mustNew(t, srv.config(), nil)
	if _, err := authenticate(a, rsaKey.sign(t, claims(time.Now(), nil))); err != nil {
		t.Fatal(err)
	}
	tok := rsaKey.withMethod(jwt.SigningMethodPS256).sign(t, claims(time.Now(), nil))
	_, err := authenticate(a, tok)
	checkRefusal(t, err, tok, "invalid agent token: the signing key it names does not verify its algorithm")
}
