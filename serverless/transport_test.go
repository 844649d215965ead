package serverless

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/protocol"
)

// API Gateway's WebSocket endpoint answers an upgrade to anything but a
// WebSocket with 426, as the emulator does: the agent, which asks for the
// raw transport first, opens a WebSocket at once and runs json mode over
// it; told to use the raw transport only, it fails.
func TestAgentFallsBackToWebSocketBehindAPIGateway(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{})

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http"+strings.TrimPrefix(g.emu.WebSocketURL(), "ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", protocol.UpgradeMux)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("the raw upgrade: %s %q, want 426", resp.Status, body)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := tunnel.Listen(ctx, g.emu.WebSocketURL(), tunnel.WithLogger(quiet), tunnel.WithTransport(tunnel.TransportRaw)); err == nil || !strings.Contains(err.Error(), "426") {
		t.Errorf("Listen over the raw transport only: %v, want the 426", err)
	}

	ln, events := g.agent(t, echo)
	for e := range events {
		if e.Kind == tunnel.EventConnected {
			if e.Transport != tunnel.TransportWebSocket {
				t.Errorf("connected over %q, want websocket", e.Transport)
			}
			break
		}
	}
	resp2, body2 := g.do(t, http.MethodPost, ln.URL()+"/x?y=1", []byte("hello"), nil)
	checkEcho(t, resp2, body2, http.MethodPost, "/x?y=1", []byte("hello"))
}
