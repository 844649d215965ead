package inspector

import (
	"net/http"
	"strings"
)

// Masked stands in for a secret in a kept header value.
const Masked = "[masked]"

// defaultMasked are the headers masked whatever Options.MaskHeaders says:
// those that carry credentials of the client or the session.
var defaultMasked = [...]string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"}

// maskHeader returns a copy of h with the values of secret headers masked.
// Only the copy is ever kept, so a secret never reaches the log, the page
// or a replay.
func (r *Recorder) maskHeader(h http.Header) http.Header {
	if h == nil {
		return http.Header{}
	}
	out := h.Clone()
	for k, vs := range out {
		name := http.CanonicalHeaderKey(k)
		if !r.mask[name] {
			continue
		}
		for i, v := range vs {
			vs[i] = maskValue(name, v)
		}
	}
	return out
}

// maskValue masks one value of the header name, keeping what says what it
// is without giving it away: the scheme of a credential, the names and
// attributes of cookies.
func maskValue(name, v string) string {
	switch name {
	case "Authorization", "Proxy-Authorization":
		if scheme, _, ok := strings.Cut(strings.TrimSpace(v), " "); ok && scheme != "" {
			return scheme + " " + Masked
		}
	case "Cookie":
		var b strings.Builder
		for i, c := range strings.Split(v, ";") {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(maskPair(strings.TrimSpace(c)))
		}
		return b.String()
	case "Set-Cookie":
		pair, attrs, hasAttrs := strings.Cut(v, ";")
		if hasAttrs {
			return maskPair(strings.TrimSpace(pair)) + ";" + attrs
		}
		return maskPair(strings.TrimSpace(pair))
	}
	return Masked
}

// maskPair masks the value of a cookie's name=value.
func maskPair(p string) string {
	if name, _, ok := strings.Cut(p, "="); ok {
		return name + "=" + Masked
	}
	return Masked
}
