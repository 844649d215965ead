package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine running, such as
// the tracer provider envReads builds and shuts down.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
