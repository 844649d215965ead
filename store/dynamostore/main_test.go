package dynamostore

import (
	"testing"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

// TestMain fails the package if any test leaves a goroutine running:
// Cleanup's segment goroutines must all end before it returns, and every
// test client closes its idle connections in t.Cleanup.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}
