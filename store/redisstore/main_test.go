package redisstore_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine running: a
// Store starts none, and every test closes the client it opened.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
