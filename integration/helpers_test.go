package integration

import (
	"net/http"
	"os"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/e2e"
	"github.com/http-tunnel/tunnel/internal/leakcheck"
	"github.com/http-tunnel/tunnel/tunneltest"
)

func TestMain(m *testing.M) {
	if os.Getenv(chaosNodeEnv) != "" {
		// A gateway node of TestChaos, started by the test in a process
		// of its own.
		os.Exit(runChaosNode())
	}
	leakcheck.Main(m)
}

var (
	quiet        = e2e.Quiet
	next         = e2e.Next
	get          = e2e.Get
	wantError    = e2e.WantError
	debugLog     = e2e.DebugLog
	echo         = e2e.Echo
	parallelGets = e2e.ParallelGets
)

func newClient(t testing.TB) *http.Client { return e2e.Client(t) }

func gateway(t testing.TB, srv *tunnel.Server) (*tunneltest.Gateway, *e2e.Events) {
	t.Helper()
	return e2e.Gateway(t, srv)
}

func listen(t testing.TB, gw *tunneltest.Gateway, opts ...tunnel.Option) *tunnel.Listener {
	t.Helper()
	return gw.Listen(t, opts...)
}
