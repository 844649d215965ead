package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/http-tunnel/tunnel"
)

// bearer returns an agent's connect request carrying tok.
func bearer(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/_tunnel/connect", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// TestLoadTokens reads token files in the format of tunnel.ParseStaticTokens,
// the one-token-a-line files of earlier versions among them, with the
// tokens of $TUNNEL_TOKENS: every token is admitted as the identity its
// line describes, and a plain token keeps the subject it had when the
// gateway took plain tokens only.
func TestLoadTokens(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "# team tokens\n\n"+
		"  alice-secret-1  subject=alice names=alice,alice-*  \r\n"+
		"ci-secret-2 subject=ci names=ci-* allow_ips=10.0.0.0/8,192.0.2.7 deny_ips=10.9.0.0/16\n"+
		"\tplain#secret-3\n"+
		"  # indented comment\n")
	set, n, err := loadTokens(file, " env-secret-4, ,env-secret-5 ")
	if err != nil || n != 5 {
		t.Fatalf("loadTokens = %d tokens, %v; want 5", n, err)
	}
	id := func(tok string) tunnel.Identity {
		t.Helper()
		got, err := set.Authenticate(t.Context(), bearer(tok))
		if err != nil {
			t.Fatalf("token %s refused: %v", tok, err)
		}
		return got
	}
	if a := id("alice-secret-1"); a.Subject != "alice" || !slices.Equal(a.Names, []string{"alice", "alice-*"}) || a.Access != nil {
		t.Errorf("alice = %+v; want subject alice, names alice and alice-*, no access", a)
	}
	ci := id("ci-secret-2")
	if ci.Subject != "ci" || !slices.Equal(ci.Names, []string{"ci-*"}) || ci.Access == nil ||
		fmt.Sprint(ci.Access.AllowIPs) != "[10.0.0.0/8 192.0.2.7/32]" || fmt.Sprint(ci.Access.DenyIPs) != "[10.9.0.0/16]" {
		t.Errorf("ci = %+v (access %+v); want its names and IP lists", ci, ci.Access)
	}
	// The subjects of plain tokens are those of the same tokens given as
	// plain tokens: tunnels resumed on a node that runs the previous
	// version keep their owner.
	old := tunnel.NewStaticTokens("alice-secret-1", "ci-secret-2", "plain#secret-3", "env-secret-4", "env-secret-5")
	for _, tok := range []string{"plain#secret-3", "env-secret-4", "env-secret-5"} {
		want, _ := old.Authenticate(t.Context(), bearer(tok))
		if got := id(tok); got.Subject != want.Subject || !strings.HasPrefix(got.Subject, "token:") || got.Names != nil {
			t.Errorf("subject of %s = %q, names %q; want %q, as a plain token's, and no names", tok, got.Subject, got.Names, want.Subject)
		}
	}
	if _, err := set.Authenticate(t.Context(), bearer("alice")); err == nil {
		t.Error("a subject is admitted as a token")
	}

	// Errors name the file and the line, never a token.
	for _, tt := range []struct {
		name, file, env, want string
	}{
		{"two tokens on a line", "ok-secret\nfirst-secret second-secret\n", "", "line 2: field 1 after the token"},
		{"a token with a space", "# x\nhalf-secret other=half\n", "", "line 2: field 1 after the token"},
		{"a field without a value", "a-secret names=\n", "", "line 1: field 1"},
		{"bad allow_ips", "\n\na-secret allow_ips=10.0.0.0/40\n", "", "line 3: allow_ips"},
		{"a space in an env token", "", "ok-secret,bad secret", "$TUNNEL_TOKENS: token 2 contains a space"},
		{"a comment sign in an env token", "", "#hash-secret", "$TUNNEL_TOKENS: token 1"},
	} {
		path := ""
		if tt.file != "" {
			path = writeFile(t, tt.file)
		}
		_, _, err := loadTokens(path, tt.env)
		if err == nil || !strings.Contains(err.Error(), tt.want) || (path != "" && !strings.Contains(err.Error(), path)) {
			t.Errorf("%s: %v; want an error naming the file and %q", tt.name, err, tt.want)
			continue
		}
		for _, secret := range []string{"ok-secret", "first-secret", "second-secret", "half-secret", "other=half", "a-secret", "bad secret", "hash-secret"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error %q shows a token", tt.name, err)
			}
		}
	}
	if _, _, err := loadTokens(file+".missing", ""); err == nil || !strings.Contains(err.Error(), "tokens file") {
		t.Errorf("a missing file: %v; want a tokens file error", err)
	}
}

// jwtKeys are the keys of the JWT tests: a shared secret, an RSA key
// whose public half is in a PEM file, and files for both.
type jwtKeys struct {
	secret     []byte
	secretFile string
	rsa        *rsa.PrivateKey
	rsaPEM     []byte // the public key, as the key file holds it
	rsaFile    string
}

func newJWTKeys(t *testing.T) *jwtKeys {
	t.Helper()
	k := &jwtKeys{secret: []byte("hmac-secret-5e0d94b7c1a2")}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	k.rsaPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	dir := t.TempDir()
	k.secretFile, k.rsaFile = filepath.Join(dir, "jwt-secret"), filepath.Join(dir, "jwt-keys.pem")
	if err := os.WriteFile(k.secretFile, append(k.secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.rsaFile, k.rsaPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

// sign returns a JWT of claims signed with key by method.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// claimsFor returns the claims of a JWT for sub, valid for an hour, for
// audience aud unless "", with names as its tunnel_names claim unless nil.
func claimsFor(sub, aud string, names []string) jwt.MapClaims {
	c := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
	if aud != "" {
		c["aud"] = aud
	}
	if names != nil {
		c["tunnel_names"] = names
	}
	return c
}

// cliRun runs the tunnel command with args and env, as the binary does, and
// returns its exit status and output. It is for commands that end by
// themselves (a refused agent), and may be called from any goroutine.
func cliRun(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	var out, errOut output
	code = run(ctx, args, command{stdout: &out, stderr: &errOut, getenv: envMap(env)})
	if ctx.Err() != nil {
		t.Errorf("tunnel %s did not end by itself; stderr:\n%s", strings.Join(args, " "), errOut.String())
	}
	return code, out.String(), errOut.String()
}

// TestGatewayRefusesAgents runs a gateway with a token file of identities
// and JWT keys (a shared secret and an RSA public key), and agents of the
// tunnel command against it: each identity takes its own names and is
// refused others' with a clear message and exit status 1; a token nobody
// issued, an expired JWT, a JWT for another audience, an unsigned one and
// one "signed" with the RSA public key as an HMAC secret are refused as
// unauthorized (401). The gateway logs at debug level, and no secret
// shows in anything the gateway or the agents printed.
func TestGatewayRefusesAgents(t *testing.T) {
	t.Parallel()
	keys := newJWTKeys(t)
	const aliceToken, bobToken = "alice-token-0b8e51", "bob-token-d47a2c"
	tokens := writeFile(t, aliceToken+" subject=alice names=alice,alice-*\n"+bobToken+" subject=bob names=bob-*\n")
	gw, addr := startGateway(t, nil, "--listen", "127.0.0.1:0", "--tokens-file", tokens,
		"--jwt-secret-file", keys.secretFile, "--jwt-key-file", keys.rsaFile, "--jwt-audience", "team-tunnel",
		"--unlisted-names", "generated", "--verbose")
	local := localService(t)
	gateway := "http://" + addr

	carolJWT := sign(t, jwt.SigningMethodHS256, keys.secret, claimsFor("carol", "team-tunnel", []string{"carol-*"}), nil)
	daveJWT := sign(t, jwt.SigningMethodRS256, keys.rsa, claimsFor("dave", "team-tunnel", nil), nil)
	expired := claimsFor("carol", "team-tunnel", []string{"carol-*"})
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claimsFor("mallory", "team-tunnel", nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]string{
		"an unknown token":         "unknown-token-77c1e0",
		"an expired JWT":           sign(t, jwt.SigningMethodHS256, keys.secret, expired, nil),
		"a JWT for another aud":    sign(t, jwt.SigningMethodHS256, keys.secret, claimsFor("carol", "other-gateway", []string{"carol-*"}), nil),
		"an alg none JWT":          none,
		"an HMAC JWT with RSA key": sign(t, jwt.SigningMethodHS256, keys.rsaPEM, claimsFor("mallory", "team-tunnel", []string{"mallory-*"}), nil),
		"a JWT of another secret":  sign(t, jwt.SigningMethodHS256, []byte("not-the-gateway-secret"), claimsFor("carol", "team-tunnel", nil), nil),
	}
	secrets := []string{aliceToken, bobToken, string(keys.secret), carolJWT, daveJWT}

	// Each identity takes its own names.
	var agents []*running
	for _, a := range []struct{ token, name string }{
		{aliceToken, "alice"}, {aliceToken, "alice-app"}, {bobToken, "bob-api"}, {carolJWT, "carol-app"},
	} {
		ag, url := startAgent(t, map[string]string{"TUNNEL_TOKEN": a.token}, "--gateway", gateway, "--name", a.name, "--inspect", "off", local.URL)
		if tunnelID(t, url) != a.name {
			t.Errorf("agent asking for %s got %s", a.name, url)
		}
		checkForwarded(t, url)
		agents = append(agents, ag)
	}
	// A JWT without a names claim gets a generated name, and no other.
	ag, url := startAgent(t, map[string]string{"TUNNEL_TOKEN": daveJWT}, "--gateway", gateway, "--inspect", "off", local.URL)
	if id := tunnelID(t, url); len(id) != 16 {
		t.Errorf("dave, without a names claim, got %q; want a generated name", id)
	}
	agents = append(agents, ag)

	var mu sync.Mutex
	var outputs []string
	var wg sync.WaitGroup
	check := func(name string, env map[string]string, wantStatus int, want ...string) {
		wg.Go(func() {
			code, stdout, stderr := cliRun(t, env, "http", "--gateway", gateway, "--inspect", "off", "--name", name, strings.TrimPrefix(local.URL, "http://"))
			mu.Lock()
			outputs = append(outputs, stdout, stderr)
			mu.Unlock()
			if code != 1 || stdout != "" {
				t.Errorf("agent asking for %s: exit status %d, stdout %q; want 1 and nothing", name, code, stdout)
			}
			for _, w := range append(want, fmt.Sprintf("(%d)", wantStatus)) {
				if !strings.Contains(stderr, w) {
					t.Errorf("agent asking for %s printed:\n%s\nwant %q", name, stderr, w)
				}
			}
		})
	}
	for _, name := range []string{"bob-app", "carol-app", "alice2"} {
		check(name, map[string]string{"TUNNEL_TOKEN": aliceToken}, http.StatusForbidden,
			"tunnel http: the gateway refused this agent (403); ask for a name the token allows, or leave out --name for a generated one: ",
			": forbidden: tunnel name "+name+" is not allowed for this agent\n")
	}
	check("alice-x", map[string]string{"TUNNEL_TOKEN": carolJWT}, http.StatusForbidden, "forbidden: tunnel name alice-x is not allowed")
	check("dave", map[string]string{"TUNNEL_TOKEN": daveJWT}, http.StatusForbidden, "forbidden: tunnel name dave is not allowed")
	reasons := map[string]string{
		"an unknown token":         "unauthorized: invalid agent token\n",
		"an expired JWT":           "unauthorized: invalid agent token: expired\n",
		"a JWT for another aud":    "unauthorized: invalid agent token: wrong audience\n",
		"an alg none JWT":          "unauthorized: invalid agent token: signing algorithm not accepted\n",
		"an HMAC JWT with RSA key": "unauthorized: invalid agent token: bad signature\n",
		"a JWT of another secret":  "unauthorized: invalid agent token: bad signature\n",
	}
	for what, tok := range refused {
		secrets = append(secrets, tok)
		check("alice-app2", map[string]string{"TUNNEL_TOKEN": tok}, http.StatusUnauthorized,
			"tunnel http: the gateway refused the token (401); check --token or $TUNNEL_TOKEN: ", ": "+reasons[what])
	}
	wg.Wait()

	for _, ag := range agents {
		if err := ag.stop(t); err != nil {
			t.Errorf("agent %s: %v", ag.name, err)
		}
		outputs = append(outputs, ag.stdout.String(), ag.stderr.String())
	}
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway: %v", err)
	}
	logs := gw.stderr.String()
	if !strings.Contains(logs, "level=DEBUG") || !strings.Contains(logs, "jwt=true") || !strings.Contains(logs, "tokens=2") {
		t.Errorf("the gateway's log has no debug lines or no start line with tokens=2 and jwt=true:\n%s", logs)
	}
	outputs = append(outputs, gw.stdout.String(), logs)
	for _, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("a secret shows in the output:\n%s", out)
			}
		}
	}
}

// TestGatewayRSAKeyFile runs a gateway whose only JWT key is an RSA public
// key: a token it signs is admitted, and an HS256 token whose HMAC key is
// that public key's PEM text (which anyone may have) is refused.
func TestGatewayRSAKeyFile(t *testing.T) {
	t.Parallel()
	keys := newJWTKeys(t)
	gw, addr := startGateway(t, nil, "--listen", "127.0.0.1:0", "--jwt-key-file", keys.rsaFile)
	forged := sign(t, jwt.SigningMethodHS256, keys.rsaPEM, claimsFor("mallory", "", nil), nil)
	code, _, stderr := cliRun(t, map[string]string{"TUNNEL_TOKEN": forged}, "http", "--gateway", "http://"+addr, "--inspect", "off", "3000")
	if want := ": unauthorized: invalid agent token: signing algorithm not accepted\n"; code != 1 || !strings.Contains(stderr, "(401)") || !strings.Contains(stderr, want) {
		t.Errorf("an HS256 token keyed with the public key: exit status %d, stderr:\n%s\nwant 1 and %q", code, stderr, want)
	}
	ag, url := startAgent(t, map[string]string{"TUNNEL_TOKEN": sign(t, jwt.SigningMethodRS256, keys.rsa, claimsFor("erin", "", nil), nil)},
		"--gateway", "http://"+addr, "--name", "erin", "--inspect", "off", localService(t).URL)
	checkForwarded(t, url)
	if err := ag.stop(t); err != nil {
		t.Errorf("agent: %v", err)
	}
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway: %v", err)
	}
}

// jwksServer serves a JWK set of Ed25519 keys on loopback, and counts the
// requests for it.
type jwksServer struct {
	*httptest.Server
	mu       sync.Mutex
	keys     []edKey
	requests atomic.Int64
}

// edKey is an Ed25519 signing key and its key ID.
type edKey struct {
	kid  string
	priv ed25519.PrivateKey
}

func newEdKey(t *testing.T, kid string) edKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return edKey{kid: kid, priv: priv}
}

// sign returns a JWT of claims signed by k, naming its kid.
func (k edKey) sign(t *testing.T, claims jwt.MapClaims) string {
	return sign(t, jwt.SigningMethodEdDSA, k.priv, claims, map[string]any{"kid": k.kid})
}

func newJWKSServer(t *testing.T, keys ...edKey) *jwksServer {
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		var set struct {
			Keys []map[string]string `json:"keys"`
		}
		for _, k := range s.keys {
			pub := k.priv.Public().(ed25519.PublicKey)
			set.Keys = append(set.Keys, map[string]string{
				"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(pub),
				"kid": k.kid, "alg": "EdDSA", "use": "sig",
			})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(s.Close)
	return s
}

// publish replaces the keys the server serves.
func (s *jwksServer) publish(keys ...edKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

// TestGatewayJWKSRotation runs a gateway that verifies JWTs with the JWK
// set of a key server on loopback. The provider rotates its key: a token
// of the new key's kid is admitted, after the gateway fetched the set
// again; a token of a key the provider never published is refused.
func TestGatewayJWKSRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey, rogue := newEdKey(t, "2025-a"), newEdKey(t, "2026-b"), newEdKey(t, "rogue")
	keys := newJWKSServer(t, oldKey)
	// The least interval between fetches is as short as it gets: a
	// token of an unknown kid makes the gateway fetch the set at once.
	gw, addr := startGateway(t, nil, "--listen", "127.0.0.1:0", "--jwks-url", keys.URL+"/jwks.json",
		"--jwks-min-refresh", "1ns", "--jwt-issuer", "https://login.example.test/")
	if n := keys.requests.Load(); n != 1 {
		t.Errorf("the gateway fetched the key set %d times at start; want 1", n)
	}
	local := localService(t)
	claims := func(sub string) jwt.MapClaims {
		c := claimsFor(sub, "", []string{sub + "-*"})
		c["iss"] = "https://login.example.test/"
		return c
	}
	connect := func(tok, name string) *running {
		t.Helper()
		ag, url := startAgent(t, map[string]string{"TUNNEL_TOKEN": tok}, "--gateway", "http://"+addr, "--name", name, "--inspect", "off", local.URL)
		checkForwarded(t, url)
		return ag
	}
	first := connect(oldKey.sign(t, claims("alice")), "alice-1")

	keys.publish(oldKey, newKey)
	second := connect(newKey.sign(t, claims("bob")), "bob-1")
	if n := keys.requests.Load(); n != 2 {
		t.Errorf("the key set was fetched %d times after a token of a new key; want 2", n)
	}

	keys.publish(newKey)
	rogueToken := rogue.sign(t, claims("mallory"))
	code, _, stderr := cliRun(t, map[string]string{"TUNNEL_TOKEN": rogueToken}, "agent", "--gateway", "http://"+addr, "--inspect", "off", "3000")
	if code != 1 || !strings.Contains(stderr, "(401)") || !strings.Contains(stderr, "invalid agent token: unknown signing key") {
		t.Errorf("a token of an unpublished key: exit status %d, stderr:\n%s\nwant 1 and unknown signing key", code, stderr)
	}
	for _, ag := range []*running{first, second} {
		if err := ag.stop(t); err != nil {
			t.Errorf("agent: %v", err)
		}
	}
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway: %v", err)
	}
}

// TestGatewayJWKSDown checks that a gateway whose key server cannot be
// reached does not start, and says why.
func TestGatewayJWKSDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	code, _, stderr := cliRun(t, nil, "gateway", "--listen", "127.0.0.1:0", "--jwks-url", "http://"+addr+"/jwks.json")
	if code != 1 || !strings.Contains(stderr, "fetch JWK set") {
		t.Errorf("exit status %d, stderr:\n%s\nwant 1 and the failed fetch", code, stderr)
	}
}

// TestGatewayImposedAccess checks the access a gateway imposes on the
// tunnels of an identity: the IP lists of its token's line, and those of
// its JWT's claims, refuse a client outside them (403) though the agent
// asked for nothing.
func TestGatewayImposedAccess(t *testing.T) {
	t.Parallel()
	keys := newJWTKeys(t)
	const ciToken = "ci-token-31f4a9"
	gw, addr := startGateway(t, nil, "--listen", "127.0.0.1:0", "--routing", "path",
		"--tokens-file", writeFile(t, ciToken+" subject=ci allow_ips=127.0.0.1\n"), "--jwt-secret-file", keys.secretFile)
	local := localService(t)
	jwtClaims := claimsFor("ops", "", nil)
	jwtClaims["tunnel_deny_ips"] = "127.0.0.2/32"
	for _, tok := range []string{ciToken, sign(t, jwt.SigningMethodHS256, keys.secret, jwtClaims, nil)} {
		ag, url := startAgent(t, map[string]string{"TUNNEL_TOKEN": tok}, "--gateway", "http://"+addr, "--inspect", "off", local.URL)
		if status := getFrom(t, "127.0.0.2", url+"/hello"); status != http.StatusForbidden {
			t.Errorf("GET from 127.0.0.2 = %d; want 403", status)
		}
		if status := getFrom(t, "127.0.0.1", url+"/hello"); status != http.StatusOK {
			t.Errorf("GET from 127.0.0.1 = %d; want 200", status)
		}
		if err := ag.stop(t); err != nil {
			t.Errorf("agent: %v", err)
		}
	}
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway: %v", err)
	}
}

// getFrom GETs url from the local address ip and returns the status.
func getFrom(t *testing.T, ip, url string) int {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: waitTimeout}).Get(url)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", url, ip, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
