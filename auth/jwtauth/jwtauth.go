package jwtauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/http-tunnel/tunnel"
)

// SubjectPrefix begins every Identity.Subject this package returns, so
// that no JWT subject is taken for a static token's or another
// Authenticator's.
const SubjectPrefix = "jwt:"

// Defaults of the Config fields whose zero value stands for one.
const (
	DefaultLeeway             = time.Minute
	DefaultFetchTimeout       = 5 * time.Second
	DefaultFetchAttempts      = 3
	DefaultMinRefreshInterval = 30 * time.Second
	DefaultMaxKeyAge          = time.Hour
	DefaultSubjectClaim       = "sub"
	DefaultNamesClaim         = "tunnel_names"
	DefaultAllowIPsClaim      = "tunnel_allow_ips"
	DefaultDenyIPsClaim       = "tunnel_deny_ips"
)

// originalDefaultSecret is the HMAC secret the original system fell back
// to without JWT_SECRET. It is in that system's public source, so a token
// signed with it proves nothing.
const originalDefaultSecret = "default-secret-change-in-production"

// Config configures an Authenticator. At least one of HMACSecret,
// KeyFile, KeyData and JWKSURL must be set; every other field has a
// working zero value.
type Config struct {
	// HMACSecret is a shared secret: tokens signed with it by HS256, HS384
	// or HS512 are accepted. Its bytes are the key as they are (the
	// original system's JWT_SECRET). Nil: no shared secret.
	HMACSecret []byte

	// KeyFile names a file of verification keys, read once by New: PEM
	// blocks ("PUBLIC KEY", "RSA PUBLIC KEY" or "CERTIFICATE", any number,
	// of RSA, ECDSA P-256/P-384/P-521 or Ed25519 keys), or a JWK set in
	// JSON (RSA, EC, OKP and "oct" keys; those marked "use": "enc", or of
	// types no JWT algorithm here verifies, are left out). Every key of
	// the file is tried on a token whose algorithm fits it, whatever the
	// token's kid. Empty: no key file.
	KeyFile string

	// KeyData is the content of a key file, for keys kept elsewhere (a
	// secret manager; the original system's JWKS variable). Nil: none. Set
	// KeyFile or KeyData, not both.
	KeyData []byte

	// JWKSURL is the address of a JWK set to fetch: an identity provider's
	// jwks_uri. It must be https, or http to a loopback address. New
	// fetches it (and fails if it cannot); Authenticate fetches it again
	// when a token's kid is not in the set, and when the set is older than
	// MaxKeyAge. Shared secrets ("oct" keys) in the set are ignored: a
	// secret published at a URL is no secret. Empty: no key set to fetch.
	JWKSURL string

	// HTTPClient fetches JWKSURL. Nil: http.DefaultClient. Its Timeout, if
	// it has one, applies too.
	HTTPClient *http.Client

	// FetchTimeout bounds each request for JWKSURL. Zero:
	// DefaultFetchTimeout (5s).
	FetchTimeout time.Duration

	// FetchAttempts is how many requests a fetch of JWKSURL makes before it
	// fails, pausing 100ms, then twice as long each time (up to 1s),
	// between them. Only failures that may pass are retried: network
	// errors, timeouts, and 5xx, 408 and 429 responses.
	// Zero: DefaultFetchAttempts (3).
	FetchAttempts int

	// MinRefreshInterval is the least time between the starts of two
	// fetches of JWKSURL. A token whose kid is unknown within it of the
	// last fetch is refused without a fetch. Zero:
	// DefaultMinRefreshInterval (30s).
	MinRefreshInterval time.Duration

	// MaxKeyAge is how long a fetched key set is used before Authenticate
	// fetches it again (in the call that finds it too old; concurrent calls
	// go on with the keys they have). When that fetch fails, the old set
	// stays in use and Logger gets a warning. Zero: DefaultMaxKeyAge (1h).
	MaxKeyAge time.Duration

	// Issuer, if not empty, is the only "iss" accepted; a token without
	// one is refused. Empty: iss is not checked.
	Issuer string

	// Audience, if not empty, must be one of the token's "aud" values; a
	// token without aud is refused. Empty: aud is not checked.
	Audience string

	// Leeway is the clock skew allowed when checking exp and nbf. Zero:
	// DefaultLeeway (one minute, as the original system's library had);
	// negative: none.
	Leeway time.Duration

	// ExpiryOptional lets a token without exp through. False: such a token
	// is refused, as the original system did.
	ExpiryOptional bool

	// SubjectClaim names the claim, a non-empty string, that identifies the
	// agent's owner; Identity.Subject is SubjectPrefix followed by it. A
	// token without it is refused. Empty: DefaultSubjectClaim ("sub").
	SubjectClaim string

	// NamesClaim names the claim that lists the tunnel names the agent may
	// take (Identity.Names): an array of strings, or a string of names
	// separated by spaces or commas. A token without it, or with an empty
	// list, may take the names tunnel.Server.UnlistedNames allows. Empty:
	// DefaultNamesClaim ("tunnel_names").
	NamesClaim string

	// AllowIPsClaim names the claim listing the only client addresses (IP
	// addresses and CIDR prefixes, in NamesClaim's two forms) that may
	// reach the agent's tunnels: Identity.Access.AllowIPs. Empty:
	// DefaultAllowIPsClaim ("tunnel_allow_ips").
	AllowIPsClaim string

	// DenyIPsClaim names the claim listing client addresses refused by the
	// agent's tunnels: Identity.Access.DenyIPs. Empty: DefaultDenyIPsClaim
	// ("tunnel_deny_ips").
	DenyIPsClaim string

	// Logger receives a warning when a fetch of JWKSURL for a set older
	// than MaxKeyAge fails (the failures that refuse a token are in the
	// refusal's error instead). Nil: slog.Default.
	Logger *slog.Logger
}

// Authenticator verifies agents' JWTs. It implements tunnel.Authenticator
// and is safe for concurrent use. It runs no goroutine of its own and
// needs no Close.
type Authenticator struct {
	cfg    Config // defaults filled in
	static []staticKey
	remote *remoteKeys // nil without a JWKSURL
	algs   []string    // the signing algorithms the keys verify, sorted
	parser *jwt.Parser
	log    *slog.Logger
}

// New checks cfg, loads its keys and, when cfg.JWKSURL is set, fetches the
// key set; ctx bounds that fetch. It fails on a configuration that could
// never authenticate anyone, or only by a secret anyone may know: no key,
// a key file that cannot be read or holds no usable key, an empty HMAC
// secret or the original system's published default, a JWKSURL that is
// not https (nor http to loopback), or a key set that cannot be fetched.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	return newAuthenticator(ctx, cfg, time.Now)
}

// newAuthenticator is New with a clock: tests move time on without
// waiting for it.
func newAuthenticator(ctx context.Context, cfg Config, now func() time.Time) (*Authenticator, error) {
	if err := fillDefaults(&cfg); err != nil {
		return nil, fmt.Errorf("jwtauth: %w", err)
	}
	a := &Authenticator{cfg: cfg, log: cfg.Logger}
	if a.log == nil {
		a.log = slog.Default()
	}

	if cfg.HMACSecret != nil {
		if len(cfg.HMACSecret) == 0 {
			return nil, errors.New("jwtauth: HMACSecret is empty")
		}
		if string(bytes.TrimSpace(cfg.HMACSecret)) == originalDefaultSecret {
			return nil, errors.New("jwtauth: HMACSecret is the original http-tunnel's default secret, which anyone can read in its source; choose your own")
		}
		a.static = append(a.static, staticKey{key: slices.Clone(cfg.HMACSecret)})
	}
	data := cfg.KeyData
	if cfg.KeyFile != "" {
		if cfg.KeyData != nil {
			return nil, errors.New("jwtauth: set KeyFile or KeyData, not both")
		}
		var err error
		if data, err = os.ReadFile(cfg.KeyFile); err != nil {
			return nil, fmt.Errorf("jwtauth: key file: %w", err)
		}
	}
	if data != nil {
		keys, err := parseKeyData(data)
		if err != nil {
			if cfg.KeyFile != "" {
				return nil, fmt.Errorf("jwtauth: key file %s: %w", cfg.KeyFile, err)
			}
			return nil, fmt.Errorf("jwtauth: KeyData: %w", err)
		}
		a.static = append(a.static, keys...)
	}

	var algs []string
	for _, k := range a.static {
		algs = append(algs, k.algs()...)
	}
	if cfg.JWKSURL != "" {
		u, err := checkJWKSURL(cfg.JWKSURL)
		if err != nil {
			return nil, fmt.Errorf("jwtauth: %w", err)
		}
		store := jwkset.NewMemoryStorage()
		kf, err := keyfunc.New(keyfunc.Options{Storage: store})
		if err != nil {
			return nil, fmt.Errorf("jwtauth: %w", err)
		}
		client := cfg.HTTPClient
		if client == nil {
			client = http.DefaultClient
		}
		a.remote = &remoteKeys{
			url: u.String(), shown: u.Redacted(), client: client,
			timeout: cfg.FetchTimeout, attempts: cfg.FetchAttempts,
			minInterval: cfg.MinRefreshInterval, maxAge: cfg.MaxKeyAge, now: now,
			store: store, kf: kf,
		}
		if err := a.remote.refresh(ctx, true); err != nil {
			return nil, err
		}
		algs = append(algs, asymmetricAlgs...)
	}
	if len(algs) == 0 {
		return nil, errors.New("jwtauth: no keys: set HMACSecret, KeyFile, KeyData or JWKSURL")
	}
	slices.Sort(algs)
	a.algs = slices.Compact(algs)

	opts := []jwt.ParserOption{
		jwt.WithValidMethods(a.algs),
		jwt.WithLeeway(max(cfg.Leeway, 0)),
		jwt.WithTimeFunc(now),
	}
	if !cfg.ExpiryOptional {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// fillDefaults replaces cfg's zero values by the defaults they stand for,
// and refuses negative counts and intervals.
func fillDefaults(cfg *Config) error {
	switch {
	case cfg.FetchTimeout < 0:
		return errors.New("FetchTimeout is negative")
	case cfg.FetchAttempts < 0:
		return errors.New("FetchAttempts is negative")
	case cfg.MinRefreshInterval < 0:
		return errors.New("MinRefreshInterval is negative")
	case cfg.MaxKeyAge < 0:
		return errors.New("MaxKeyAge is negative")
	}
	setDefault(&cfg.FetchTimeout, DefaultFetchTimeout)
	setDefault(&cfg.FetchAttempts, DefaultFetchAttempts)
	setDefault(&cfg.MinRefreshInterval, DefaultMinRefreshInterval)
	setDefault(&cfg.MaxKeyAge, DefaultMaxKeyAge)
	setDefault(&cfg.Leeway, DefaultLeeway)
	setDefault(&cfg.SubjectClaim, DefaultSubjectClaim)
	setDefault(&cfg.NamesClaim, DefaultNamesClaim)
	setDefault(&cfg.AllowIPsClaim, DefaultAllowIPsClaim)
	setDefault(&cfg.DenyIPsClaim, DefaultDenyIPsClaim)
	return nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Authenticate verifies the agent token of r (see tunnel.TokenFromRequest)
// and returns the Identity its claims describe. A missing or failing token
// is refused with a *tunnel.Error of code tunnel.CodeUnauthorized. ctx
// bounds the fetch of the key set that a token naming an unknown key, or a
// set older than MaxKeyAge, makes.
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request) (tunnel.Identity, error) {
	tok := tunnel.TokenFromRequest(r)
	if tok == "" {
		return tunnel.Identity{}, &tunnel.Error{Code: tunnel.CodeUnauthorized, Message: "missing agent token"}
	}
	if a.remote != nil && a.remote.stale() {
		err := a.remote.refresh(ctx, false)
		var tooSoon errTooSoon
		if err != nil && !errors.As(err, &tooSoon) && ctx.Err() == nil {
			a.log.WarnContext(ctx, "jwtauth: the JWK set could not be fetched again; the keys fetched before stay in use", slog.Any("err", err))
		}
	}
	claims := jwt.MapClaims{}
	if t, err := a.parser.ParseWithClaims(string(tok), claims, a.keyfunc(ctx)); err != nil {
		return tunnel.Identity{}, a.refusal(t, err, claims)
	}
	return a.identity(claims)
}

// keyfunc returns the keys that may verify a token: those of the HMAC
// secret and the key file that fit its algorithm, and the key set's key
// its kid names.
func (a *Authenticator) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		var keys []jwt.VerificationKey
		for _, k := range a.static {
			if k.fits(alg) {
				keys = append(keys, k.key)
			}
		}
		if a.remote != nil {
			remote, err := a.remote.keys(ctx, t)
			if err != nil && len(keys) == 0 {
				return nil, err
			}
			keys = append(keys, remote...)
		}
		if len(keys) == 0 {
			return nil, ErrUnknownKey
		}
		return jwt.VerificationKeySet{Keys: keys}, nil
	}
}

// refusal turns a failed verification of t into the error Authenticate
// returns: unauthorized, with a message that says what failed and never
// shows the token.
func (a *Authenticator) refusal(t *jwt.Token, err error, claims jwt.MapClaims) error {
	var reason, alg string
	if t != nil {
		alg, _ = t.Header["alg"].(string)
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		reason = "malformed"
	case !slices.Contains(a.algs, alg):
		// The parser reports an algorithm outside WithValidMethods (none
		// included) as an invalid signature, or as unverifiable if it
		// does not know it.
		reason = "signing algorithm not accepted"
	case errors.Is(err, ErrUnknownKey):
		reason = "unknown signing key"
	case errors.Is(err, errKeyMismatch):
		reason = "the signing key it names does not verify its algorithm"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		reason = "no key to verify it"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		reason = "bad signature"
	default:
		reason = a.claimsReason(err, claims)
	}
	return &tunnel.Error{Code: tunnel.CodeUnauthorized, Message: "invalid agent token: " + reason, Err: err}
}

// claimsReason names the claims checks that err failed.
func (a *Authenticator) claimsReason(err error, claims jwt.MapClaims) string {
	var reasons []string
	add := func(r string) { reasons = append(reasons, r) }
	if errors.Is(err, jwt.ErrTokenRequiredClaimMissing) {
		for _, c := range []struct {
			name     string
			required bool
		}{{"exp", !a.cfg.ExpiryOptional}, {"iss", a.cfg.Issuer != ""}, {"aud", a.cfg.Audience != ""}} {
			if _, ok := claims[c.name]; c.required && !ok {
				add("missing " + c.name + " claim")
			}
		}
	}
	if errors.Is(err, jwt.ErrTokenExpired) {
		add("expired")
	}
	if errors.Is(err, jwt.ErrTokenNotValidYet) {
		add("not valid yet")
	}
	if errors.Is(err, jwt.ErrTokenInvalidIssuer) {
		add("wrong issuer")
	}
	if errors.Is(err, jwt.ErrTokenInvalidAudience) {
		add("wrong audience")
	}
	if len(reasons) == 0 {
		return "invalid claims"
	}
	return strings.Join(reasons, ", ")
}
