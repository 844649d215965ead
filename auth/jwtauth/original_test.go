package jwtauth

import (
	"crypto/rsa"
	"encoding/base64"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// An agent configured for the original http-tunnel authenticates with the
// equivalent configuration. Its agent, ttf, sends its JWT as "Authorization:
// Bearer" (its first versions as ?token=); its handler checked HS256 with
// JWT_SECRET's bytes, or each RSA and oct key of a JWK set (JWKS or
// JWKS_PATH) with the key's alg, whatever the token's kid, requiring a
// string sub and an exp.
func TestOriginalSystemTokens(t *testing.T) {
	t.Parallel()
	now := time.Now()
	// The claims the original's issuers put in: sub, exp, iat.
	original := jwt.MapClaims{"sub": "user123", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}

	t.Run("JWT_SECRET", func(t *testing.T) {
		t.Parallel()
		secret := "a-secret-set-in-JWT_SECRET"
		a := mustNew(t, Config{HMACSecret: []byte(secret)}, nil)
		tok := testKey{name: "JWT_SECRET", method: jwt.SigningMethodHS256, private: []byte(secret)}.sign(t, original)
		for name, auth := range map[string]func(*Authenticator, string) (any, error){
			"header": func(a *Authenticator, tok string) (any, error) { return authenticate(a, tok) },
			"query":  func(a *Authenticator, tok string) (any, error) { return authenticateQuery(a, tok) },
		} {
			if _, err := auth(a, tok); err != nil {
				t.Errorf("token in the %s: %v", name, err)
			}
		}
		id, err := authenticate(a, tok)
		if err != nil || id.Subject != "jwt:user123" || id.Names != nil {
			t.Fatalf("identity = %+v, %v; want jwt:user123 without names", id, err)
		}
	})

	t.Run("jwks.json", func(t *testing.T) {
		t.Parallel()
		rsaKey := key(t, "RS256")
		pub := rsaKey.public.(*rsa.PublicKey)
		octSecret := []byte("the oct key of the original's jwks.json")
		b64 := base64.RawURLEncoding.EncodeToString
		// A set as the original's documentation has one: kty, kid, alg and
		// the key's parameters, every field present.
		jwks := `{"keys":[
			{"kty":"RSA","kid":"rsa-2025","alg":"RS256","use":"sig","n":"` + b64(pub.N.Bytes()) + `","e":"` + b64(big.NewInt(int64(pub.E)).Bytes()) + `"},
			{"kty":"oct","kid":"hmac-2025","alg":"HS256","k":"` + b64(octSecret) + `"}
		]}`
		a := mustNew(t, Config{KeyData: []byte(jwks)}, nil)
		hmacKey := testKey{name: "oct", method: jwt.SigningMethodHS256, private: octSecret}
		for name, tok := range map[string]string{
			"RS256 naming its kid":     rsaKey.withKID("rsa-2025").sign(t, original),
			"RS256 without kid":        rsaKey.withKID("").sign(t, original),
			"RS256 naming another kid": rsaKey.withKID("stale").sign(t, original),
			"HS256 of the oct key":     hmacKey.sign(t, original),
		} {
			if id, err := authenticate(a, tok); err != nil || id.Subject != "jwt:user123" {
				t.Errorf("%s: %+v, %v; want jwt:user123", name, id, err)
			}
		}
		// The key's alg binds it, as in the original.
		tok := rsaKey.withMethod(jwt.SigningMethodRS384).sign(t, original)
		_, err := authenticate(a, tok)
		checkRefusal(t, err, tok, "invalid agent token: signing algorithm not accepted")
	})
}
