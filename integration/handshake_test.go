package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// The gateway's agent endpoint driven by coder/websocket, a WebSocket
// implementation other than the module's own: malformed handshakes are refused
// with the right close status and error message.

// rawAgent dials the agent endpoint without the client library.
func rawAgent(t *testing.T, gw *tunneltest.Gateway, subprotocols ...string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, _, err := websocket.Dial(ctx, strings.Replace(gw.URL, "http", "ws", 1)+protocol.ConnectPath,
		&websocket.DialOptions{Subprotocols: subprotocols, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func TestMalformedHandshakesAreRefused(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, HandshakeTimeout: 500 * time.Millisecond})
	mux := protocol.SubprotocolMux
	cases := []struct {
		name       string
		protos     []string
		send       func(ctx context.Context, c *websocket.Conn) error
		wantStatus websocket.StatusCode
		wantCode   string // the error message's code, if one is sent
	}{
		{"not JSON", []string{mux}, text("hello"), websocket.StatusProtocolError, "invalid_request"},
		{"JSON but no type", []string{mux}, text(`{"name":"x"}`), websocket.StatusProtocolError, "invalid_request"},
		{"wrong first message", []string{mux}, text(`{"type":"ping"}`), websocket.StatusProtocolError, "invalid_request"},
		{"binary frame", []string{mux}, func(ctx context.Context, c *websocket.Conn) error {
			return c.Write(ctx, websocket.MessageBinary, []byte(`{"type":"ready"}`))
		}, websocket.StatusProtocolError, "invalid_request"},
		{"oversized", []string{mux}, text(`{"type":"ready","name":"` + strings.Repeat("a", protocol.MaxHandshakeBytes) + `"}`), websocket.StatusMessageTooBig, ""},
		{"invalid name", []string{mux}, text(`{"type":"ready","name":"Not_Valid"}`), websocket.StatusPolicyViolation, "invalid_request"},
		{"resume without id", []string{mux}, text(`{"type":"ready","resume_token":"x"}`), websocket.StatusPolicyViolation, "invalid_request"},
		{"no subprotocol", nil, text(`{"type":"ready"}`), websocket.StatusProtocolError, "invalid_request"},
		{"silence", []string{mux}, func(context.Context, *websocket.Conn) error { return nil }, -1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := rawAgent(t, gw, tc.protos...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tc.send(ctx, c); err != nil {
				t.Fatalf("send: %v", err)
			}
			typ, msg, err := c.Read(ctx)
			if tc.wantCode != "" {
				if err != nil {
					t.Fatalf("want an error message, got %v", err)
				}
				m, perr := protocol.Unmarshal(msg, 0)
				e, ok := m.(*protocol.Error)
				if typ != websocket.MessageText || perr != nil || !ok || e.Code != tc.wantCode {
					t.Fatalf("got %s %q, want an error message with code %q", typ, msg, tc.wantCode)
				}
				_, _, err = c.Read(ctx)
			}
			if err == nil {
				t.Fatal("connection still open")
			}
			if tc.wantStatus >= 0 {
				if got := websocket.CloseStatus(err); got != tc.wantStatus {
					t.Fatalf("close status %v (err %v), want %v", got, err, tc.wantStatus)
				}
			}
		})
	}
	// After all that, the gateway still serves tunnels.
	t.Run("still serving", func(t *testing.T) {
		ln := listen(t, gw)
		tunneltest.Serve(t, ln, http.HandlerFunc(echo))
		if status, _, _ := get(t, newClient(t), ln.URL()+"/ok"); status != 200 {
			t.Fatalf("status %d", status)
		}
	})
}

// TestAgentEndpointRefusesNonUpgrades: an authenticated request that is not
// a WebSocket opening handshake gets 400 invalid_request in the error model,
// with the headers RFC 6455 asks for.
func text(s string) func(ctx context.Context, c *websocket.Conn) error {
	return func(ctx context.Context, c *websocket.Conn) error {
		return c.Write(ctx, websocket.MessageText, []byte(s))
	}
}
