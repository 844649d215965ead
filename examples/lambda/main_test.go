package main

import (
	"testing"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

// TestMain fails the package if a test leaves a goroutine running, such as
// the tracer provider envReads builds and shuts down.
func TestMain(m *testing.M) { leakcheck.Main(m) }
