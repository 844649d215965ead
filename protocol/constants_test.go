package protocol_test

import (
	"testing"

	"github.com/http-tunnel/tunnel/protocol"
)

// TestConstantsPinned pins every exported constant to its literal. These
// values are on the wire or in deployed configuration; changing one breaks
// every peer built before the change, so the test must be edited on purpose.
func TestConstantsPinned(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		got, want any
	}{
		{"Version", protocol.Version, 4},
		{"SubprotocolMux", protocol.SubprotocolMux, "http-tunnel.mux.v1"},
		{"SubprotocolJSON", protocol.SubprotocolJSON, "http-tunnel.json.v1"},
		{"UpgradeMux", protocol.UpgradeMux, "http-tunnel.mux.v1"},
		{"ConnectPath", protocol.ConnectPath, "/_tunnel/connect"},
		{"MaxHandshakeBytes", protocol.MaxHandshakeBytes, 16384},
		{"MaxControlBytes", protocol.MaxControlBytes, 4096},
		{"MaxMessageBytes", protocol.MaxMessageBytes, 131072},
		{"MaxFrameBytes", protocol.MaxFrameBytes, 32768},
		{"DefaultMaxBodyBytes", protocol.DefaultMaxBodyBytes, 2097152},
		{"TypePing", protocol.TypePing, "ping"},
		{"TypePong", protocol.TypePong, "pong"},
		{"TypeReady", protocol.TypeReady, "ready"},
		{"TypeConnectionEstablished", protocol.TypeConnectionEstablished, "connection_established"},
		{"TypeHTTPRequest", protocol.TypeHTTPRequest, "http_request"},
		{"TypeHTTPResponse", protocol.TypeHTTPResponse, "http_response"},
		{"TypeError", protocol.TypeError, "error"},
		{"TypeDrain", protocol.TypeDrain, "drain"},
		{"ErrTooLarge", protocol.ErrTooLarge.Error(), "protocol: message too large"},
		{"ErrUnknownType", protocol.ErrUnknownType.Error(), "protocol: unknown message type"},
		{"ErrMalformed", protocol.ErrMalformed.Error(), "protocol: malformed message"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

// TestTypeMethods checks that each message reports the type constant it is
// encoded with, including on a nil pointer.
func TestTypeMethods(t *testing.T) {
	t.Parallel()
	tests := []struct {
		msg  protocol.Message
		want string
	}{
		{(*protocol.Ping)(nil), "ping"},
		{(*protocol.Pong)(nil), "pong"},
		{(*protocol.Drain)(nil), "drain"},
		{(*protocol.Ready)(nil), "ready"},
		{(*protocol.ConnectionEstablished)(nil), "connection_established"},
		{(*protocol.HTTPRequest)(nil), "http_request"},
		{(*protocol.HTTPResponse)(nil), "http_response"},
		{(*protocol.Error)(nil), "error"},
	}
	for _, tt := range tests {
		if got := tt.msg.Type(); got != tt.want {
			t.Errorf("%T.Type() = %q, want %q", tt.msg, got, tt.want)
		}
	}
}
