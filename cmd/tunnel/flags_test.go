package main

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/ratelimit"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    ratelimit.Limit
		wantErr string
	}{
		{in: "", want: ratelimit.Limit{}},
		{in: "10/s", want: ratelimit.Limit{Events: 10, Period: time.Second}},
		{in: "10/m", want: ratelimit.Limit{Events: 10, Period: time.Minute}},
		{in: "100/h", want: ratelimit.Limit{Events: 100, Period: time.Hour}},
		{in: "10", wantErr: "want N/unit"},
		{in: "0/m", wantErr: "positive whole number"},
		{in: "-1/s", wantErr: "positive whole number"},
		{in: "1.5/s", wantErr: "positive whole number"},
		{in: "x/m", wantErr: "positive whole number"},
		{in: "/m", wantErr: "positive whole number"},
		{in: " 10/m", wantErr: "positive whole number"},
		{in: "10/", wantErr: "unit must be"},
		{in: "10/d", wantErr: "unit must be"},
		{in: "10/min", wantErr: "unit must be"},
		{in: "10/m/s", wantErr: "unit must be"},
	}
	for _, tt := range tests {
		got, err := parseRate(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseRate(%q) = %+v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseRate(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestRateFlagRoundTrip(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "7/s", "10/m", "100/h"} {
		var r rateFlag
		if err := r.Set(in); err != nil {
			t.Fatalf("Set(%q): %v", in, err)
		}
		if got := r.String(); got != in {
			t.Errorf("Set(%q).String() = %q", in, got)
		}
	}
	// A failed Set leaves the value alone.
	r := rateFlag{limit: ratelimit.Limit{Events: 3, Period: time.Second}}
	if err := r.Set("3/week"); err == nil {
		t.Error(`Set("3/week") succeeded`)
	}
	if r.String() != "3/s" {
		t.Errorf("after a failed Set, String() = %q; want 3/s", r.String())
	}
}

func TestGatewayFlags(t *testing.T) {
	t.Parallel()
	tokens := writeFile(t, "file-token\n")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // "" means success
		check   func(*testing.T, *gatewayConfig)
	}{{
		name:    "no tokens refused",
		wantErr: "no agent tokens",
	}, {
		name:    "empty tokens file refused",
		args:    []string{"--tokens-file", writeFile(t, "# nobody yet\n\n")},
		wantErr: "no agent tokens",
	}, {
		name: "insecure without tokens, defaults",
		args: []string{"--insecure-no-auth"},
		check: func(t *testing.T, c *gatewayConfig) {
			if !c.auth.insecureNoAuth || c.auth.tokens != nil || c.auth.tokenCount != 0 || c.auth.jwtOn() || c.auth.unlistedNames != tunnel.AnyName {
				t.Errorf("auth = %+v; want every agent admitted, any name", c.auth)
			}
			if c.listen != ":8080" || c.store != "memory" || c.limiter != "none" || c.routing != tunnel.RouteAuto ||
				c.redisAddr != "127.0.0.1:6379" || c.cleanupInterval != 5*time.Minute || c.shutdownTimeout != 30*time.Second ||
				c.dynamo.region != "us-east-1" || c.logJSON || c.logLevel != slog.LevelInfo ||
				c.adminListen != "" || c.metricsPerTunnel || c.trustProxy {
				t.Errorf("defaults: %+v", c)
			}
		},
	}, {
		name: "tokens from file and env",
		args: []string{"--tokens-file", tokens, "--insecure-no-auth"},
		env:  map[string]string{envTokens: "env-a,env-b"},
		check: func(t *testing.T, c *gatewayConfig) {
			if c.auth.tokenCount != 3 || c.auth.tokens == nil || c.auth.insecureNoAuth {
				t.Errorf("%d tokens, insecureNoAuth = %v; want 3 tokens and authentication", c.auth.tokenCount, c.auth.insecureNoAuth)
			}
			for _, tok := range []string{"file-token", "env-a", "env-b"} {
				if _, err := c.auth.tokens.Authenticate(t.Context(), bearer(tok)); err != nil {
					t.Errorf("token %s refused: %v", tok, err)
				}
			}
		},
	}, {
		name: "JWT secret file instead of tokens, generated names for the unlisted",
		args: []string{"--jwt-secret-file", writeFile(t, "  team-jwt-secret-1f0c\n"), "--unlisted-names", "generated"},
		check: func(t *testing.T, c *gatewayConfig) {
			if !c.auth.jwtOn() || string(c.auth.jwt.HMACSecret) != "team-jwt-secret-1f0c" || c.auth.tokens != nil || c.auth.insecureNoAuth ||
				c.auth.unlistedNames != tunnel.GeneratedNamesOnly {
				t.Errorf("auth: jwt %v, secret trimmed %v, tokens %v, insecure %v, unlisted %v; want the secret alone, generated names",
					c.auth.jwtOn(), string(c.auth.jwt.HMACSecret) == "team-jwt-secret-1f0c", c.auth.tokens != nil, c.auth.insecureNoAuth, c.auth.unlistedNames)
			}
		},
	}, {
		name: "JWT secret from env, checks and claims",
		args: []string{"--jwt-issuer", "https://login.example.com/", "--jwt-audience", "tunnel", "--jwt-subject-claim", "email",
			"--jwt-names-claim", "tunnels", "--jwt-allow-ips-claim", "nets", "--jwt-deny-ips-claim", "blocked"},
		env: map[string]string{envJWTSecret: "env-jwt-secret"},
		check: func(t *testing.T, c *gatewayConfig) {
			j := c.auth.jwt
			if string(j.HMACSecret) != "env-jwt-secret" || j.Issuer != "https://login.example.com/" || j.Audience != "tunnel" ||
				j.SubjectClaim != "email" || j.NamesClaim != "tunnels" || j.AllowIPsClaim != "nets" || j.DenyIPsClaim != "blocked" {
				t.Errorf("jwt config: issuer %q, audience %q, claims %q %q %q %q", j.Issuer, j.Audience, j.SubjectClaim, j.NamesClaim, j.AllowIPsClaim, j.DenyIPsClaim)
			}
		},
	}, {
		name: "JWT key file and JWK set URL, with tokens",
		args: []string{"--tokens-file", tokens, "--jwt-key-file", "keys.pem", "--jwks-url", "https://login.example.com/jwks.json",
			"--jwks-min-refresh", "1m", "--jwks-max-age", "2h"},
		check: func(t *testing.T, c *gatewayConfig) {
			j := c.auth.jwt
			if j.KeyFile != "keys.pem" || j.JWKSURL != "https://login.example.com/jwks.json" || j.MinRefreshInterval != time.Minute ||
				j.MaxKeyAge != 2*time.Hour || j.HMACSecret != nil || c.auth.tokenCount != 1 {
				t.Errorf("jwt config %+v, %d tokens", j, c.auth.tokenCount)
			}
		},
	}, {
		name:    "a public key as the JWT secret",
		args:    []string{"--jwt-secret-file", writeFile(t, "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n")},
		wantErr: "not a shared secret: give public keys with --jwt-key-file",
	}, {
		name:    "a JWK set as the JWT secret",
		args:    []string{"--tokens-file", tokens},
		env:     map[string]string{envJWTSecret: `{"keys":[]}`},
		wantErr: "$" + envJWTSecret + " holds a PEM block or a JWK set",
	}, {
		name:    "empty JWT secret file",
		args:    []string{"--jwt-secret-file", writeFile(t, "\n")},
		wantErr: "is empty",
	}, {
		name:    "missing JWT secret file",
		args:    []string{"--jwt-secret-file", tokens + ".missing"},
		wantErr: "--jwt-secret-file",
	}, {
		name:    "JWT audience without keys",
		args:    []string{"--tokens-file", tokens, "--jwt-audience", "tunnel"},
		wantErr: "--jwt-audience needs JWT keys",
	}, {
		name:    "JWK set refresh without a URL",
		args:    []string{"--jwt-key-file", "keys.pem", "--jwks-max-age", "1h"},
		wantErr: "need --jwks-url",
	}, {
		name:    "unknown name rule",
		args:    []string{"--tokens-file", tokens, "--unlisted-names", "some"},
		wantErr: `"some" is not one of any, generated`,
	}, {
		name:    "token file with a second token on a line",
		args:    []string{"--tokens-file", writeFile(t, "# team\nfirst-secret-4a1 second-secret-9c2\n")},
		wantErr: "line 2: field 1 after the token",
	}, {
		name:    "missing tokens file",
		args:    []string{"--tokens-file", tokens + ".missing"},
		wantErr: "tokens file",
	}, {
		name: "routing, limits, logs",
		args: []string{"--tokens-file", tokens, "--routing", "subdomain", "--base-url", "https://tunnel.example.com",
			"--limiter", "local", "--agent-rate", "10/m", "--request-rate", "5/s", "--limiter-fail-closed",
			"--max-body-bytes", "1048576", "--log-format", "json", "--verbose"},
		check: func(t *testing.T, c *gatewayConfig) {
			if c.routing != tunnel.RouteSubdomain || c.limiter != "local" || !c.limiterFailClosed || c.maxBodyBytes != 1<<20 ||
				c.agentRate.limit != (ratelimit.Limit{Events: 10, Period: time.Minute}) ||
				c.requestRate.limit != (ratelimit.Limit{Events: 5, Period: time.Second}) ||
				!c.logJSON || c.logLevel != slog.LevelDebug {
				t.Errorf("config: %+v", c)
			}
		},
	}, {
		name: "admin listener, per-tunnel metrics, a proxy in front",
		args: []string{"--insecure-no-auth", "--admin-listen", "127.0.0.1:9090", "--metrics-per-tunnel", "--trust-proxy"},
		check: func(t *testing.T, c *gatewayConfig) {
			if c.adminListen != "127.0.0.1:9090" || !c.metricsPerTunnel || !c.trustProxy {
				t.Errorf("adminListen = %q, metricsPerTunnel = %v; want 127.0.0.1:9090, true", c.adminListen, c.metricsPerTunnel)
			}
		},
	}, {
		name:    "per-tunnel metrics without the admin listener",
		args:    []string{"--insecure-no-auth", "--metrics-per-tunnel"},
		wantErr: "--metrics-per-tunnel needs --admin-listen",
	}, {
		name:    "subdomain routing without a domain",
		args:    []string{"--tokens-file", tokens, "--routing", "subdomain"},
		wantErr: "--routing subdomain needs",
	}, {
		name:    "unknown routing",
		args:    []string{"--tokens-file", tokens, "--routing", "dns"},
		wantErr: `"dns" is not one of auto, subdomain, path`,
	}, {
		name:    "unknown store",
		args:    []string{"--tokens-file", tokens, "--store", "etcd"},
		wantErr: "not one of memory, redis, dynamodb",
	}, {
		name:    "bad base URL",
		args:    []string{"--tokens-file", tokens, "--base-url", "tunnel.example.com"},
		wantErr: "--base-url",
	}, {
		name:    "bad rate",
		args:    []string{"--tokens-file", tokens, "--limiter", "local", "--agent-rate", "10/d"},
		wantErr: "unit must be",
	}, {
		name:    "rate without limiter",
		args:    []string{"--tokens-file", tokens, "--agent-rate", "10/m"},
		wantErr: "need --limiter",
	}, {
		name:    "limiter without rate",
		args:    []string{"--tokens-file", tokens, "--limiter", "redis"},
		wantErr: "--limiter redis needs",
	}, {
		name:    "node URL without secret",
		args:    []string{"--tokens-file", tokens, "--store", "redis", "--node-url", "http://10.0.0.1:8080"},
		wantErr: "needs --node-secret",
	}, {
		name:    "node URL with the memory store",
		args:    []string{"--tokens-file", tokens, "--node-url", "http://10.0.0.1:8080", "--node-secret", "s"},
		wantErr: "shared --store",
	}, {
		name: "node secret from env",
		args: []string{"--tokens-file", tokens, "--store", "dynamodb", "--node-url", "http://10.0.0.1:8080"},
		env:  map[string]string{envNodeSecret: "cluster-secret"},
		check: func(t *testing.T, c *gatewayConfig) {
			if c.nodeURL != "http://10.0.0.1:8080" || c.nodeSecret != "cluster-secret" {
				t.Errorf("node = %q, secret set = %v", c.nodeURL, c.nodeSecret != "")
			}
		},
	}, {
		name: "accepted node secrets from env",
		args: []string{"--tokens-file", tokens, "--store", "redis", "--node-url", "http://10.0.0.1:8080", "--node-secret", "new"},
		env:  map[string]string{envAcceptNodeSecrets: " old, older ,"},
		check: func(t *testing.T, c *gatewayConfig) {
			if !slices.Equal(c.acceptNodeSecrets, []string{"old", "older"}) {
				t.Errorf("accepted node secrets = %d of them; want old and older", len(c.acceptNodeSecrets))
			}
		},
	}, {
		name:    "accepted node secrets without a cluster",
		args:    []string{"--tokens-file", tokens, "--accept-node-secrets", "old"},
		wantErr: "--accept-node-secrets needs --node-url",
	}, {
		name: "region from AWS_REGION",
		args: []string{"--tokens-file", tokens},
		env:  map[string]string{"AWS_REGION": "eu-west-1"},
		check: func(t *testing.T, c *gatewayConfig) {
			if c.dynamo.region != "eu-west-1" {
				t.Errorf("region = %q; want eu-west-1", c.dynamo.region)
			}
		},
	}, {
		name: "region flag over AWS_REGION",
		args: []string{"--tokens-file", tokens, "--dynamodb-region", "ap-south-1"},
		env:  map[string]string{"AWS_REGION": "eu-west-1"},
		check: func(t *testing.T, c *gatewayConfig) {
			if c.dynamo.region != "ap-south-1" {
				t.Errorf("region = %q; want ap-south-1", c.dynamo.region)
			}
		},
	}, {
		name:    "negative cleanup interval",
		args:    []string{"--tokens-file", tokens, "--cleanup-interval", "-1s"},
		wantErr: "--cleanup-interval",
	}, {
		name: "no domain: subdomains of localhost",
		args: []string{"--insecure-no-auth"},
		check: func(t *testing.T, c *gatewayConfig) {
			if c.domain != "localhost" || !c.localhostDomain || c.tls.on() || c.tls.httpListen != "" {
				t.Errorf("domain = %q, localhostDomain = %v, tls = %+v; want localhost, true, off", c.domain, c.localhostDomain, c.tls)
			}
		},
	}, {
		name: "no domain and path routing: no subdomains",
		args: []string{"--insecure-no-auth", "--routing", "path"},
		check: func(t *testing.T, c *gatewayConfig) {
			if c.domain != "" || c.localhostDomain {
				t.Errorf("domain = %q, localhostDomain = %v; want none", c.domain, c.localhostDomain)
			}
		},
	}, {
		name: "a base URL's domain",
		args: []string{"--insecure-no-auth", "--base-url", "https://Tunnel.Example.com:8443/"},
		check: func(t *testing.T, c *gatewayConfig) {
			if c.domain != "" || c.localhostDomain || c.publicDomain() != "tunnel.example.com" {
				t.Errorf("domain = %q, publicDomain = %q; want the base URL's host", c.domain, c.publicDomain())
			}
		},
	}, {
		name: "acme defaults",
		args: []string{"--insecure-no-auth", "--domain", "tunnel.example.com", "--acme", "--acme-cache", "/var/cache/acme"},
		check: func(t *testing.T, c *gatewayConfig) {
			if !c.tls.acme || c.tls.httpListen != ":80" || c.tls.acmeCache != "/var/cache/acme" ||
				c.tls.acmeDirectory != "https://acme-v02.api.letsencrypt.org/directory" ||
				c.tls.acmeRate.limit != (ratelimit.Limit{Events: 10, Period: time.Hour}) || c.tls.hsts != 0 {
				t.Errorf("tls = %+v", c.tls)
			}
		},
	}, {
		name: "acme without the HTTP listener, with HSTS",
		args: []string{"--insecure-no-auth", "--base-url", "https://tunnel.example.com", "--acme", "--http-listen", "", "--hsts", "8760h", "--acme-rate", "3/m"},
		check: func(t *testing.T, c *gatewayConfig) {
			if c.tls.httpListen != "" || c.tls.hsts != 8760*time.Hour || c.tls.acmeRate.limit != (ratelimit.Limit{Events: 3, Period: time.Minute}) {
				t.Errorf("tls = %+v", c.tls)
			}
		},
	}, {
		name:    "acme without a domain",
		args:    []string{"--insecure-no-auth", "--acme"},
		wantErr: "--acme needs --domain",
	}, {
		name:    "acme and a certificate",
		args:    []string{"--insecure-no-auth", "--domain", "tunnel.example.com", "--acme", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
		wantErr: "not both",
	}, {
		name:    "certificate without key",
		args:    []string{"--insecure-no-auth", "--tls-cert", "c.pem"},
		wantErr: "--tls-cert and --tls-key go together",
	}, {
		name:    "HSTS without TLS",
		args:    []string{"--insecure-no-auth", "--hsts", "1h"},
		wantErr: "need --tls-cert or --acme",
	}, {
		name:    "ACME flag without acme",
		args:    []string{"--insecure-no-auth", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--acme-email", "ops@example.com"},
		wantErr: "--acme-email needs --acme",
	}, {
		name: "certificate: no HTTP listener by default",
		args: []string{"--insecure-no-auth", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
		check: func(t *testing.T, c *gatewayConfig) {
			if !c.tls.on() || c.tls.httpListen != "" || !c.localhostDomain {
				t.Errorf("tls = %+v, localhostDomain = %v", c.tls, c.localhostDomain)
			}
		},
	}, {
		name:    "positional argument",
		args:    []string{"--tokens-file", tokens, "extra"},
		wantErr: "unexpected argument",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			cfg, err := parseGatewayFlags(tt.args, envMap(tt.env), &out)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("parsed; want an error containing %q", tt.wantErr)
				}
				if msg := err.Error() + out.String(); !strings.Contains(msg, tt.wantErr) {
					t.Fatalf("error %q (output %q); want %q", err, out.String(), tt.wantErr)
				}
				for _, secret := range []string{"first-secret-4a1", "second-secret-9c2", "MCowBQYDK2VwAyEA", `{"keys":[]}`} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q shows a secret", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("error: %v\n%s", err, out.String())
			}
			tt.check(t, cfg)
		})
	}
}

// TestHelpHidesSecrets checks that -h shows where secrets come from, never
// their values.
func TestHelpHidesSecrets(t *testing.T) {
	t.Parallel()
	env := envMap(map[string]string{
		"TUNNEL_TOKEN":       "agent-secret-value",
		envTokens:            "gateway-secret-value",
		envNodeSecret:        "node-secret-value",
		envAcceptNodeSecrets: "old-node-secret-value",
		envJWTSecret:         "jwt-secret-value",
		"TUNNEL_BASIC_AUTH":  "alice:basic-secret-value",
	})
	var out strings.Builder
	for _, sub := range []string{"gateway", "agent", "http"} {
		c := command{stdout: &out, stderr: &out, getenv: env}
		if code := run(t.Context(), []string{sub, "-h"}, c); code != 0 {
			t.Errorf("%s -h: exit status %d; want 0", sub, code)
		}
	}
	help := out.String()
	if strings.Contains(help, "secret-value") {
		t.Errorf("help shows a secret:\n%s", help)
	}
	for _, want := range []string{"$TUNNEL_TOKEN", "$" + envTokens, "$" + envNodeSecret, "-agent-rate N/unit", "-gateway URL", "-acme-rate N/unit",
		"$" + envJWTSecret, "-jwt-key-file file", "-jwks-url URL", "-unlisted-names rule", "-basic-auth-file file", "-allow-ip addresses",
		"Usage: tunnel gateway", "Usage: tunnel agent", "Usage: tunnel http"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args       []string
		wantCode   int
		wantOutput string // in stdout or stderr
	}{
		{nil, 2, "Usage:"},
		{[]string{"help"}, 0, "tunnel http [flags]"},
		{[]string{"serve"}, 2, `unknown command "serve"`},
		{[]string{"gateway", "-h"}, 0, "-tokens-file file"},
		{[]string{"agent", "--help"}, 0, "-rewrite-host"},
		{[]string{"http", "--help"}, 0, "-local-ca file"},
		{[]string{"gateway", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"gateway"}, 2, "tunnel gateway: no agent tokens"},
		{[]string{"agent"}, 2, "tunnel agent: missing the local service"},
		{[]string{"http", "3000", "4000"}, 2, "tunnel http: more than one local service"},
		{[]string{"agent", "--gateway", "ftp://gw.example.com", "3000"}, 1, "scheme must be"},
	}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		c := command{stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
		code := run(t.Context(), tt.args, c)
		all := stdout.String() + stderr.String()
		if code != tt.wantCode || !strings.Contains(all, tt.wantOutput) {
			t.Errorf("run(%q) = %d, output:\n%s\nwant %d and %q", tt.args, code, all, tt.wantCode, tt.wantOutput)
		}
		// A flag error is reported once, by the flag package.
		if n := strings.Count(all, "flag provided but not defined"); n > 1 {
			t.Errorf("run(%q) reported the flag error %d times", tt.args, n)
		}
	}
}
