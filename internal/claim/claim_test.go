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

func TestRequested(t *testing.T) {
	long := strings.Repeat("x", MaxResumeToken+1)
	for _, tc := range []struct {
		tunnelID, name, resume string
		want                   string
		err                    string // part of the error, "" for none
	}{
		{"", "", "", "", ""},                        // a generated ID
		{"", "myapp", "", "myapp", ""},              // a name
		{"abc123", "myapp", "secret", "abc123", ""}, // a resume wins over a name
		{"abc123", "", "", "", ""},                  // a tunnel_id alone claims nothing
		{"", "", "secret", "", "needs the tunnel_id"},
		{"abc123", "", long, "", "too long"},
		{"", "Not_Valid", "", "", "invalid tunnel name"},
		{"-bad", "", "secret", "", "invalid tunnel name"},
	} {
		got, err := Requested(tc.tunnelID, tc.name, tc.resume)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("Requested(%q, %q, %q) = %q, %v; want %q", tc.tunnelID, tc.name, tc.resume, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("Requested(%q, %q, %q): error %v, want one saying %q", tc.tunnelID, tc.name, tc.resume, err, tc.err)
		}
	}
}
