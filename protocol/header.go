package protocol

import "strings"

// hopByHop are the hop-by-hop headers of RFC 9110 section 7.6.1 and the
// ones HTTP/1.1 proxies have always treated so, in lower case: a proxy
// removes them, and spec.md tells json-mode senders to omit them.
var hopByHop = map[string]bool{
	"connection":        true,
	"keep-alive":        true,
	"proxy-connection":  true,
	"te":                true,
	"trailer":           true,
	"transfer-encoding": true,
	"upgrade":           true,
}

// IsHopByHop reports whether name (in any case) is one of the fixed
// hop-by-hop headers spec.md lists.
func IsHopByHop(name string) bool { return hopByHop[strings.ToLower(name)] }

// RemoveHopByHop deletes the hop-by-hop headers from h: the fixed list
// (IsHopByHop) and every header that a Connection header names (RFC 9110
// section 7.6.1). Names match in any case, so h may be an http.Header
// (canonical names) or a json-mode header map (lower-case names).
//
// This is the one place where the module decides what ends at a hop; the
// gateway's reverse proxies get the same behaviour from net/http/httputil.
func RemoveHopByHop(h map[string][]string) {
	var named []string
	for k, vs := range h {
		if !strings.EqualFold(k, "connection") {
			continue
		}
		for _, v := range vs {
			for f := range strings.SplitSeq(v, ",") {
				if f = strings.TrimSpace(f); f != "" {
					named = append(named, f)
				}
			}
		}
	}
	for k := range h {
		if IsHopByHop(k) {
			delete(h, k)
			continue
		}
		for _, n := range named {
			if strings.EqualFold(k, n) {
				delete(h, k)
				break
			}
		}
	}
}

// ValidHeaderName reports whether s is a valid header field name or
// method: an RFC 9110 token. It is httpguts.ValidHeaderFieldName, which
// this module does not import (golang.org/x/net would add five modules to
// the graph of every program that imports the library).
func ValidHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

// ValidHeaderValue reports whether s is a valid header field value (RFC
// 9110 section 5.5): no control bytes but horizontal tab, so no CR, LF or
// NUL that could end the header or split the message. It is
// httpguts.ValidHeaderFieldValue.
func ValidHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// isTokenByte reports an RFC 9110 tchar.
func isTokenByte(c byte) bool {
	return c > ' ' && c < 0x7f && strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) < 0
}
