package serverless

import (
	"testing"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

// TestMain fails the package if a test leaves a goroutine running: every
// emulator, agent, client transport and provider a test starts is closed
// by its cleanup.
func TestMain(m *testing.M) { leakcheck.Main(m) }
