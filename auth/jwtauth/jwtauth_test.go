package jwtauth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/http-tunnel/tunnel"
)

// allAlgs are the algorithms this package verifies, one subtest each.
var allAlgs = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// A token of every algorithm verifies, with its key from each source: the
// HMAC secret or a PEM key file, the same keys as a JWK set file, and a
// JWK set fetched from a URL (by kid, and without one).
func TestValidTokensOfEveryKeyType(t *testing.T) {
	t.Parallel()
	secret := key(t, "HS256").private.([]byte)
	asym := []testKey{key(t, "RS256"), key(t, "ES256"), key(t, "ES384"), key(t, "ES512"), key(t, "EdDSA")}
	jwksFile := jwkSetJSON(t, append(jwkList(t, asym...), key(t, "HS256").jwk(t, false))...)
	srv := newJWKSServer(t, jwkList(t, asym...)...)
	sources := []struct {
		name string
		cfg  Config
		hmac bool // whether HS* tokens verify
	}{
		{"secret and PEM file", Config{HMACSecret: secret, KeyFile: pemFile(t, asym...)}, true},
		{"JWK set file", Config{KeyFile: writeFile(t, "jwks.json", jwksFile)}, true},
		{"JWK set URL", srv.config(), false},
	}
	for _, src := range sources {
		a := mustNew(t, src.cfg, nil)
		for _, alg := range allAlgs {
			for _, kid := range []bool{true, false} {
				k := key(t, alg)
				if !kid {
					k = k.withKID("")
				}
				name := src.name + "/" + alg
				if !kid {
					name += "/no kid"
				}
				t.Run(name, func(t *testing.T) {
					tok := k.sign(t, claims(time.Now(), jwt.MapClaims{"tunnel_names": []string{"alice", "alice-*"}}))
					id, err := authenticate(a, tok)
					if strings.HasPrefix(alg, "HS") && !src.hmac {
						if !errors.Is(err, tunnel.ErrUnauthorized) {
							t.Fatalf("HMAC token against a key set from a URL: err = %v, want unauthorized", err)
						}
						return
					}
					if err != nil {
						t.Fatalf("Authenticate: %v", err)
					}
					if id.Subject != "jwt:alice" || !slices.Equal(id.Names, []string{"alice", "alice-*"}) || id.Access != nil {
						t.Fatalf("identity = %+v, want jwt:alice with names [alice alice-*]", id)
					}
				})
			}
		}
	}
}

// The names claim is read in its forms, by the claim names configured;
// a claim of another type refuses the token.
func TestNamesClaim(t *testing.T) {
	t.Parallel()
	k := key(t, "HS256")
	a := mustNew(t, Config{HMACSecret: k.private.([]byte)}, nil)
	custom := mustNew(t, Config{HMACSecret: k.private.([]byte), SubjectClaim: "email", NamesClaim: "https://example.com/tunnels"}, nil)
	tests := []struct {
		name    string
		a       *Authenticator
		extra   jwt.MapClaims
		subject string
		names   []string
		refused string // the refusal's message, if refused
	}{
		{"array", a, jwt.MapClaims{"tunnel_names": []any{"api", "alice-*"}}, "jwt:alice", []string{"api", "alice-*"}, ""},
		{"space-separated", a, jwt.MapClaims{"tunnel_names": "api  alice-*"}, "jwt:alice", []string{"api", "alice-*"}, ""},
		{"comma-separated", a, jwt.MapClaims{"tunnel_names": "api,alice-*, web"}, "jwt:alice", []string{"api", "alice-*", "web"}, ""},
		{"absent", a, nil, "jwt:alice", nil, ""},
		{"empty array", a, jwt.MapClaims{"tunnel_names": []any{}}, "jwt:alice", []string{}, ""},
		{"empty string", a, jwt.MapClaims{"tunnel_names": ""}, "jwt:alice", []string{}, ""},
		{"custom claims", custom, jwt.MapClaims{"sub": nil, "email": "bob@example.com", "https://example.com/tunnels": "bob-*"}, "jwt:bob@example.com", []string{"bob-*"}, ""},
		{"custom subject missing", custom, jwt.MapClaims{"https://example.com/tunnels": "bob-*"}, "", nil, "invalid agent token: missing email claim"},
		{"number", a, jwt.MapClaims{"tunnel_names": 7}, "", nil, "invalid agent token: invalid tunnel_names claim"},
		{"array of numbers", a, jwt.MapClaims{"tunnel_names": []any{"api", 7}}, "", nil, "invalid agent token: invalid tunnel_names claim"},
		{"missing subject", a, jwt.MapClaims{"sub": nil}, "", nil, "invalid agent token: missing sub claim"},
		{"empty subject", a, jwt.MapClaims{"sub": ""}, "", nil, "invalid agent token: missing sub claim"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok := k.sign(t, claims(time.Now(), tt.extra))
			id, err := authenticate(tt.a, tok)
			if tt.refused != "" {
				checkRefusal(t, err, tok, tt.refused)
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			// nil (no claim: the gateway's rule) and empty (generated
			// names only) differ.
			if id.Subject != tt.subject || !slices.Equal(id.Names, tt.names) || (id.Names == nil) != (tt.names == nil) {
				t.Fatalf("identity = %+v, want subject %q, names %q", id, tt.subject, tt.names)
			}
		})
	}
}

// The IP list claims become the Access the identity imposes; an entry
// that does not parse refuses the token instead of loosening a list.
func TestAccessClaims(t *testing.T) {
	t.Parallel()
	k := key(t, "HS256")
	a := mustNew(t, Config{HMACSecret: k.private.([]byte)}, nil)

	tok := k.sign(t, claims(time.Now(), jwt.MapClaims{"tunnel_allow_ips": []any{"10.0.0.0/8", "2001:db8::1"}, "tunnel_deny_ips": "10.9.9.9"}))
	id, err := authenticate(a, tok)
	if err != nil {
		t.Fatal(err)
	}
	wantAllow := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::1/128")}
	wantDeny := []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")}
	if id.Access == nil || !slices.Equal(id.Access.AllowIPs, wantAllow) || !slices.Equal(id.Access.DenyIPs, wantDeny) {
		t.Fatalf("access = %+v, want allow %v deny %v", id.Access, wantAllow, wantDeny)
	}

	tok = k.sign(t, claims(time.Now(), jwt.MapClaims{"tunnel_allow_ips": "10.0.0.0/8 office"}))
	_, err = authenticate(a, tok)
	checkRefusal(t, err, tok, "invalid agent token: invalid tunnel_allow_ips claim")
}

// checkRefusal fails the test unless err is an unauthorized *tunnel.Error
// with message msg that does not show the token.
func checkRefusal(t *testing.T, err error, token, msg string) *tunnel.Error {
	t.Helper()
	var e *tunnel.Error
	if !errors.As(err, &e) || e.Code != tunnel.CodeUnauthorized {
		t.Fatalf("err = %v, want an unauthorized *tunnel.Error", err)
	}
	if e.Message != msg {
		t.Errorf("message = %q, want %q", e.Message, msg)
	}
	if token != "" && strings.Contains(err.Error(), token) {
		t.Errorf("the error shows the token: %v", err)
	}
	if sig := token[strings.LastIndexByte(token, '.')+1:]; len(sig) > 8 && strings.Contains(err.Error(), sig) {
		t.Errorf("the error shows the token's signature: %v", err)
	}
	return e
}

// Every check refuses what it should, with a message that says which
// failed, the cause for errors.Is, and never the token.
func TestRefusals(t *testing.T) {
	t.Parallel()
	rsaKey := key(t, "RS256")
	hmacKey := key(t, "HS256")
	rsaPub := rsaKey.public.(*rsa.PublicKey)
	pkix, err := x509.MarshalPKIXPublicKey(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	rsaFile := pemFile(t, rsaKey)
	rsaFileBytes := readFile(t, rsaFile)

	strict := mustNew(t, Config{HMACSecret: hmacKey.private.([]byte), KeyFile: rsaFile, Issuer: "https://issuer.example", Audience: "gateway"}, nil)
	rsaOnly := mustNew(t, Config{KeyFile: rsaFile}, nil)
	noLeeway := mustNew(t, Config{KeyFile: rsaFile, Leeway: -1}, nil)
	optionalExp := mustNew(t, Config{KeyFile: rsaFile, ExpiryOptional: true}, nil)
	now := time.Now()
	good := jwt.MapClaims{"iss": "https://issuer.example", "aud": "gateway"}
	with := func(extra jwt.MapClaims) jwt.MapClaims {
		c := claims(now, good)
		for k, v := range extra {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	hmacWith := func(secret []byte) testKey {
		return testKey{name: "forged", method: jwt.SigningMethodHS256, private: secret}
	}
	none := func(t *testing.T) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodNone, with(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	tests := []struct {
		name  string
		a     *Authenticator
		token func(t *testing.T) string
		msg   string
		cause error // errors.Is(err, cause), if not nil
	}{
		{"accepted", strict, func(t *testing.T) string { return rsaKey.sign(t, with(nil)) }, "", nil},
		{"expired", strict, func(t *testing.T) string {
			return rsaKey.sign(t, with(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}))
		}, "invalid agent token: expired", jwt.ErrTokenExpired},
		{"expired within the leeway", strict, func(t *testing.T) string {
			return rsaKey.sign(t, with(jwt.MapClaims{"exp": now.Add(-30 * time.Second).Unix()}))
		}, "", nil},
		{"expired, no leeway", noLeeway, func(t *testing.T) string {
			return rsaKey.sign(t, with(jwt.MapClaims{"exp": now.Add(-2 * time.Second).Unix()}))
		}, "invalid agent token: expired", jwt.ErrTokenExpired},
		{"not valid yet", strict, func(t *testing.T) string {
			return rsaKey.sign(t, with(jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()}))
		}, "invalid agent token: not valid yet", jwt.ErrTokenNotValidYet},
		{"no exp", strict, func(t *testing.T) string { return rsaKey.sign(t, with(jwt.MapClaims{"exp": nil})) }, "invalid agent token: missing exp claim", jwt.ErrTokenRequiredClaimMissing},
		{"no exp, optional", optionalExp, func(t *testing.T) string { return rsaKey.sign(t, with(jwt.MapClaims{"exp": nil})) }, "", nil},
		{"wrong issuer", strict, func(t *testing.T) string { return rsaKey.sign(t, with(jwt.MapClaims{"iss": "https://evil.example"})) }, "invalid agent token: wrong issuer", jwt.ErrTokenInvalidIssuer},
		{"no issuer", strict, func(t *testing.T) string { return rsaKey.sign(t, with(jwt.MapClaims{"iss": nil})) }, "invalid agent token: missing iss claim", jwt.ErrTokenRequiredClaimMissing},
		{"wrong audience", strict, func(t *testing.T) string { return rsaKey.sign(t, with(jwt.MapClaims{"aud": []string{"other", "api"}})) }, "invalid agent token: wrong audience", jwt.ErrTokenInvalidAudience},
		{"audience among others", strict, func(t *testing.T) string {
			return rsaKey.sign(t, with(jwt.MapClaims{"aud": []string{"other", "gateway"}}))
		}, "", nil},
		{"no audience", strict, func(t *testing.T) string { return rsaKey.sign(t, with(jwt.MapClaims{"aud": nil})) }, "invalid agent token: missing aud claim", jwt.ErrTokenRequiredClaimMissing},
		{"expired and wrong audience", strict, func(t *testing.T) string {
			return rsaKey.sign(t, with(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix(), "aud": "api"}))
		}, "invalid agent token: expired, wrong audience", jwt.ErrTokenInvalidAudience},
		{"no subject", strict, func(t *testing.T) string { return rsaKey.sign(t, with(jwt.MapClaims{"sub": nil})) }, "invalid agent token: missing sub claim", jwt.ErrTokenRequiredClaimMissing},
		{"alg none", strict, none, "invalid agent token: signing algorithm not accepted", jwt.ErrTokenSignatureInvalid},
		{"alg none, HMAC-less", rsaOnly, none, "invalid agent token: signing algorithm not accepted", jwt.ErrTokenSignatureInvalid},
		{"HMAC signed with the RSA public key (PEM)", rsaOnly, func(t *testing.T) string { return hmacWith(pemBytes).sign(t, with(nil)) }, "invalid agent token: signing algorithm not accepted", jwt.ErrTokenSignatureInvalid},
		{"HMAC signed with the key file's bytes", rsaOnly, func(t *testing.T) string { return hmacWith(rsaFileBytes).sign(t, with(nil)) }, "invalid agent token: signing algorithm not accepted", jwt.ErrTokenSignatureInvalid},
		{"HMAC signed with the RSA public key (DER)", rsaOnly, func(t *testing.T) string { return hmacWith(pkix).sign(t, with(nil)) }, "invalid agent token: signing algorithm not accepted", jwt.ErrTokenSignatureInvalid},
		{"HMAC signed with the RSA public key, HMAC accepted", strict, func(t *testing.T) string { return hmacWith(pemBytes).sign(t, with(nil)) }, "invalid agent token: bad signature", jwt.ErrTokenSignatureInvalid},
		{"HMAC signed with the key file's bytes, HMAC accepted", strict, func(t *testing.T) string { return hmacWith(rsaFileBytes).sign(t, with(nil)) }, "invalid agent token: bad signature", jwt.ErrTokenSignatureInvalid},
		{"an algorithm no key verifies", strict, func(t *testing.T) string { return newES256Key(t, "").sign(t, with(nil)) }, "invalid agent token: signing algorithm not accepted", jwt.ErrTokenSignatureInvalid},
		{"signed by another RSA key", strict, func(t *testing.T) string { return otherRSAKey(t).sign(t, with(nil)) }, "invalid agent token: bad signature", jwt.ErrTokenSignatureInvalid},
		{"tampered claims", strict, func(t *testing.T) string { return tamper(t, rsaKey.sign(t, with(nil))) }, "invalid agent token: bad signature", jwt.ErrTokenSignatureInvalid},
		{"malformed", strict, func(*testing.T) string { return "not.a.jwt-at-all" }, "invalid agent token: malformed", jwt.ErrTokenMalformed},
		{"two segments", strict, func(*testing.T) string { return "header.claims" }, "invalid agent token: malformed", jwt.ErrTokenMalformed},
		{"unknown algorithm", strict, func(t *testing.T) string {
			return withHeader(t, rsaKey.sign(t, with(nil)), `{"alg":"XX999","typ":"JWT"}`)
		}, "invalid agent token: signing algorithm not accepted", jwt.ErrTokenUnverifiable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok := tt.token(t)
			id, err := authenticate(tt.a, tok)
			if tt.msg == "" {
				if err != nil || id.Subject != "jwt:alice" {
					t.Fatalf("Authenticate = %+v, %v; want jwt:alice", id, err)
				}
				return
			}
			checkRefusal(t, err, tok, tt.msg)
			if !errors.Is(err, tunnel.ErrUnauthorized) {
				t.Errorf("errors.Is(err, tunnel.ErrUnauthorized) = false for %v", err)
			}
			if tt.cause != nil && !errors.Is(err, tt.cause) {
				t.Errorf("errors.Is(err, %v) = false for %v", tt.cause, err)
			}
		})
	}

	t.Run("no token", func(t *testing.T) {
		t.Parallel()
		_, err := authenticate(strict, "")
		checkRefusal(t, err, "", "missing agent token")
	})
}

var otherRSA = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// otherRSAKey is an RSA key no configuration knows.
func otherRSAKey(t *testing.T) testKey {
	t.Helper()
	k, err := otherRSA()
	if err != nil {
		t.Fatal(err)
	}
	return testKey{name: "other RSA", method: jwt.SigningMethodRS256, private: k, public: &k.PublicKey}
}

// tamper changes the subject of a signed token, keeping its signature.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(payload), `"sub":"alice"`, `"sub":"admin"`, 1)
	if forged == string(payload) {
		t.Fatalf("no subject to change in %s", payload)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
	return strings.Join(parts, ".")
}

// withHeader replaces the header of a signed token.
func withHeader(t *testing.T, tok, header string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	parts[0] = base64.RawURLEncoding.EncodeToString([]byte(header))
	return strings.Join(parts, ".")
}

// A token in the "token" query parameter, where the original agent's
// first versions put it, is read like one in the Authorization header.
func TestTokenInQuery(t *testing.T) {
	t.Parallel()
	k := key(t, "ES256")
	a := mustNew(t, Config{KeyFile: pemFile(t, k)}, nil)
	id, err := authenticateQuery(a, k.sign(t, claims(time.Now(), nil)))
	if err != nil || id.Subject != "jwt:alice" {
		t.Fatalf("Authenticate = %+v, %v; want jwt:alice", id, err)
	}
	tok := k.sign(t, claims(time.Now(), jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}))
	_, err = authenticateQuery(a, tok)
	checkRefusal(t, err, tok, "invalid agent token: expired")
}
