package tunnel

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/http-tunnel/tunnel/protocol"
)

// Access restricts who may reach a tunnel's public URL. The gateway checks
// it on every public request before anything reaches the agent: a client
// must come from an address no DenyIPs prefix contains and, when AllowIPs
// is not empty, one of them does (403 forbidden otherwise); when
// BasicAuth or BearerTokens list credentials, it must present one of them
// (401 unauthorized with WWW-Authenticate otherwise), and the gateway
// removes that Authorization header before forwarding, so the agent never
// sees the credentials. The gateway keeps only salted hashes of them.
//
// An agent asks for an Access with WithBasicAuth, WithBearerAuth,
// WithAllowIPs and WithDenyIPs; an Authenticator may impose one on every
// tunnel of an identity (Identity.Access). Client addresses are the ones
// the gateway determined (see Server.TrustProxy).
type Access struct {
	// BasicAuth lists user/password pairs for HTTP Basic authentication.
	BasicAuth []BasicCredential
	// BearerTokens lists tokens for "Authorization: Bearer".
	BearerTokens []Token
	// AllowIPs, if not empty, are the only client addresses admitted.
	AllowIPs []netip.Prefix
	// DenyIPs are client addresses refused.
	DenyIPs []netip.Prefix
}

// BasicCredential is one user and password of HTTP Basic authentication.
type BasicCredential struct {
	User     string
	Password Token
}

// empty reports whether a requires nothing.
func (a *Access) empty() bool {
	return a == nil || len(a.BasicAuth)+len(a.BearerTokens)+len(a.AllowIPs)+len(a.DenyIPs) == 0
}

// wire returns a in the form of protocol.Access, for the ready message.
func (a *Access) wire() *protocol.Access {
	if a.empty() {
		return nil
	}
	w := &protocol.Access{}
	for _, c := range a.BasicAuth {
		w.Basic = append(w.Basic, protocol.BasicCredential{User: c.User, Password: string(c.Password)})
	}
	for _, t := range a.BearerTokens {
		w.Bearer = append(w.Bearer, string(t))
	}
	for _, p := range a.AllowIPs {
		w.AllowIPs = append(w.AllowIPs, p.String())
	}
	for _, p := range a.DenyIPs {
		w.DenyIPs = append(w.DenyIPs, p.String())
	}
	return w
}

// Bounds on what an agent may ask for, so that the policy the gateway
// keeps in the record (a salted hash of each credential, the prefixes)
// stays a few KiB, within what every store keeps (storetest.LargeAccess).
const (
	maxAccessCredentials = 16 // of each kind
	maxAccessPrefixes    = 64 // in each list
)

// accessFromWire parses what an agent asked for.
func accessFromWire(w *protocol.Access) (*Access, error) {
	if w == nil {
		return nil, nil
	}
	if len(w.Basic) > maxAccessCredentials || len(w.Bearer) > maxAccessCredentials {
		return nil, fmt.Errorf("at most %d credentials of each kind", maxAccessCredentials)
	}
	if len(w.AllowIPs) > maxAccessPrefixes || len(w.DenyIPs) > maxAccessPrefixes {
		return nil, fmt.Errorf("at most %d addresses or prefixes in each list", maxAccessPrefixes)
	}
	a := &Access{}
	for _, c := range w.Basic {
		if c.User == "" || strings.Contains(c.User, ":") || c.Password == "" {
			return nil, fmt.Errorf("basic credential for user %q: want a user without ':' and a password", c.User)
		}
		a.BasicAuth = append(a.BasicAuth, BasicCredential{User: c.User, Password: Token(c.Password)})
	}
	for _, t := range w.Bearer {
		if t == "" {
			return nil, fmt.Errorf("empty bearer token")
		}
		a.BearerTokens = append(a.BearerTokens, Token(t))
	}
	var err error
	if a.AllowIPs, err = parsePrefixes(w.AllowIPs); err != nil {
		return nil, err
	}
	if a.DenyIPs, err = parsePrefixes(w.DenyIPs); err != nil {
		return nil, err
	}
	return a, nil
}

// parsePrefixes parses IP addresses and CIDR prefixes.
func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR prefix", s)
		}
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

// accessPolicy is an Access as the gateway keeps it, in the tunnel's
// record (store.Record.Access, JSON): credentials salted and hashed, and
// the allow lists of the agent and of its identity kept apart, since a
// client must satisfy both.
type accessPolicy struct {
	Basic  []hashedSecret   `json:"b,omitempty"` // Name is the user
	Bearer []hashedSecret   `json:"t,omitempty"`
	Allow  [][]netip.Prefix `json:"a,omitempty"` // each list must contain the client
	Deny   []netip.Prefix   `json:"d,omitempty"`
}

// hashedSecret is a salted SHA-256 of a password or token.
type hashedSecret struct {
	Name string `json:"u,omitempty"`
	Salt []byte `json:"s"`
	Hash []byte `json:"h"`
}

func hashSecret(name string, secret Token) hashedSecret {
	salt := make([]byte, 16)
	rand.Read(salt)
	return hashedSecret{Name: name, Salt: salt, Hash: saltedHash(salt, name, secret)}
}

func saltedHash(salt []byte, name string, secret Token) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(secret))
	return h.Sum(nil)
}

// matches reports, in time that does not depend on where a guess differs,
// whether name and secret are the hashed pair's.
func (h hashedSecret) matches(name string, secret Token) bool {
	nameOK := subtle.ConstantTimeCompare([]byte(h.Name), []byte(name))
	return subtle.ConstantTimeCompare(saltedHash(h.Salt, name, secret), h.Hash)&nameOK == 1
}

// encodeAccess combines what the agent asked for with what its identity
// imposes, the stricter winning, and encodes it for the record; "" when
// neither requires anything.
func encodeAccess(asked, imposed *Access) (string, error) {
	if asked.empty() && imposed.empty() {
		return "", nil
	}
	var p accessPolicy
	creds := asked
	if imposed != nil && len(imposed.BasicAuth)+len(imposed.BearerTokens) > 0 {
		creds = imposed
	}
	if creds != nil {
		for _, c := range creds.BasicAuth {
			p.Basic = append(p.Basic, hashSecret(c.User, c.Password))
		}
		for _, t := range creds.BearerTokens {
			p.Bearer = append(p.Bearer, hashSecret("", t))
		}
	}
	for _, a := range []*Access{asked, imposed} {
		if a == nil {
			continue
		}
		if len(a.AllowIPs) > 0 {
			p.Allow = append(p.Allow, a.AllowIPs)
		}
		p.Deny = append(p.Deny, a.DenyIPs...)
	}
	b, err := json.Marshal(p)
	return string(b), err
}

// checkAccess checks a public request against the record's policy, and on
// success removes the credentials it matched. It returns nil to let the
// request through, or the error to answer (after setting WWW-Authenticate
// for a missing or wrong credential).
func checkAccess(w http.ResponseWriter, r *http.Request, policy string, client netip.AddrPort) *Error {
	if policy == "" {
		return nil
	}
	var p accessPolicy
	if err := json.Unmarshal([]byte(policy), &p); err != nil {
		return &Error{Code: CodeInternal, Message: ErrInternal.Message, Err: fmt.Errorf("the tunnel's access policy does not decode: %w", err)}
	}
	ip := client.Addr().Unmap()
	for _, d := range p.Deny {
		if ip.IsValid() && d.Contains(ip) {
			return &Error{Code: CodeForbidden, Message: "your address may not reach this tunnel"}
		}
	}
	for _, list := range p.Allow {
		allowed := false
		for _, a := range list {
			allowed = allowed || (ip.IsValid() && a.Contains(ip))
		}
		if !allowed {
			return &Error{Code: CodeForbidden, Message: "your address may not reach this tunnel"}
		}
	}
	if len(p.Basic)+len(p.Bearer) == 0 {
		return nil
	}
	if user, pass, ok := r.BasicAuth(); ok && len(p.Basic) > 0 {
		for _, h := range p.Basic {
			if h.matches(user, Token(pass)) {
				r.Header.Del("Authorization")
				return nil
			}
		}
	}
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") && len(p.Bearer) > 0 {
		for _, h := range p.Bearer {
			if h.matches("", Token(strings.TrimSpace(tok))) {
				r.Header.Del("Authorization")
				return nil
			}
		}
	}
	if len(p.Basic) > 0 {
		w.Header().Add("WWW-Authenticate", `Basic realm="tunnel", charset="UTF-8"`)
	}
	if len(p.Bearer) > 0 {
		w.Header().Add("WWW-Authenticate", `Bearer realm="tunnel"`)
	}
	return &Error{Code: CodeUnauthorized, Message: "this tunnel requires credentials"}
}
