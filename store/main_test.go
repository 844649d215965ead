package store_test

import (
	"testing"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

// TestMain fails the package if any test leaves a goroutine running. Neither
// Memory nor LRU may start one.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}
