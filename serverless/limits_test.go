package serverless

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/protocol"
)

// TestBodyOverTheLimit checks that a body over the limit is refused with
// 413 before anything reaches the agent, while one at the limit passes.
func TestBodyOverTheLimit(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{})
	var calls atomic.Int64
	ln, _ := g.agent(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		echo.ServeHTTP(w, r)
	}))
	resp, body := g.do(t, http.MethodPost, ln.URL()+"/big", make([]byte, protocol.DefaultMaxBodyBytes+1), nil)
	wantError(t, resp, body, http.StatusRequestEntityTooLarge, tunnel.CodePayloadTooLarge)
	if calls.Load() != 0 {
		t.Fatalf("the agent was called %d times for a refused body", calls.Load())
	}
	resp, body = g.do(t, http.MethodPost, ln.URL()+"/big", make([]byte, protocol.DefaultMaxBodyBytes), nil) // NULs: valid UTF-8, costly as JSON text
	if resp.StatusCode != http.StatusOK || len(body) != protocol.DefaultMaxBodyBytes {
		t.Fatalf("body at the limit: %d, %d bytes back: %.200s", resp.StatusCode, len(body), body)
	}
}
