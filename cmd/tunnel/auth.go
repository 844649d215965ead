package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/auth/jwtauth"
	"github.com/http-tunnel/tunnel/internal/agentcli"
)

// The gateway admits agents by static token (--tokens-file,
// $TUNNEL_TOKENS), by JWT (--jwt-secret-file or $TUNNEL_JWT_SECRET,
// --jwt-key-file, --jwks-url), or both: an agent is admitted when either
// accepts it. The identity it is admitted as says which tunnel names it
// may take and what its tunnels impose on their public clients.

// authOptions is the agent-authentication part of the gateway's command
// line.
type authOptions struct {
	tokensFile string
	tokens     *tunnel.StaticTokens // nil without tokens
	tokenCount int

	insecure       bool // --insecure-no-auth
	insecureNoAuth bool // no tokens and no JWT keys, and --insecure-no-auth given

	unlisted      *choiceFlag
	unlistedNames tunnel.NameRule

	jwtSecretFile string
	jwt           jwtauth.Config // HMACSecret is a secret: never logged
}

// unlistedRules maps --unlisted-names to Server.UnlistedNames.
var unlistedRules = map[string]tunnel.NameRule{
	"any":       tunnel.AnyName,
	"generated": tunnel.GeneratedNamesOnly,
}

// jwtCheckFlags configure how a JWT is checked; they need a key to check
// it with.
var jwtCheckFlags = []string{"jwt-issuer", "jwt-audience", "jwt-subject-claim", "jwt-names-claim", "jwt-allow-ips-claim", "jwt-deny-ips-claim"}

// register defines the authentication flags on fs.
func (o *authOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.tokensFile, "tokens-file", "", "`file` of agent tokens, one a line, each optionally followed by subject=NAME, names=LIST (the tunnel names it may take; a trailing * matches a prefix), allow_ips=LIST and deny_ips=LIST (client addresses its tunnels admit or refuse); blank lines and lines starting with # are ignored. $"+envTokens+" may add more, comma-separated")
	fs.BoolVar(&o.insecure, "insecure-no-auth", false, "start without agent tokens or JWT keys, admitting every agent (private networks only)")
	o.unlisted = newChoice("any", "any", "generated")
	fs.Var(o.unlisted, "unlisted-names", "`rule` for the tunnel names an agent whose token or JWT lists none may take: any (any free name) or generated (only names the gateway generates)")

	fs.StringVar(&o.jwtSecretFile, "jwt-secret-file", "", "`file` holding a shared secret: agents' JWTs signed with it (HS256, HS384, HS512) are admitted; surrounding whitespace is not part of it (default $"+envJWTSecret+")")
	fs.StringVar(&o.jwt.KeyFile, "jwt-key-file", "", "`file` of public keys that verify agents' JWTs: PEM public keys or certificates (RSA, ECDSA P-256/384/521, Ed25519), or a JWK set")
	fs.StringVar(&o.jwt.JWKSURL, "jwks-url", "", "`URL` of a JWK set that verifies agents' JWTs, such as an identity provider's jwks_uri (https, or http to loopback); fetched at start, and again for a key ID it lacks")
	fs.DurationVar(&o.jwt.MinRefreshInterval, "jwks-min-refresh", jwtauth.DefaultMinRefreshInterval, "least time between two fetches of --jwks-url: a JWT naming an unknown key within it of the last fetch is refused without one")
	fs.DurationVar(&o.jwt.MaxKeyAge, "jwks-max-age", jwtauth.DefaultMaxKeyAge, "how long keys fetched from --jwks-url are used before they are fetched again, so that a key the provider withdrew stops being accepted")
	fs.StringVar(&o.jwt.Issuer, "jwt-issuer", "", "the only JWT `issuer` (iss) admitted (default: iss not checked)")
	fs.StringVar(&o.jwt.Audience, "jwt-audience", "", "an `audience` (aud) every JWT must name (default: aud not checked)")
	fs.StringVar(&o.jwt.SubjectClaim, "jwt-subject-claim", jwtauth.DefaultSubjectClaim, "JWT `claim` naming the agent's owner")
	fs.StringVar(&o.jwt.NamesClaim, "jwt-names-claim", jwtauth.DefaultNamesClaim, "JWT `claim` listing the tunnel names the agent may take: an array, or names separated by spaces or commas; a trailing * matches a prefix")
	fs.StringVar(&o.jwt.AllowIPsClaim, "jwt-allow-ips-claim", jwtauth.DefaultAllowIPsClaim, "JWT `claim` listing the only client addresses (IPs, CIDR prefixes) that may reach the agent's tunnels")
	fs.StringVar(&o.jwt.DenyIPsClaim, "jwt-deny-ips-claim", jwtauth.DefaultDenyIPsClaim, "JWT `claim` listing client addresses the agent's tunnels refuse")
}

// jwtOn reports whether agents may present JWTs: a key source is set.
func (o *authOptions) jwtOn() bool {
	return o.jwt.HMACSecret != nil || o.jwt.KeyFile != "" || o.jwt.JWKSURL != ""
}

// check reads the tokens and the JWT secret, and reports a configuration
// that admits nobody or flags that need others. set says which flags the
// command line gave.
func (o *authOptions) check(getenv func(string) string, set map[string]bool) error {
	o.unlistedNames = unlistedRules[o.unlisted.value]

	secret, from := []byte(getenv(envJWTSecret)), "$"+envJWTSecret
	if o.jwtSecretFile != "" {
		var err error
		if secret, err = os.ReadFile(o.jwtSecretFile); err != nil {
			return fmt.Errorf("--jwt-secret-file: %w", err)
		}
		from = "--jwt-secret-file " + o.jwtSecretFile
	}
	if secret = bytes.TrimSpace(secret); len(secret) > 0 {
		// A public key given as a shared secret would let anyone who has
		// it sign tokens: the HMAC key confusion that the key file's own
		// flag avoids.
		if bytes.HasPrefix(secret, []byte("-----BEGIN")) || bytes.HasPrefix(secret, []byte("{")) {
			return agentcli.Usagef("%s holds a PEM block or a JWK set, not a shared secret: give public keys with --jwt-key-file", from)
		}
		o.jwt.HMACSecret = secret
	} else if o.jwtSecretFile != "" {
		return agentcli.Usagef("--jwt-secret-file %s is empty", o.jwtSecretFile)
	}

	if !o.jwtOn() {
		for _, f := range jwtCheckFlags {
			if set[f] {
				return agentcli.Usagef("--%s needs JWT keys: --jwt-secret-file (or $%s), --jwt-key-file or --jwks-url", f, envJWTSecret)
			}
		}
	}
	if o.jwt.JWKSURL == "" && (set["jwks-min-refresh"] || set["jwks-max-age"]) {
		return agentcli.Usagef("--jwks-min-refresh and --jwks-max-age need --jwks-url")
	}
	if o.jwt.MinRefreshInterval <= 0 || o.jwt.MaxKeyAge <= 0 {
		return agentcli.Usagef("--jwks-min-refresh and --jwks-max-age must be positive")
	}

	tokens, n, err := loadTokens(o.tokensFile, getenv(envTokens))
	if err != nil {
		return err
	}
	if n > 0 {
		o.tokens, o.tokenCount = tokens, n
	}
	if n == 0 && !o.jwtOn() {
		if !o.insecure {
			return agentcli.Usagef("no agent tokens: give --tokens-file or $%s, JWT keys (--jwt-secret-file, --jwt-key-file or --jwks-url), or --insecure-no-auth to admit every agent", envTokens)
		}
		o.insecureNoAuth = true
	}
	return nil
}

// authenticator returns the gateway's Authenticator: the static tokens,
// the JWT checker, or either of them; a nil interface (never a nil
// *StaticTokens in one) when every agent is admitted.
// It fetches the JWK set of --jwks-url, within ctx. log receives the JWT
// checker's warnings.
func (o *authOptions) authenticator(ctx context.Context, log *slog.Logger) (tunnel.Authenticator, error) {
	if !o.jwtOn() {
		if o.tokens == nil {
			return nil, nil
		}
		return o.tokens, nil
	}
	cfg := o.jwt
	cfg.Logger = log
	jwts, err := jwtauth.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if o.tokens == nil {
		return jwts, nil
	}
	return tunnel.Authenticators(o.tokens, jwtsOnly(jwts)), nil
}

// jwtsOnly passes a to the JWT checker only tokens of a JWT's form (three
// parts separated by dots), so that an agent whose static token is wrong
// is told its token is invalid, not that it is a malformed JWT: when every
// Authenticator refuses, tunnel.Authenticators reports the last refusal.
func jwtsOnly(a tunnel.Authenticator) tunnel.Authenticator {
	return tunnel.AuthenticatorFunc(func(ctx context.Context, r *http.Request) (tunnel.Identity, error) {
		if tok := tunnel.TokenFromRequest(r); tok != "" && strings.Count(string(tok), ".") != 2 {
			return tunnel.Identity{}, &tunnel.Error{Code: tunnel.CodeUnauthorized, Message: "invalid agent token"}
		}
		return a.Authenticate(ctx, r)
	})
}
