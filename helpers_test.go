package tunnel_test

import (
	"net/http"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/e2e"
	"github.com/http-tunnel/tunnel/internal/leakcheck"
	"github.com/http-tunnel/tunnel/tunneltest"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// The shared end-to-end helpers (internal/e2e), under the short names
// these tests use.
var (
	quiet        = e2e.Quiet
	next         = e2e.Next
	get          = e2e.Get
	wantError    = e2e.WantError
	debugLog     = e2e.DebugLog
	echo         = e2e.Echo
	parallelGets = e2e.ParallelGets
)

type cuttableDialer = e2e.CutDialer

func newClient(t testing.TB) *http.Client { return e2e.Client(t) }

func gateway(t testing.TB, srv *tunnel.Server) (*tunneltest.Gateway, *e2e.Events) {
	t.Helper()
	return e2e.Gateway(t, srv)
}

// listen opens a tunnel through gw, closed when the test ends.
func listen(t testing.TB, gw *tunneltest.Gateway, opts ...tunnel.Option) *tunnel.Listener {
	t.Helper()
	return gw.Listen(t, opts...)
}

// eachTransport runs test once per transport of the agent, in parallel
// subtests named for it, with the option that asks for it: the behaviours
// these tests pin must hold on both.
func eachTransport(t *testing.T, test func(t *testing.T, tr tunnel.Option)) {
	t.Helper()
	for _, tr := range []tunnel.Transport{tunnel.TransportRaw, tunnel.TransportWebSocket} {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel()
			test(t, tunnel.WithTransport(tr))
		})
	}
}
