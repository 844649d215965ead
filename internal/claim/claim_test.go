package claim

import (
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"a": true, "abc-123": true, strings.Repeat("a", 63): true, "0abc": true,
		"": false, "-a": false, "a-": false, "A": false, "a.b": false, "a_b": false, strings.Repeat("a", 64): false, "é": false,
	} {
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestOwner(t *testing.T) {
	a, b := Owner("s", "secret"), Owner("s", "secret")
	if a != b || len(a) != 64 {
		t.Fatalf("Owner is not a stable SHA-256 hex: %q %q", a, b)
	}
	// The subject and the secret both count, and cannot be shifted into
	// each other.
	for _, other := range []string{Owner("t", "secret"), Owner("s", "secrets"), Owner("s\x00secret", ""), Owner("", "s\x00secret")} {
		if other == a {
			t.Errorf("Owner collides: %q", other)
		}
	}
	if strings.Contains(a, "secret") {
		t.Error("Owner shows the secret")
	}
}
