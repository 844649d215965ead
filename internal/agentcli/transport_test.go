package agentcli

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/http-tunnel/tunnel/tunneltest"
)

// --transport chooses how the agent reaches the gateway, and the verbose
// log says which it took.
func TestRunTransport(t *testing.T) {
	t.Parallel()
	gw := tunneltest.NewGateway(t, nil)
	local := httptest.NewServer(echo)
	t.Cleanup(local.Close)
	for _, tr := range []string{"raw", "websocket"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			a := startAgent(t, nil, "--gateway", gw.URL, "--transport", tr, "--verbose", "--print-url", "--inspect", "off", local.URL)
			url := a.stdout.wait(t, a.done, func(string) bool { return true })
			if status, _ := get(t, url+"/"); status != http.StatusOK {
				t.Fatalf("through the tunnel: %d", status)
			}
			if out := a.stderr.String(); !strings.Contains(out, "transport="+tr) {
				t.Errorf("the log does not say transport=%s:\n%s", tr, out)
			}
		})
	}
}
