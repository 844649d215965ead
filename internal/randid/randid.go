// Package randid makes the random identifiers of the tunnel system: tunnel
// IDs, connection IDs, resume tokens and error IDs.
package randid

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
)

// tunnelAlphabet keeps generated tunnel IDs valid DNS labels in lower case.
const tunnelAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// TunnelIDLen is the length of a generated tunnel ID: 16 characters of a
// 36-letter alphabet carry log2(36)*16 ≈ 82.7 bits of randomness.
const TunnelIDLen = 16

// TunnelID returns a new tunnel ID: TunnelIDLen characters of [a-z0-9],
// drawn uniformly (rejection sampling, no modulo bias).
func TunnelID() string {
	out := make([]byte, 0, TunnelIDLen)
	var buf [32]byte
	for len(out) < TunnelIDLen {
		rand.Read(buf[:])
		for _, b := range buf {
			// 252 = 7*36: bytes at or above it would bias the result.
			if b >= 252 {
				continue
			}
			out = append(out, tunnelAlphabet[b%36])
			if len(out) == TunnelIDLen {
				break
			}
		}
	}
	return string(out)
}

// Hex returns n random bytes in lower-case hex (2n characters).
func Hex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Secret returns a 256-bit random secret, URL-safe base64 without padding.
func Secret() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// IsTunnelID reports whether s has the form of an ID TunnelID generates.
func IsTunnelID(s string) bool {
	if len(s) != TunnelIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
