package jwtauth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// Through a real gateway: an agent with a JWT whose claim lists its names
// opens a tunnel by one of them and serves through it; a name outside the
// claim is forbidden; an expired token, or another issuer's, is
// unauthorized; and the IP list a token carries guards the public side.
func TestGateway(t *testing.T) {
	t.Parallel()
	k := key(t, "EdDSA")
	srv := newJWKSServer(t, jwkList(t, k)...)
	cfg := srv.config()
	cfg.Issuer = "https://issuer.example"
	a := mustNew(t, cfg, nil)
	quiet := slog.New(slog.DiscardHandler)
	gw := tunneltest.NewGateway(t, &tunnel.Server{
		Routing:       tunnel.RoutePath,
		Logger:        quiet,
		Authenticator: a,
		UnlistedNames: tunnel.GeneratedNamesOnly,
	})
	token := func(extra jwt.MapClaims) string {
		c := claims(time.Now(), jwt.MapClaims{"iss": "https://issuer.example"})
		for name, v := range extra {
			c[name] = v
		}
		return k.sign(t, c)
	}
	listen := func(tok, name string) (*tunnel.Listener, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ln, err := tunnel.Listen(ctx, gw.URL, tunnel.WithLogger(quiet), tunnel.WithToken(tok), tunnel.WithName(name))
		if err == nil {
			tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "served by alice")
			}))
		}
		return ln, err
	}
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	get := func(url string) (int, string) {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	alice := token(jwt.MapClaims{"tunnel_names": []string{"alice", "alice-*"}})
	ln, err := listen(alice, "alice-api")
	if err != nil {
		t.Fatalf("a name the claim allows: %v", err)
	}
	if status, body := get(ln.URL() + "/"); status != http.StatusOK || body != "served by alice" {
		t.Fatalf("GET through the tunnel = %d %q", status, body)
	}
	if !strings.Contains(ln.URL(), "/alice-api") {
		t.Errorf("URL = %s, want the name alice-api in it", ln.URL())
	}

	if _, err := listen(alice, "bob"); !errors.Is(err, tunnel.ErrForbidden) {
		t.Errorf("a name outside the claim: err = %v, want tunnel.ErrForbidden", err)
	}
	if _, err := listen(token(nil), "alice"); !errors.Is(err, tunnel.ErrForbidden) {
		t.Errorf("a token without names, under GeneratedNamesOnly: err = %v, want tunnel.ErrForbidden", err)
	}
	expired := token(jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix(), "tunnel_names": "alice-*"})
	if _, err := listen(expired, "alice-old"); !errors.Is(err, tunnel.ErrUnauthorized) {
		t.Errorf("an expired token: err = %v, want tunnel.ErrUnauthorized", err)
	}
	other := token(jwt.MapClaims{"iss": "https://other.example", "tunnel_names": "alice-*"})
	if _, err := listen(other, "alice-other"); !errors.Is(err, tunnel.ErrUnauthorized) {
		t.Errorf("another issuer's token: err = %v, want tunnel.ErrUnauthorized", err)
	}

	guarded := token(jwt.MapClaims{"tunnel_names": "alice-*", "tunnel_allow_ips": "192.0.2.0/24"})
	ln, err = listen(guarded, "alice-guarded")
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := get(ln.URL() + "/"); status != http.StatusForbidden {
		t.Errorf("GET from 127.0.0.1 through a tunnel that admits 192.0.2.0/24 only = %d, want 403", status)
	}
}
