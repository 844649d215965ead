package yamux

import (
	"testing"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

// TestMain fails the run when a test leaves a goroutine behind: a session
// whose receive, send or keepalive loop outlives its Close, a stream
// waiter that its session's end did not wake, a ping answer left running.
func TestMain(m *testing.M) { leakcheck.Main(m) }
