package tunnel

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// AnonymousSubject is the Subject of every agent of a gateway without an
// Authenticator: they are all one identity, which may take back a name
// any of them held, and whose pools any of them may join.
const AnonymousSubject = "anonymous"

// Identity is who an authenticated agent is, and what it may do.
type Identity struct {
	// Subject names the agent's owner, for logs and for binding resume
	// tokens: a tunnel resumed under another Subject is refused. It must
	// not be a secret.
	Subject string

	// Names lists the tunnel names the identity may take: exact names, and
	// patterns that end in "*" and match any name with that prefix
	// ("alice-*"). A generated name is always allowed. Nil: the Server's
	// UnlistedNames rule decides; empty but not nil: generated names only.
	Names []string

	// Access is what the gateway requires of the public clients of every
	// tunnel of this identity, on top of what its agent asks for: IP lists
	// of both apply, and the identity's credentials, when it has any,
	// replace the agent's (the operator's word wins). Nil: only what the
	// agent asks for.
	Access *Access
}

// NameRule says which names an identity without a name list may take.
type NameRule int

const (
	// AnyName, the zero value: any free name.
	AnyName NameRule = iota
	// GeneratedNamesOnly: only a name the gateway generates.
	GeneratedNamesOnly
)

// MayTake reports whether the identity's name list allows name; a list
// that is empty reports false (the caller applies its rule).
func (id Identity) MayTake(name string) bool {
	for _, n := range id.Names {
		if p, ok := strings.CutSuffix(n, "*"); ok {
			if strings.HasPrefix(name, p) {
				return true
			}
		} else if n == name {
			return true
		}
	}
	return false
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

// Authenticators returns an Authenticator that asks each of auths in turn
// and admits the agent as the first one that accepts it: static tokens and
// JWTs side by side, say. An agent refused by all of them gets the first
// refusal that is not ErrUnauthorized (a forbidden, say), or else the last
// one; a failure that is neither (a key server down) is returned at once.
func Authenticators(auths ...Authenticator) Authenticator {
	return AuthenticatorFunc(func(ctx context.Context, r *http.Request) (Identity, error) {
		var refusal error = &Error{Code: CodeUnauthorized, Message: "missing agent token"}
		for _, a := range auths {
			id, err := a.Authenticate(ctx, r)
			if err == nil {
				return id, nil
			}
			var e *Error
			switch {
			case !errors.As(err, &e) || (e.Code != CodeUnauthorized && e.Code != CodeForbidden):
				return Identity{}, err
			case e.Code == CodeForbidden:
				return Identity{}, err
			}
			refusal = err
		}
		return Identity{}, refusal
	})
}
