// Package claim holds the rules by which an agent claims a tunnel ID, shared
// by the gateway (tunnel.Server) and the serverless adapter
// (package serverless): which IDs are valid, what a ready message may ask for,
// and who owns a claim.
package claim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// MaxResumeToken caps a resume token as received (protocol/spec.md).
const MaxResumeToken = 256

// Requested checks what an agent's ready message asks for (protocol/spec.md)
// and returns the tunnel ID it claims: the tunnel_id it resumes when it
// sends a resume token, else the name it asks for, else "" for a generated
// ID. The error's text is the message for the agent.
func Requested(tunnelID, name, resumeToken string) (string, error) {
	var id string
	switch {
	case resumeToken != "":
		id = tunnelID
	case name != "":
		id = name
	}
	switch {
	case len(resumeToken) > MaxResumeToken:
		return "", errors.New("resume token too long")
	case resumeToken != "" && tunnelID == "":
		return "", errors.New("a resume token needs the tunnel_id it resumes")
	case id != "" && !ValidID(id):
		return "", errors.New("invalid tunnel name: use 1-63 lower-case letters, digits and inner hyphens")
	}
	return id, nil
}

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

// PoolOwner returns the owner that the records of a pool carry: every agent
// of subject that asks to pool a name joins the same pool. It has the form
// "p" and 64 hex digits, so that no Owner (64 hex digits) equals it.
func PoolOwner(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return "p" + hex.EncodeToString(sum[:])
}

// Owner returns the owner a tunnel record carries: it binds the tunnel to
// the agent holding the resume secret, under the same authenticated
// subject, without storing the secret.
func Owner(subject, resume string) string {
	sum := sha256.Sum256([]byte(subject + "\x00" + resume))
	return hex.EncodeToString(sum[:])
}
