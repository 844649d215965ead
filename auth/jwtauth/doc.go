// Package jwtauth authenticates tunnel agents by JSON Web Token. Its
// Authenticator is a tunnel.Authenticator: give it to a tunnel.Server (or
// to the serverless gateway's Server) and every agent must present a JWT
// signed by one of the configured keys, and gets the tunnel.Identity its
// claims describe. It is a module of its own so that the tunnel module
// needs no JWT library.
//
//	auth, err := jwtauth.New(ctx, jwtauth.Config{
//		JWKSURL:  "https://login.example.com/.well-known/jwks.json",
//		Issuer:   "https://login.example.com/",
//		Audience: "tunnel-gateway",
//	})
//	srv := &tunnel.Server{Authenticator: auth}
//
// # Tokens
//
// The token is the one tunnel.TokenFromRequest finds: the bearer token of
// the connect request's Authorization header, or its "token" query
// parameter. Agents send it with tunnel.WithToken.
//
// The keys decide the signing algorithms, never the token: an HMAC secret
// accepts HS256, HS384 and HS512; an RSA key RS256, RS384, RS512, PS256,
// PS384 and PS512; an ECDSA key the one algorithm of its curve (ES256 for
// P-256, ES384 for P-384, ES512 for P-521); an Ed25519 key EdDSA. The
// parser is told exactly those (jwt.WithValidMethods), so "alg": "none"
// is refused, and so is a token that names an algorithm of another key
// type than the key it is checked with (an HMAC token "signed" with an RSA
// public key's bytes finds no key it could be checked against).
//
// A token must carry exp (unless Config.ExpiryOptional), may carry nbf,
// and both are checked with Config.Leeway of clock skew; iss and aud are
// checked when Config.Issuer and Config.Audience are set. Its claims make
// the Identity:
//
//   - Subject: "jwt:" (SubjectPrefix) and the subject claim ("sub",
//     Config.SubjectClaim), which is required; the prefix keeps a JWT
//     subject from passing for a static token's.
//   - Names: the names claim ("tunnel_names", Config.NamesClaim), an array
//     of strings or one string of names separated by spaces or commas. A
//     name ending in "*" matches every name with that prefix. A token
//     without one may take what tunnel.Server.UnlistedNames allows; one
//     with an empty claim, generated names only.
//   - Access: the IP lists of the "tunnel_allow_ips" and "tunnel_deny_ips"
//     claims (Config.AllowIPsClaim, Config.DenyIPsClaim), in the same two
//     forms, become the Access the gateway imposes on the public side of
//     every tunnel of the identity. An entry that is neither an IP address
//     nor a CIDR prefix refuses the token rather than loosen a list.
//
// # Keys
//
// Keys come from an HMAC secret (Config.HMACSecret), a key file
// (Config.KeyFile, or its content as Config.KeyData): PEM public keys and
// certificates or a JWK set, and a JWK set URL (Config.JWKSURL). A token
// is checked against every key from the secret and the file whose type fits
// its algorithm, whatever its kid says (the original system's rule, see
// below), and against the key of the URL's set its kid names (every key of
// that set that fits, when it names none).
//
// The URL's set is fetched by New, and again by Authenticate: when a
// token's kid is not in it (a key the provider has just rotated in), and
// when it is older than Config.MaxKeyAge (so that a key the provider
// withdrew stops being accepted). Fetches start at most once per
// Config.MinRefreshInterval, so a stream of tokens naming unknown keys
// cannot make the gateway hammer the provider; concurrent callers share
// one fetch. A fetch tries Config.FetchAttempts times, each bounded by
// Config.FetchTimeout and by the caller's ctx. When it fails, the keys
// already fetched stay in use. No goroutine runs between calls, so an
// Authenticator needs no Close.
//
// # Errors
//
// A token that is missing or fails a check is refused with a
// *tunnel.Error of code tunnel.CodeUnauthorized (401), whose Message says
// what failed ("invalid agent token: expired", "...: wrong audience",
// "...: unknown signing key") without showing the token, and whose Err is
// the cause, for the gateway's log: the jwt/v5 package's error
// (errors.Is(err, jwt.ErrTokenExpired), jwt.ErrTokenSignatureInvalid,
// jwt.ErrTokenRequiredClaimMissing, ...), ErrUnknownKey, and, when a fetch
// of the key set failed on the way, a *FetchError.
//
// # Coming from the original http-tunnel
//
// The original system (tyrchen/http-tunnel, in Rust) authenticated agents
// by JWT when its Lambda handler ran with REQUIRE_AUTH=true. Its agent,
// ttf, sends its --token (TTF_TOKEN) as "Authorization: Bearer <jwt>";
// its first versions appended "?token=<jwt>" to the endpoint instead.
// TokenFromRequest reads both, so an agent configured for the original
// needs no change of token. The handler verified the token like this, and
// this is the equivalent configuration:
//
//   - JWT_SECRET (HS256 over the secret's bytes as they are, not
//     base64-decoded) is Config.HMACSecret = []byte(secret). HS384 and
//     HS512 are accepted too. The original's fallback secret,
//     "default-secret-change-in-production", is published in its source,
//     so New refuses it.
//   - JWKS (the JSON of a JWK set, in the environment) or the file at
//     JWKS_PATH (default /var/task/jwks.json) is Config.KeyData or
//     Config.KeyFile. The original tried each RSA and "oct" key of the set
//     in turn, with the algorithm of the key's "alg", ignoring the token's
//     kid; so does a key file here. When the set loaded, the original
//     ignored JWT_SECRET; here both apply when both are set.
//   - Claims: the original required a string sub and an exp, checked exp
//     with 60 seconds of leeway (its library's default, and Config.Leeway's
//     zero value here), and did not check iss or nbf; it set no audience to
//     expect. Leave Config.Issuer and Config.Audience empty to accept the
//     same tokens. nbf is checked here when a token carries one.
//   - Names: the original gave every tunnel a generated name. A token
//     without a names claim follows tunnel.Server.UnlistedNames; set it to
//     tunnel.GeneratedNamesOnly to keep that rule, or add a tunnel_names
//     claim to the tokens you issue.
package jwtauth
