package jwtauth

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/http-tunnel/tunnel"
)

// identity makes the Identity of a verified token's claims.
func (a *Authenticator) identity(claims jwt.MapClaims) (tunnel.Identity, error) {
	sub, _ := claims[a.cfg.SubjectClaim].(string)
	if sub == "" {
		return tunnel.Identity{}, a.claimRefusal(a.cfg.SubjectClaim, "missing", jwt.ErrTokenRequiredClaimMissing)
	}
	id := tunnel.Identity{Subject: SubjectPrefix + sub}

	var err error
	if id.Names, err = listClaim(claims, a.cfg.NamesClaim); err != nil {
		return tunnel.Identity{}, a.claimRefusal(a.cfg.NamesClaim, "invalid", err)
	}
	var access tunnel.Access
	if access.AllowIPs, err = prefixClaim(claims, a.cfg.AllowIPsClaim); err != nil {
		return tunnel.Identity{}, a.claimRefusal(a.cfg.AllowIPsClaim, "invalid", err)
	}
	if access.DenyIPs, err = prefixClaim(claims, a.cfg.DenyIPsClaim); err != nil {
		return tunnel.Identity{}, a.claimRefusal(a.cfg.DenyIPsClaim, "invalid", err)
	}
	if len(access.AllowIPs)+len(access.DenyIPs) > 0 {
		id.Access = &access
	}
	return id, nil
}

// claimRefusal refuses a token whose claim name is missing or invalid
// (what); err is the cause.
func (a *Authenticator) claimRefusal(name, what string, err error) error {
	return &tunnel.Error{
		Code:    tunnel.CodeUnauthorized,
		Message: fmt.Sprintf("invalid agent token: %s %s claim", what, name),
		Err:     fmt.Errorf("jwtauth: claim %q: %w", name, err),
	}
}

// listClaim reads a claim that lists strings: an array of strings, or one
// string of items separated by spaces or commas. A claim that is absent
// or null is an empty list.
func listClaim(claims jwt.MapClaims, name string) ([]string, error) {
	var list []string
	switch v := claims[name].(type) {
	case nil:
	case string:
		// A claim present but empty is an empty list, not none: for the
		// names claim, that means generated names only.
		list = append([]string{}, strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })...)
	case []any:
		list = []string{}
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%w: item %d is a %T, not a string", jwt.ErrInvalidType, i, e)
			}
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
	default:
		return nil, fmt.Errorf("%w: a %T, not a list of strings or a string", jwt.ErrInvalidType, v)
	}
	return list, nil
}

// prefixClaim reads a claim that lists IP addresses and CIDR prefixes,
// in the forms of listClaim.
func prefixClaim(claims jwt.MapClaims, name string) ([]netip.Prefix, error) {
	list, err := listClaim(claims, name)
	if err != nil {
		return nil, err
	}
	var prefixes []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			prefixes = append(prefixes, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %q is neither an IP address nor a CIDR prefix", jwt.ErrInvalidType, s)
		}
		ip = ip.Unmap()
		prefixes = append(prefixes, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return prefixes, nil
}
