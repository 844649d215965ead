package serverless

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/golang-jwt/jwt/v5"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/logbuf"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// There is no AWS here: the tests run the SDK's real clients against
// fakeSecrets, a loopback server that speaks the JSON protocols of Secrets
// Manager (X-Amz-Target: secretsmanager.GetSecretValue) and Parameter
// Store (AmazonSSM.GetParameter), as package apigwtest does API Gateway's.

// secretCall is what fakeSecrets saw of one call.
type secretCall struct {
	target, contentType, auth string
	secretID, name            string
	withDecryption            *bool
}

// fakeSecrets holds secrets by ID (a Secrets Manager secret's ARN or an
// SSM parameter's name) and answers the SDK's calls for them.
type fakeSecrets struct {
	srv *httptest.Server

	mu          sync.Mutex
	values      map[string]string
	binary      bool // answer SecretBinary rather than SecretString
	unreachable bool // drop every connection without an answer
	calls       []secretCall
}

func newFakeSecrets(t *testing.T) *fakeSecrets {
	t.Helper()
	f := &fakeSecrets{values: make(map[string]string)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSecrets) set(id, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.values[id] = value
}

func (f *fakeSecrets) setUnreachable(b bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unreachable = b
}

// callCount is the number of calls answered or dropped so far.
func (f *fakeSecrets) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeSecrets) lastCall(t *testing.T) secretCall {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("no call reached the secret store")
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeSecrets) serve(w http.ResponseWriter, r *http.Request) {
	var in struct {
		SecretID       string `json:"SecretId"`
		Name           string `json:"Name"`
		WithDecryption *bool  `json:"WithDecryption"`
	}
	body, _ := io.ReadAll(r.Body)
	json.Unmarshal(body, &in)
	call := secretCall{target: r.Header.Get("X-Amz-Target"), contentType: r.Header.Get("Content-Type"), auth: r.Header.Get("Authorization"),
		secretID: in.SecretID, name: in.Name, withDecryption: in.WithDecryption}
	f.mu.Lock()
	f.calls = append(f.calls, call)
	unreachable, binary := f.unreachable, f.binary
	value, ok := f.values[in.SecretID+in.Name]
	f.mu.Unlock()

	if unreachable {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	fail := func(typ, msg string) {
		w.Header().Set("X-Amzn-ErrorType", typ)
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
	}
	switch call.target {
	case "secretsmanager.GetSecretValue":
		if !ok {
			fail("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
			return
		}
		out := map[string]any{"ARN": in.SecretID, "Name": "tokens", "VersionId": "v1", "VersionStages": []string{"AWSCURRENT"}, "CreatedDate": 1.7e9}
		if binary {
			out["SecretBinary"] = base64.StdEncoding.EncodeToString([]byte(value))
		} else {
			out["SecretString"] = value
		}
		json.NewEncoder(w).Encode(out)
	case "AmazonSSM.GetParameter":
		if !ok {
			fail("ParameterNotFound", "")
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"Parameter": map[string]any{
			"Name": in.Name, "Type": "SecureString", "Value": value, "Version": 3, "ARN": "arn:aws:ssm:eu-west-1:123456789012:parameter" + in.Name,
		}})
	default:
		fail("UnknownOperationException", "")
	}
}

// clients returns SDK clients of f that do not retry, so that a dropped
// connection fails at once, with a transport closed with the test.
func (f *fakeSecrets) clients(t *testing.T) (*secretsmanager.Client, *ssm.Client) {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	creds := credentials.NewStaticCredentialsProvider("AKIDSECRETS", "secret-key", "")
	sm := secretsmanager.New(secretsmanager.Options{Region: "eu-west-1", Credentials: creds, BaseEndpoint: aws.String(f.srv.URL),
		HTTPClient: &http.Client{Transport: tr}, RetryMaxAttempts: 1})
	ps := ssm.New(ssm.Options{Region: "eu-west-1", Credentials: creds, BaseEndpoint: aws.String(f.srv.URL),
		HTTPClient: &http.Client{Transport: tr}, RetryMaxAttempts: 1})
	return sm, ps
}

const tokensARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tunnel-tokens-AbCdEf"

// The sources send what the services expect (operation, secret, and for
// Parameter Store the decryption of SecureStrings) and return the value;
// a missing secret is an error that names it.
func TestSecretSources(t *testing.T) {
	t.Parallel()
	f := newFakeSecrets(t)
	sm, ps := f.clients(t)
	f.set(tokensARN, "sm-value")
	f.set("/tunnel/tokens", "ssm-value")

	src := &SecretsManagerSecret{Client: sm, SecretID: tokensARN}
	if v, err := src.SecretValue(t.Context()); err != nil || string(v) != "sm-value" {
		t.Fatalf("Secrets Manager: %q, %v", v, err)
	}
	call := f.lastCall(t)
	if call.target != "secretsmanager.GetSecretValue" || call.secretID != tokensARN || call.contentType != "application/x-amz-json-1.1" {
		t.Errorf("Secrets Manager call %+v, want GetSecretValue of %s in JSON 1.1", call, tokensARN)
	}
	if !strings.Contains(call.auth, "Credential=AKIDSECRETS/") || !strings.Contains(call.auth, "/eu-west-1/secretsmanager/") {
		t.Errorf("signed %q, want the key, region and service", call.auth)
	}
	f.mu.Lock()
	f.binary = true
	f.mu.Unlock()
	if v, err := src.SecretValue(t.Context()); err != nil || string(v) != "sm-value" {
		t.Errorf("Secrets Manager, binary secret: %q, %v", v, err)
	}

	param := &SSMParameter{Client: ps, Name: "/tunnel/tokens"}
	if v, err := param.SecretValue(t.Context()); err != nil || string(v) != "ssm-value" {
		t.Fatalf("Parameter Store: %q, %v", v, err)
	}
	call = f.lastCall(t)
	if call.target != "AmazonSSM.GetParameter" || call.name != "/tunnel/tokens" || call.withDecryption == nil || !*call.withDecryption {
		t.Errorf("Parameter Store call %+v, want GetParameter of /tunnel/tokens WithDecryption", call)
	}
	if !strings.Contains(call.auth, "/eu-west-1/ssm/") {
		t.Errorf("signed %q, want the ssm service", call.auth)
	}

	_, err := (&SecretsManagerSecret{Client: sm, SecretID: tokensARN + "-gone"}).SecretValue(t.Context())
	var nf *smtypes.ResourceNotFoundException
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), tokensARN+"-gone") {
		t.Errorf("missing secret: %v, want ResourceNotFoundException naming it", err)
	}
	if _, err := (&SSMParameter{Client: ps, Name: "/nope"}).SecretValue(t.Context()); err == nil || !strings.Contains(err.Error(), "/nope") {
		t.Errorf("missing parameter: %v, want an error naming it", err)
	}
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// bearer is a connect request with a token.
func bearer(token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

// tokenSecret is a SecretAuthenticator of the token file in f under
// tokensARN, on a fake clock, logging to logs.
func tokenSecret(t *testing.T, f *fakeSecrets, logs io.Writer) (*SecretAuthenticator, *fakeClock) {
	t.Helper()
	sm, _ := f.clients(t)
	clock := &fakeClock{t: time.Now()}
	return &SecretAuthenticator{
		Secret: &SecretsManagerSecret{Client: sm, SecretID: tokensARN},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		now:    clock.now,
	}, clock
}

// A rotated secret is read again: a token added to it works once the
// minimum refresh interval since the last read has passed (an unknown
// token asks for a read, at most once per interval whatever comes), and
// a token removed from it stops working once the value is older than
// MaxAge.
func TestSecretRotation(t *testing.T) {
	t.Parallel()
	f := newFakeSecrets(t)
	a, clock := tokenSecret(t, f, io.Discard)
	f.set(tokensARN, "tok-one subject=one\n")

	id, err := a.Authenticate(t.Context(), bearer("tok-one"))
	if err != nil || id.Subject != "one" {
		t.Fatalf("tok-one: %+v, %v", id, err)
	}
	if n := f.callCount(); n != 1 {
		t.Fatalf("%d reads for the first agent, want 1", n)
	}

	f.set(tokensARN, "tok-one subject=one\ntok-two subject=two names=two-*\n")
	clock.advance(time.Second)
	for _, tok := range []string{"tok-two", "wrong-1", "wrong-2"} {
		if _, err := a.Authenticate(t.Context(), bearer(tok)); !errors.Is(err, tunnel.ErrUnauthorized) {
			t.Errorf("%s within the refresh interval of the last read: %v, want unauthorized", tok, err)
		}
	}
	if n := f.callCount(); n != 1 {
		t.Errorf("%d reads after unknown tokens within the refresh interval, want still 1", n)
	}
	clock.advance(DefaultSecretMinRefresh)
	id, err = a.Authenticate(t.Context(), bearer("tok-two"))
	if err != nil || id.Subject != "two" || len(id.Names) != 1 || id.Names[0] != "two-*" {
		t.Fatalf("tok-two after the refresh interval: %+v, %v; want the new token's identity", id, err)
	}
	if n := f.callCount(); n != 2 {
		t.Errorf("%d reads, want 2", n)
	}
	// Another wrong token within the interval of that read reads nothing.
	a.Authenticate(t.Context(), bearer("wrong-3"))
	if n := f.callCount(); n != 2 {
		t.Errorf("%d reads after a wrong token, want still 2", n)
	}

	// tok-one revoked: still accepted from the value read, until MaxAge.
	f.set(tokensARN, "tok-two subject=two\n")
	clock.advance(DefaultSecretMinRefresh)
	if _, err := a.Authenticate(t.Context(), bearer("tok-one")); err != nil {
		t.Errorf("a revoked token before MaxAge: %v, want accepted from the cached value", err)
	}
	clock.advance(DefaultSecretMaxAge)
	if _, err := a.Authenticate(t.Context(), bearer("tok-one")); !errors.Is(err, tunnel.ErrUnauthorized) {
		t.Errorf("a revoked token after MaxAge: %v, want unauthorized", err)
	}
	if n := f.callCount(); n != 3 {
		t.Errorf("%d reads, want 3", n)
	}
}

// A secret that cannot be read at cold start refuses every agent with an
// internal error, never admits one, and reads again at most once per
// refresh interval; once read, a later failure keeps the value in use.
// A value that does not parse keeps the previous one. No token shows in
// an error or a log line.
func TestSecretUnavailable(t *testing.T) {
	t.Parallel()
	f := newFakeSecrets(t)
	logs := &logbuf.Buffer{}
	a, clock := tokenSecret(t, f, logs)
	f.set(tokensARN, "tok-one subject=one\n")
	f.setUnreachable(true)

	_, err := a.Authenticate(t.Context(), bearer("tok-one"))
	var e *tunnel.Error
	if !errors.As(err, &e) || e.Code != tunnel.CodeInternal || !strings.Contains(err.Error(), tokensARN) {
		t.Fatalf("cold start without the secret: %v, want internal naming the secret", err)
	}
	if !strings.Contains(logs.String(), "agents are refused") {
		t.Errorf("no error logged:\n%s", logs)
	}
	if _, err := a.Authenticate(t.Context(), bearer("tok-one")); !errors.Is(err, tunnel.ErrInternal) {
		t.Errorf("again within the interval: %v, want internal", err)
	}
	if n := f.callCount(); n != 1 {
		t.Errorf("%d reads within the refresh interval, want 1", n)
	}

	f.setUnreachable(false)
	clock.advance(DefaultSecretMinRefresh)
	if _, err := a.Authenticate(t.Context(), bearer("tok-one")); err != nil {
		t.Fatalf("once the secret answers: %v", err)
	}

	f.setUnreachable(true)
	clock.advance(DefaultSecretMaxAge)
	if _, err := a.Authenticate(t.Context(), bearer("tok-one")); err != nil {
		t.Errorf("a value past MaxAge whose read fails: %v, want it still in use", err)
	}
	if !strings.Contains(logs.String(), "the previous ones stay in use") {
		t.Errorf("no warning logged:\n%s", logs)
	}

	// A line with two tokens: the token file's error quotes the second.
	f.setUnreachable(false)
	f.set(tokensARN, "tok-one subject=one\nleaked-token-a leaked-token-b\n")
	clock.advance(DefaultSecretMinRefresh)
	if _, err := a.Authenticate(t.Context(), bearer("leaked-token-a")); !errors.Is(err, tunnel.ErrUnauthorized) {
		t.Errorf("a token of a value that does not parse: %v, want unauthorized", err)
	}
	if _, err := a.Authenticate(t.Context(), bearer("tok-one")); err != nil {
		t.Errorf("the previous value after a bad one: %v", err)
	}
	if !strings.Contains(logs.String(), "line 2") {
		t.Errorf("the refusal of the value does not name its line:\n%s", logs)
	}

	// The same at cold start: the error, returned and logged, is redacted.
	g := newFakeSecrets(t)
	cold, _ := tokenSecret(t, g, logs)
	g.set(tokensARN, "leaked-token-a leaked-token-b\n")
	_, err = cold.Authenticate(t.Context(), bearer("leaked-token-a"))
	if !errors.Is(err, tunnel.ErrInternal) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("cold start with a value that does not parse: %v, want internal naming the line", err)
	}
	for _, where := range []string{logs.String(), err.Error()} {
		if strings.Contains(where, "leaked-token") || strings.Contains(where, "tok-one") {
			t.Errorf("a token shows:\n%s", where)
		}
	}
}

// FromEnv reads the secrets the environment names, from the region of
// their ARN: agent tokens from Secrets Manager or Parameter Store, and a
// JWT secret, refreshed on rotation.
func TestFromEnvSecrets(t *testing.T) {
	t.Parallel()
	f := newFakeSecrets(t)
	base := map[string]string{
		"AWS_REGION":                     "eu-west-1",
		"AWS_ACCESS_KEY_ID":              "AKIDFROMENV",
		"AWS_SECRET_ACCESS_KEY":          "secret-key",
		"TUNNEL_MANAGEMENT_ENDPOINT":     "https://abc.execute-api.eu-west-1.amazonaws.com/prod",
		"TUNNEL_BASE_URL":                "https://def.execute-api.eu-west-1.amazonaws.com",
		"TUNNEL_SECRETSMANAGER_ENDPOINT": f.srv.URL,
		"TUNNEL_SSM_ENDPOINT":            f.srv.URL,
	}
	fromEnv := func(t *testing.T, extra map[string]string) *Handler {
		t.Helper()
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		h, err := FromEnv(func(k string) string { return env[k] }, quiet)
		if err != nil {
			t.Fatal(err)
		}
		if h.Identities == nil || h.Server.Authenticator == nil {
			t.Fatalf("Identities %v, Authenticator %v: want both", h.Identities, h.Server.Authenticator)
		}
		return h
	}

	t.Run("Secrets Manager", func(t *testing.T) {
		arn := "arn:aws:secretsmanager:us-west-2:123456789012:secret:env-tokens-Xy12Zw"
		f.set(arn, "env-token subject=env\n")
		h := fromEnv(t, map[string]string{"TUNNEL_TOKENS_SECRET_ARN": arn})
		id, err := h.Server.Authenticator.Authenticate(t.Context(), bearer("env-token"))
		if err != nil || id.Subject != "env" {
			t.Fatalf("Authenticate: %+v, %v", id, err)
		}
		call := f.lastCall(t)
		if call.target != "secretsmanager.GetSecretValue" || call.secretID != arn || !strings.Contains(call.auth, "Credential=AKIDFROMENV/") || !strings.Contains(call.auth, "/us-west-2/secretsmanager/") {
			t.Errorf("call %+v: want GetSecretValue of %s signed for its region", call, arn)
		}
	})

	t.Run("Parameter Store", func(t *testing.T) {
		f.set("/env/tokens", "ssm-token subject=ssm\n")
		h := fromEnv(t, map[string]string{"TUNNEL_TOKENS_PARAMETER": "/env/tokens"})
		if id, err := h.Server.Authenticator.Authenticate(t.Context(), bearer("ssm-token")); err != nil || id.Subject != "ssm" {
			t.Fatalf("Authenticate: %+v, %v", id, err)
		}
		call := f.lastCall(t)
		if call.target != "AmazonSSM.GetParameter" || call.name != "/env/tokens" || call.withDecryption == nil || !*call.withDecryption || !strings.Contains(call.auth, "/eu-west-1/ssm/") {
			t.Errorf("call %+v: want GetParameter of /env/tokens WithDecryption", call)
		}
	})

	t.Run("JWT secret", func(t *testing.T) {
		f.set("/env/jwt", "first-hmac-secret-of-the-test\n")
		h := fromEnv(t, map[string]string{"TUNNEL_JWT_SECRET_PARAMETER": "/env/jwt", "TUNNEL_JWT_ISSUER": "https://issuer.test/", "TUNNEL_JWT_AUDIENCE": "tunnels"})
		a := h.Server.Authenticator.(*SecretAuthenticator)
		clock := &fakeClock{t: time.Now()}
		a.now = clock.now
		sign := func(secret, aud string) string {
			tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
				"sub": "alice", "iss": "https://issuer.test/", "aud": aud, "exp": time.Now().Add(time.Hour).Unix(), "tunnel_names": []string{"alice-*"},
			}).SignedString([]byte(secret))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		id, err := a.Authenticate(t.Context(), bearer(sign("first-hmac-secret-of-the-test", "tunnels")))
		if err != nil || id.Subject != "jwt:alice" || len(id.Names) != 1 || id.Names[0] != "alice-*" {
			t.Fatalf("a token signed with the secret: %+v, %v", id, err)
		}
		if _, err := a.Authenticate(t.Context(), bearer(sign("first-hmac-secret-of-the-test", "elsewhere"))); !errors.Is(err, tunnel.ErrUnauthorized) {
			t.Errorf("a token for another audience: %v, want unauthorized", err)
		}
		// Rotation: tokens signed with the new secret work once read.
		f.set("/env/jwt", "second-hmac-secret-of-the-test")
		clock.advance(DefaultSecretMinRefresh)
		if _, err := a.Authenticate(t.Context(), bearer(sign("second-hmac-secret-of-the-test", "tunnels"))); err != nil {
			t.Errorf("a token signed with the rotated secret: %v", err)
		}
	})

	t.Run("JWT key set", func(t *testing.T) {
		// Two shared secrets at once: the old one and the one replacing it.
		oct := func(kid, secret string) string {
			return `{"kty":"oct","kid":"` + kid + `","alg":"HS256","k":"` + base64.RawURLEncoding.EncodeToString([]byte(secret)) + `"}`
		}
		f.set("/env/jwks", `{"keys":[`+oct("old", "old-hmac-secret-of-the-test")+`,`+oct("new", "new-hmac-secret-of-the-test")+`]}`)
		h := fromEnv(t, map[string]string{"TUNNEL_JWT_SECRET_PARAMETER": "/env/jwks"})
		for _, secret := range []string{"old-hmac-secret-of-the-test", "new-hmac-secret-of-the-test"} {
			tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "bob", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
			if err != nil {
				t.Fatal(err)
			}
			if id, err := h.Server.Authenticator.Authenticate(t.Context(), bearer(tok)); err != nil || id.Subject != "jwt:bob" {
				t.Errorf("a token signed with %s: %+v, %v", secret, id, err)
			}
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for name, extra := range map[string]map[string]string{
			"tokens twice":       {"TUNNEL_TOKENS_SECRET_ARN": tokensARN, "TUNNEL_TOKENS_PARAMETER": "/p"},
			"plaintext beside":   {"TUNNEL_TOKENS_SECRET_ARN": tokensARN, "TUNNEL_TOKENS": "t"},
			"JWT secret twice":   {"TUNNEL_JWT_SECRET_ARN": tokensARN, "TUNNEL_JWT_SECRET_PARAMETER": "/p"},
			"issuer without key": {"TUNNEL_JWT_ISSUER": "https://issuer.test/"},
			"unknown names rule": {"TUNNEL_UNLISTED_NAMES": "some"},
		} {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range extra {
				env[k] = v
			}
			if _, err := FromEnv(func(k string) string { return env[k] }, quiet); err == nil {
				t.Errorf("%s: FromEnv succeeded", name)
			}
		}
		env := map[string]string{"TUNNEL_UNLISTED_NAMES": "generated"}
		for k, v := range base {
			env[k] = v
		}
		h, err := FromEnv(func(k string) string { return env[k] }, quiet)
		if err != nil || h.Server.UnlistedNames != tunnel.GeneratedNamesOnly {
			t.Errorf("TUNNEL_UNLISTED_NAMES=generated: %v, rule %v", err, h.Server.UnlistedNames)
		}
	})
}

// Through the emulated API Gateway, with real agents: tokens come from
// the secret, a token added to it works after the refresh interval
// without a cold start, and while the secret cannot be read at cold start
// agents are refused (500), not admitted.
func TestSecretTokensEndToEnd(t *testing.T) {
	t.Parallel()
	f := newFakeSecrets(t)
	logs := &logbuf.Buffer{}
	a, clock := tokenSecret(t, f, logs)
	f.set(tokensARN, "alice-token subject=alice names=alice-*\n")
	f.setUnreachable(true)
	g := newGateway(t, gatewayConfig{auth: a})

	if _, err := g.listenAs(t, "alice-token", "alice-dev"); !errors.Is(err, tunnel.ErrInternal) {
		t.Fatalf("cold start without the secret: %v, want internal", err)
	}
	if _, err := g.listenAs(t, "", ""); !errors.Is(err, tunnel.ErrInternal) {
		t.Fatalf("an agent without a token while the secret is unread: %v, want internal", err)
	}

	f.setUnreachable(false)
	clock.advance(DefaultSecretMinRefresh)
	ln, err := g.listenAs(t, "alice-token", "alice-dev")
	if err != nil || ln.ID() != "alice-dev" {
		t.Fatalf("alice once the secret answers: %v", err)
	}
	if _, err := g.listenAs(t, "alice-token", "bob"); !errors.Is(err, tunnel.ErrForbidden) {
		t.Errorf("alice taking bob: %v, want forbidden", err)
	}

	f.set(tokensARN, "alice-token subject=alice names=alice-*\nbob-token subject=bob names=bob\n")
	clock.advance(DefaultSecretMinRefresh)
	ln, err = g.listenAs(t, "bob-token", "bob")
	if err != nil || ln.ID() != "bob" {
		t.Fatalf("a token added to the secret: %v", err)
	}
	if strings.Contains(logs.String(), "alice-token") || strings.Contains(logs.String(), "bob-token") {
		t.Errorf("a token shows in the log:\n%s", logs)
	}
}

// No secret reaches a log line, an agent's error or a public response:
// agent tokens read from the secret (at cold start, on rotation, in a
// value that does not parse), credentials an identity imposes or an agent
// asks for, and the identity key. Every logger logs at DEBUG.
func TestSecretsStayOutOfLogs(t *testing.T) {
	t.Parallel()
	const (
		tokenA   = "scan-token-alice-0123456789"
		tokenB   = "scan-token-bob-0123456789"
		tokenBad = "scan-token-malformed-0123456789"
		password = "scan-password-0123456789"
		bearerID = "scan-bearer-identity-0123456789"
		bearerAg = "scan-bearer-agent-0123456789"
	)
	logs := &logbuf.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFakeSecrets(t)
	tokens, clock := tokenSecret(t, f, logs)
	f.set(tokensARN, tokenA+" subject=alice names=alice-*\n")
	f.setUnreachable(true)
	basic := tunnel.NewStaticTokenSet(tunnel.StaticToken{Token: tunnel.Token(tokenB), Identity: tunnel.Identity{
		Subject: "bob", Names: []string{"bob"}, Access: &tunnel.Access{
			BasicAuth:    []tunnel.BasicCredential{{User: "bob", Password: tunnel.Token(password)}},
			BearerTokens: []tunnel.Token{bearerID},
		},
	}})
	key := newIdentityKey(t)
	g := newGateway(t, gatewayConfig{auth: tunnel.Authenticators(basic, tokens), identityKey: key, logger: logger})

	var seen []string // agents' errors and public responses
	listen := func(token, name string, opts ...tunnel.Option) *tunnel.Listener {
		ln, err := g.listenAs(t, token, name, opts...)
		if err != nil {
			seen = append(seen, err.Error())
		}
		return ln
	}
	get := func(url, authorization string) {
		resp, body := g.get(t, url, authorization)
		seen = append(seen, string(body))
		for k, v := range resp.Header {
			seen = append(seen, k+": "+strings.Join(v, ", "))
		}
	}

	listen(tokenA, "alice-app") // the secret unreadable: refused
	f.setUnreachable(false)
	clock.advance(DefaultSecretMinRefresh)
	if ln := listen(tokenA, "alice-app"); ln == nil {
		t.Fatal("alice was refused once the secret answered")
	}
	listen(tokenA, "not-alice")                // forbidden name
	listen(tokenA+"-wrong", "")                // unknown token
	listen(bearerAg, "")                       // a credential as a token
	f.set(tokensARN, tokenA+" "+tokenBad+"\n") // does not parse
	clock.advance(DefaultSecretMaxAge)
	listen(tokenBad, "")

	ln := listen(tokenB, "bob", tunnel.WithBearerAuth(bearerAg))
	if ln == nil {
		t.Fatal("bob was refused")
	}
	tunneltest.Serve(t, ln, authEcho)
	get(ln.URL()+"/", "")
	get(ln.URL()+"/", basicAuth("bob", password+"-wrong"))
	get(ln.URL()+"/", "Bearer "+bearerAg) // the agent's, replaced by the identity's
	get(ln.URL()+"/", basicAuth("bob", password))
	get(ln.URL()+"/", "Bearer "+bearerID)
	rec, err := g.h.Store.Get(t.Context(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	g.waitDisconnect(t, rec.ConnectionID)

	logged := logs.String()
	if !strings.Contains(logged, "agent credentials loaded") || !strings.Contains(logged, "agents are refused") {
		t.Fatalf("the scenario did not log what it should have:\n%s", logged)
	}
	all := logged + "\n" + strings.Join(seen, "\n")
	for _, secret := range []string{tokenA, tokenB, tokenBad, password, bearerID, bearerAg,
		base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key), string(key)} {
		if strings.Contains(all, secret) {
			t.Errorf("secret %q shows:\n%s", secret, all)
		}
	}
}
