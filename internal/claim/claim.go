// Package claim holds the rules by which an agent claims a tunnel ID, shared
// by the gateway (tunnel.Server) and the serverless adapter
// (examples/lambda): which IDs are valid, and who owns a claim.
package claim

import (
	"crypto/sha256"
	"encoding/hex"
)

// ValidID reports whether id can be a tunnel ID: a DNS label of 1 to 63
// lower-case letters, digits and inner hyphens, usable as a subdomain and
// as a path segment alike.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 63 || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Owner returns the owner a tunnel record carries: it binds the tunnel to
// the agent holding the resume secret, under the same authenticated
// subject, without storing the secret.
func Owner(subject, resume string) string {
	sum := sha256.Sum256([]byte(subject + "\x00" + resume))
	return hex.EncodeToString(sum[:])
}
