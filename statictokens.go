package tunnel

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
)

// StaticTokens authenticates agents against a fixed set of tokens, each
// with the Identity it stands for.
//
// A token given without a Subject gets "token:" followed by 12 hex digits
// of an HMAC-SHA-256 of the token, keyed with a digest of the whole set:
// logs and /tunnels can tell agents apart without showing a secret, every
// node given the same set names an agent alike (resuming a tunnel on
// another node needs that), and a subject is no oracle for guessing a weak
// token offline (testing a guess needs every token of the set). Name your
// subjects (StaticToken.Identity, or subject= in a token file) to keep
// them stable while the set changes.
//
// Tokens are compared by their SHA-256 digests, so lookup time does not
// depend on how much of a guess matches a real token. A StaticTokens is
// immutable and safe for concurrent use.
type StaticTokens struct {
	ids map[[sha256.Size]byte]Identity
}

// StaticToken is one token of a StaticTokens and who it stands for.
type StaticToken struct {
	Token Token
	// Identity is what Authenticate returns for Token: its Subject (empty:
	// the keyed hash described at StaticTokens), the tunnel names it may
	// take, and the access its tunnels impose.
	Identity Identity
}

// NewStaticTokens returns an Authenticator that accepts exactly tokens,
// each an identity of its own that may take any name the Server allows
// unlisted identities. Empty strings are ignored; with no tokens it
// accepts nobody.
func NewStaticTokens(tokens ...string) *StaticTokens {
	entries := make([]StaticToken, 0, len(tokens))
	for _, t := range tokens {
		entries = append(entries, StaticToken{Token: Token(t)})
	}
	return NewStaticTokenSet(entries...)
}

// NewStaticTokenSet returns an Authenticator that accepts exactly the
// entries' tokens, each as its Identity. Entries with an empty token are
// ignored; of two with the same token, the last wins.
func NewStaticTokenSet(entries ...StaticToken) *StaticTokens {
	var set []string
	for _, e := range entries {
		if e.Token != "" {
			set = append(set, string(e.Token))
		}
	}
	slices.Sort(set)
	set = slices.Compact(set)
	key := sha256.Sum256([]byte("http-tunnel static token subjects\x00" + strings.Join(set, "\x00")))
	s := &StaticTokens{ids: make(map[[sha256.Size]byte]Identity, len(set))}
	for _, e := range entries {
		if e.Token == "" {
			continue
		}
		id := e.Identity
		if id.Subject == "" {
			mac := hmac.New(sha256.New, key[:])
			mac.Write([]byte(e.Token))
			id.Subject = "token:" + hex.EncodeToString(mac.Sum(nil)[:6])
		}
		s.ids[sha256.Sum256([]byte(e.Token))] = id
	}
	return s
}

// ParseStaticTokens reads a token file: one token a line, then optional
// space-separated key=value fields; blank lines and lines starting with #
// are ignored:
//
//	s3cr3t-alice subject=alice names=alice,alice-*
//	s3cr3t-ci    subject=ci    names=ci-* allow_ips=10.0.0.0/8
//	s3cr3t-bob
//
// subject is the identity's Subject; names its Identity.Names
// (comma-separated; a trailing * matches a prefix); allow_ips and deny_ips
// an Access it imposes on its tunnels (comma-separated IPs and CIDR
// prefixes). Errors name the line; they never show a token.
func ParseStaticTokens(r io.Reader) (*StaticTokens, error) {
	var entries []StaticToken
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		e := StaticToken{Token: Token(fields[0])}
		var access Access
		for i, f := range fields[1:] {
			// A field that is not one of ours may be a token (two on a
			// line, or one with a space): errors give its place, never
			// its text.
			k, v, ok := strings.Cut(f, "=")
			if !ok || v == "" {
				return nil, fmt.Errorf("tunnel: token file line %d, field %d: not key=value", n, i+2)
			}
			list := strings.Split(v, ",")
			var err error
			switch k {
			case "subject":
				e.Identity.Subject = v
			case "names":
				e.Identity.Names = list
			case "allow_ips":
				access.AllowIPs, err = parsePrefixes(list)
			case "deny_ips":
				access.DenyIPs, err = parsePrefixes(list)
			default:
				return nil, fmt.Errorf("tunnel: token file line %d, field %d: unknown key (want subject, names, allow_ips or deny_ips)", n, i+2)
			}
			if err != nil {
				return nil, fmt.Errorf("tunnel: token file line %d: %s: %w", n, k, err)
			}
		}
		if !access.empty() {
			e.Identity.Access = &access
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tunnel: token file: %w", err)
	}
	return NewStaticTokenSet(entries...), nil
}

// Authenticate implements Authenticator.
func (s *StaticTokens) Authenticate(_ context.Context, r *http.Request) (Identity, error) {
	tok := TokenFromRequest(r)
	if tok == "" {
		return Identity{}, &Error{Code: CodeUnauthorized, Message: "missing agent token"}
	}
	id, ok := s.ids[sha256.Sum256([]byte(tok))]
	if !ok {
		return Identity{}, &Error{Code: CodeUnauthorized, Message: "invalid agent token"}
	}
	return id, nil
}
