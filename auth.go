package tunnel

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
)

// anonymousSubject is the Subject of every agent of a gateway without an
// Authenticator.
const anonymousSubject = "anonymous"

// Identity is who an authenticated agent is.
type Identity struct {
	// Subject names the agent's owner, for logs and for binding resume
	// tokens: a tunnel resumed under another Subject is refused. It must
	// not be a secret.
	Subject string
}

// Authenticator decides whether an agent may open a tunnel. The gateway
// calls it for every agent connection before the WebSocket upgrade.
type Authenticator interface {
	// Authenticate returns the agent's identity, or an error: one wrapping
	// ErrUnauthorized or ErrForbidden is answered with 401 or 403, any
	// other error with 500 (and logged). ctx bounds any I/O it does.
	Authenticate(ctx context.Context, r *http.Request) (Identity, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, r *http.Request) (Identity, error)

// Authenticate calls f(ctx, r).
func (f AuthenticatorFunc) Authenticate(ctx context.Context, r *http.Request) (Identity, error) {
	return f(ctx, r)
}

// TokenFromRequest returns the agent token of a connect request: the
// bearer token of its Authorization header, or else its "token" query
// parameter (for clients that cannot set headers).
func TokenFromRequest(r *http.Request) Token {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return Token(strings.TrimSpace(tok))
		}
		return ""
	}
	return Token(r.URL.Query().Get("token"))
}

// StaticTokens authenticates agents against a fixed set of tokens. Each
// token's Subject is "token:" followed by 12 hex digits of an HMAC-SHA-256
// of the token, keyed with a digest of the whole set: logs and /tunnels can
// tell agents apart without showing a secret, every node given the same
// set names an agent alike (resuming a tunnel on another node needs that),
// and a subject is no oracle for guessing a weak token offline (testing a
// guess needs every token of the set).
//
// Tokens are compared by their SHA-256 digests, so lookup time does not
// depend on how much of a guess matches a real token. A StaticTokens is
// immutable and safe for concurrent use.
type StaticTokens struct {
	subjects map[[sha256.Size]byte]string
}

// NewStaticTokens returns an Authenticator that accepts exactly tokens.
// Empty strings are ignored; with no tokens it accepts nobody.
func NewStaticTokens(tokens ...string) *StaticTokens {
	set := make([]string, 0, len(tokens))
	for _, t := range tokens {
		if t != "" {
			set = append(set, t)
		}
	}
	slices.Sort(set)
	set = slices.Compact(set)
	key := sha256.Sum256([]byte("http-tunnel static token subjects\x00" + strings.Join(set, "\x00")))
	s := &StaticTokens{subjects: make(map[[sha256.Size]byte]string, len(set))}
	for _, t := range set {
		mac := hmac.New(sha256.New, key[:])
		mac.Write([]byte(t))
		s.subjects[sha256.Sum256([]byte(t))] = "token:" + hex.EncodeToString(mac.Sum(nil)[:6])
	}
	return s
}

// Authenticate implements Authenticator.
func (s *StaticTokens) Authenticate(_ context.Context, r *http.Request) (Identity, error) {
	tok := TokenFromRequest(r)
	if tok == "" {
		return Identity{}, &Error{Code: CodeUnauthorized, Message: "missing agent token"}
	}
	subject, ok := s.subjects[sha256.Sum256([]byte(tok))]
	if !ok {
		return Identity{}, &Error{Code: CodeUnauthorized, Message: "invalid agent token"}
	}
	return Identity{Subject: subject}, nil
}
