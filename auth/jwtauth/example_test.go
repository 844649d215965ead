package jwtauth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/auth/jwtauth"
)

// A gateway that accepts the agents an issuer signs tokens for, with a
// shared secret: each token says who the agent is and which tunnel names
// it may take.
func Example() {
	secret := []byte("a secret shared with the issuer, 32 bytes or more")
	auth, err := jwtauth.New(context.Background(), jwtauth.Config{
		HMACSecret: secret,
		Issuer:     "https://issuer.example",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := &tunnel.Server{Authenticator: auth, UnlistedNames: tunnel.GeneratedNamesOnly}
	_ = srv // srv.ListenAndServe() would serve agents and their tunnels

	// The issuer's side: a token for alice, who may take "alice" and
	// every name that starts with "alice-".
	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss":          "https://issuer.example",
		"sub":          "alice",
		"exp":          time.Now().Add(time.Hour).Unix(),
		"tunnel_names": []string{"alice", "alice-*"},
	}).SignedString(secret)

	// The agent's side, tunnel.Listen(ctx, gatewayURL,
	// tunnel.WithToken(token)), sends it in its connect request.
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	id, err := auth.Authenticate(context.Background(), r)
	fmt.Println(id.Subject, id.Names, err)

	r.Header.Set("Authorization", "Bearer "+token[:len(token)-4]+"AAAA")
	_, err = auth.Authenticate(context.Background(), r)
	fmt.Println(err.(*tunnel.Error).Message)
	// Output:
	// jwt:alice [alice alice-*] <nil>
	// invalid agent token: bad signature
}

// The configuration equivalent to the original http-tunnel's: its
// JWT_SECRET, or its JWK set (JWKS, or the file at JWKS_PATH).
func ExampleConfig_originalHTTPTunnel() {
	var cfg jwtauth.Config
	if s := os.Getenv("JWT_SECRET"); s != "" {
		cfg.HMACSecret = []byte(s)
	}
	if jwks := os.Getenv("JWKS"); jwks != "" {
		cfg.KeyData = []byte(jwks)
	} else if path := os.Getenv("JWKS_PATH"); path != "" {
		cfg.KeyFile = path
	}
	auth, err := jwtauth.New(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Tunnels get generated names, as they did in the original, unless a
	// token lists names of its own.
	_ = &tunnel.Server{Authenticator: auth, UnlistedNames: tunnel.GeneratedNamesOnly}
}

// Keys from an identity provider's JWK set, fetched and kept fresh.
func ExampleConfig_jwks() {
	auth, err := jwtauth.New(context.Background(), jwtauth.Config{
		JWKSURL:    "https://login.example.com/.well-known/jwks.json",
		Issuer:     "https://login.example.com/",
		Audience:   "tunnel-gateway",
		NamesClaim: "https://example.com/claims/tunnels",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = &tunnel.Server{Authenticator: auth}
}
