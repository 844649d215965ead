package redisstore_test

import (
	"testing"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

// TestMain fails the package if any test leaves a goroutine running: a
// Store starts none, and every test closes the client it opened.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}
