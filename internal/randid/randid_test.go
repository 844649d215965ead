package randid

import (
	"strings"
	"testing"
)

func TestTunnelIDIsADNSLabelWithEnoughEntropy(t *testing.T) {
	seen := make(map[string]bool)
	counts := make(map[rune]int)
	const n = 20000
	for i := 0; i < n; i++ {
		id := TunnelID()
		if len(id) != TunnelIDLen {
			t.Fatalf("%q: length %d", id, len(id))
		}
		if strings.Trim(id, tunnelAlphabet) != "" {
			t.Fatalf("%q has characters outside [a-z0-9]", id)
		}
		if seen[id] {
			t.Fatalf("duplicate %q after %d IDs", id, i)
		}
		seen[id] = true
		for _, r := range id {
			counts[r]++
		}
	}
	// Every letter of the alphabet is used, and none is badly over- or
	// under-represented (expected n*16/36 ≈ 8889 each).
	if len(counts) != len(tunnelAlphabet) {
		t.Fatalf("only %d of %d characters used", len(counts), len(tunnelAlphabet))
	}
	for r, c := range counts {
		if c < 8000 || c > 9800 {
			t.Errorf("character %q drawn %d times, want about 8889", r, c)
		}
	}
}

func TestHexAndSecret(t *testing.T) {
	if h := Hex(8); len(h) != 16 || strings.Trim(h, "0123456789abcdef") != "" {
		t.Errorf("Hex(8) = %q", h)
	}
	a, b := Secret(), Secret()
	if len(a) != 43 || a == b || strings.ContainsAny(a, "+/=") {
		t.Errorf("Secret() = %q, %q", a, b)
	}
}
