package store_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine running. Neither
// Memory nor LRU may start one.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
