package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// listenAs opens a tunnel with token and name, returning the Listen error.
func listenAs(t *testing.T, gwURL, token, name string, opts ...tunnel.Option) (*tunnel.Listener, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := tunnel.Listen(ctx, gwURL, append([]tunnel.Option{tunnel.WithLogger(quiet), tunnel.WithToken(token), tunnel.WithName(name)}, opts...)...)
	if err == nil {
		t.Cleanup(func() { ln.Close() })
	}
	return ln, err
}

// Names belong to identities: a token's list (exact names and prefix
// patterns) decides which names it may take, an identity without a list
// follows UnlistedNames, and generated names are everyone's.
func TestNamesBelongToIdentities(t *testing.T) {
	t.Parallel()
	tokens, err := tunnel.ParseStaticTokens(strings.NewReader(`
# a team's tokens
alice-token subject=alice names=alice,alice-*
bob-token   subject=bob
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range []tunnel.NameRule{tunnel.AnyName, tunnel.GeneratedNamesOnly} {
		gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, Authenticator: tokens, UnlistedNames: rule})
		for _, tt := range []struct {
			token, name string
			ok          bool
		}{
			{"alice-token", "alice", true},
			{"alice-token", "alice-docs", true},
			{"alice-token", "admin", false},
			{"alice-token", "", true}, // generated
			{"bob-token", "bobs", rule == tunnel.AnyName},
			{"bob-token", "", true},
		} {
			_, err := listenAs(t, gw.URL, tt.token, tt.name)
			switch {
			case tt.ok && err != nil:
				t.Errorf("rule %v: %s taking %q: %v", rule, tt.token, tt.name, err)
			case !tt.ok && !errors.Is(err, tunnel.ErrForbidden):
				t.Errorf("rule %v: %s taking %q: %v, want forbidden", rule, tt.token, tt.name, err)
			case !tt.ok && !strings.Contains(err.Error(), tt.name):
				t.Errorf("the refusal does not say which name: %v", err)
			}
		}
	}
}

// A program of its own decides through AuthorizeName.
func TestAuthorizeNameHook(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, Authenticator: tunnel.NewStaticTokens("tok"),
		AuthorizeName: func(_ context.Context, id tunnel.Identity, name string) error {
			if strings.HasPrefix(name, "ok-") {
				return nil
			}
			return errors.New("not an ok- name")
		}})
	if _, err := listenAs(t, gw.URL, "tok", "ok-fine"); err != nil {
		t.Errorf("allowed by the hook: %v", err)
	}
	if _, err := listenAs(t, gw.URL, "tok", "nope"); !errors.Is(err, tunnel.ErrForbidden) {
		t.Errorf("refused by the hook: %v, want forbidden", err)
	}
}

// authEcho answers with what the agent sees of the request's credentials.
var authEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "authorization="+r.Header.Get("Authorization"))
})

// do sends a GET to url, from the client address xff (the gateway trusts
// X-Forwarded-For) with the given Authorization.
func do(t *testing.T, c *http.Client, url, xff, authorization string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// A protected tunnel: basic auth, a bearer token and IP lists are checked
// before anything reaches the agent, and the agent never sees the
// credentials.
func TestProtectedPublicURL(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, TrustProxy: true})
	c := newClient(t)

	basic := listen(t, gw, tunnel.WithBasicAuth("alice", "correct horse"))
	tunneltest.Serve(t, basic, authEcho)
	status, hdr, body := do(t, c, basic.URL()+"/", "", "")
	wantError(t, status, hdr, body, http.StatusUnauthorized, tunnel.CodeUnauthorized)
	if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("WWW-Authenticate %q, want a Basic challenge", hdr.Get("WWW-Authenticate"))
	}
	req, _ := http.NewRequest(http.MethodGet, basic.URL()+"/", nil)
	req.SetBasicAuth("alice", "wrong")
	status, hdr, body = do(t, c, basic.URL()+"/", "", req.Header.Get("Authorization"))
	wantError(t, status, hdr, body, http.StatusUnauthorized, tunnel.CodeUnauthorized)
	req.SetBasicAuth("alice", "correct horse")
	if status, _, body := do(t, c, basic.URL()+"/", "", req.Header.Get("Authorization")); status != 200 || body != "authorization=" {
		t.Errorf("right credentials: %d %q, want 200 and no credentials at the agent", status, body)
	}

	bearer := listen(t, gw, tunnel.WithBearerAuth("let-me-in"))
	tunneltest.Serve(t, bearer, authEcho)
	if status, hdr, body := do(t, c, bearer.URL()+"/", "", "Bearer wrong"); status != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("wrong bearer: %d %q %q", status, hdr.Get("WWW-Authenticate"), body)
	}
	if status, _, body := do(t, c, bearer.URL()+"/", "", "Bearer let-me-in"); status != 200 || body != "authorization=" {
		t.Errorf("right bearer: %d %q", status, body)
	}

	ips := listen(t, gw, tunnel.WithAllowIPs("203.0.113.0/24", "2001:db8::/32"), tunnel.WithDenyIPs("203.0.113.66"))
	tunneltest.Serve(t, ips, authEcho)
	for xff, want := range map[string]int{
		"203.0.113.7":        200,
		"2001:db8::99":       200,
		"203.0.113.66":       403,
		"198.51.100.1":       403,
		"2001:db9::1":        403,
		"::ffff:203.0.113.8": 200,
	} {
		status, hdr, body := do(t, c, ips.URL()+"/", xff, "")
		if want == 403 {
			wantError(t, status, hdr, body, http.StatusForbidden, tunnel.CodeForbidden)
		} else if status != want {
			t.Errorf("client %s: %d, want %d", xff, status, want)
		}
	}

	if _, err := listenAs(t, gw.URL, "", "", tunnel.WithAllowIPs("not-an-ip")); !errors.Is(err, tunnel.ErrInvalidRequest) {
		t.Errorf("an invalid allow list: %v, want invalid_request", err)
	}
}

// An identity's access applies on top of its agent's: both allow lists
// must admit the client, and the identity's credentials replace the
// agent's.
func TestIdentityImposesAccess(t *testing.T) {
	t.Parallel()
	tokens, err := tunnel.ParseStaticTokens(strings.NewReader("ci-token subject=ci allow_ips=10.0.0.0/8\n"))
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, TrustProxy: true, Authenticator: tokens})
	ln, err := listenAs(t, gw.URL, "ci-token", "", tunnel.WithAllowIPs("10.1.0.0/16", "192.0.2.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	tunneltest.Serve(t, ln, authEcho)
	c := newClient(t)
	for xff, want := range map[string]int{"10.1.2.3": 200, "10.9.9.9": 403, "192.0.2.1": 403} {
		if status, _, _ := do(t, c, ln.URL()+"/", xff, ""); status != want {
			t.Errorf("client %s: %d, want %d (allowed by both lists only)", xff, status, want)
		}
	}
}

func TestParseStaticTokensRefusals(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"s3cr3t names",              // not key=value
		"s3cr3t color=blue",         // unknown field
		"s3cr3t allow_ips=nonsense", // not an IP
		"s3cr3t subject=",           // empty value
		"s3cr3t s3cr3t-two",         // two tokens on a line
		"s3cr3t s3cr3t=two",         // a token with an = in it
		"s3cr3t subject=a s3cr3t",   // a token with a space in it
	} {
		_, err := tunnel.ParseStaticTokens(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), "line 1") || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("ParseStaticTokens(%q) = %v, want an error naming the line, not a token", in, err)
		}
	}
}

// What an agent may ask for is bounded, so that the policy the stores keep
// stays small.
func TestAccessRequestIsBounded(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	var opts []tunnel.Option
	for i := range 17 {
		opts = append(opts, tunnel.WithBearerAuth(fmt.Sprint("token-", i)))
	}
	if _, err := listenAs(t, gw.URL, "", "", opts...); !errors.Is(err, tunnel.ErrInvalidRequest) {
		t.Errorf("17 bearer tokens: %v, want invalid_request", err)
	}
	if _, err := listenAs(t, gw.URL, "", "", opts[:16]...); err != nil {
		t.Errorf("16 bearer tokens: %v", err)
	}
}

// Authenticators admits an agent as the first authenticator that accepts
// it, and an empty (not nil) name list means generated names only.
func TestAuthenticatorsAndEmptyNameList(t *testing.T) {
	t.Parallel()
	named := tunnel.NewStaticTokenSet(tunnel.StaticToken{Token: "gen-only", Identity: tunnel.Identity{Subject: "g", Names: []string{}}})
	other := tunnel.NewStaticTokens("plain")
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, Authenticator: tunnel.Authenticators(named, other)})
	if _, err := listenAs(t, gw.URL, "plain", "any-name"); err != nil {
		t.Errorf("the second authenticator's token: %v", err)
	}
	if _, err := listenAs(t, gw.URL, "gen-only", ""); err != nil {
		t.Errorf("an empty list, a generated name: %v", err)
	}
	if _, err := listenAs(t, gw.URL, "gen-only", "chosen"); !errors.Is(err, tunnel.ErrForbidden) {
		t.Errorf("an empty list, a chosen name: %v, want forbidden", err)
	}
	if _, err := listenAs(t, gw.URL, "neither", ""); !errors.Is(err, tunnel.ErrUnauthorized) {
		t.Errorf("an unknown token: %v, want unauthorized", err)
	}
}
