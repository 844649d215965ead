package protocol_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/http-tunnel/tunnel/protocol"
)

// TestDecodeOriginal decodes messages exactly as the original Rust agent and
// gateway serialise them (serde, internally tagged with "type", struct field
// order, Option fields written as null).
func TestDecodeOriginal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		json string
		want protocol.Message
	}{
		{"ping", `{"type":"ping"}`, &protocol.Ping{}},
		{"pong", `{"type":"pong"}`, &protocol.Pong{}},
		{"ready", `{"type":"ready"}`, &protocol.Ready{}},
		{
			"connection_established",
			`{"type":"connection_established","connection_id":"conn_123","tunnel_id":"abc123def456","public_url":"https://tunnel.example.com/abc123def456"}`,
			&protocol.ConnectionEstablished{ConnectionID: "conn_123", TunnelID: "abc123def456", PublicURL: "https://tunnel.example.com/abc123def456"},
		},
		{
			"http_request",
			`{"type":"http_request","request_id":"req_abc123","method":"GET","uri":"/path?query=value",` +
				`"headers":{"host":["example.com"],"cookie":["session=abc","token=xyz"]},"body":"","timestamp":1234567890000}`,
			&protocol.HTTPRequest{
				RequestID: "req_abc123", Method: "GET", URI: "/path?query=value",
				Headers: map[string][]string{"host": {"example.com"}, "cookie": {"session=abc", "token=xyz"}},
				Body:    "", Timestamp: 1234567890000,
			},
		},
		{
			"http_request pretty printed without body",
			"{\n  \"type\": \"http_request\",\n  \"request_id\": \"req_123\",\n  \"method\": \"GET\",\n  \"uri\": \"/test\",\n  \"headers\": {},\n  \"timestamp\": 1234567890\n}",
			&protocol.HTTPRequest{RequestID: "req_123", Method: "GET", URI: "/test", Timestamp: 1234567890},
		},
		{
			"http_response",
			`{"type":"http_response","request_id":"req_123","status_code":200,"headers":{"content-type":["application/json"],` +
				`"set-cookie":["a=1; Path=/","b=2; Path=/"]},"body":"eyJvayI6dHJ1ZX0=","processing_time_ms":42}`,
			&protocol.HTTPResponse{
				RequestID: "req_123", StatusCode: 200,
				Headers: map[string][]string{"content-type": {"application/json"}, "set-cookie": {"a=1; Path=/", "b=2; Path=/"}},
				Body:    "eyJvayI6dHJ1ZX0=", ProcessingTimeMillis: 42,
			},
		},
		{
			"error with request",
			`{"type":"error","request_id":"req_123","code":"timeout","message":"Request timed out"}`,
			&protocol.Error{RequestID: "req_123", Code: "timeout", Message: "Request timed out"},
		},
		{
			"error with null request",
			`{"type":"error","request_id":null,"code":"internal_error","message":"boom"}`,
			&protocol.Error{Code: "internal_error", Message: "boom"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mustUnmarshal(t, tt.json)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Unmarshal =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

// TestEncodeForOriginal checks the members the original's decoders require
// (non-Option fields without a serde default) are written even when empty:
// without them the original agent or gateway rejects the whole message.
func TestEncodeForOriginal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		msg     protocol.Message
		members []string
	}{
		{
			"http_request with empty body and no headers",
			&protocol.HTTPRequest{RequestID: "r", Method: "GET", URI: "/"},
			[]string{`"type":"http_request"`, `"request_id":"r"`, `"method":"GET"`, `"uri":"/"`, `"headers":{}`, `"body":""`, `"timestamp":0`},
		},
		{
			"http_response with empty body and no headers",
			&protocol.HTTPResponse{RequestID: "r", StatusCode: 404},
			[]string{`"request_id":"r"`, `"status_code":404`, `"headers":{}`, `"body":""`},
		},
		{
			"connection_established",
			&protocol.ConnectionEstablished{ConnectionID: "c", TunnelID: "t", PublicURL: "u"},
			[]string{`"connection_id":"c"`, `"tunnel_id":"t"`, `"public_url":"u"`},
		},
		{
			"error with empty message",
			&protocol.Error{Code: "internal_error"},
			[]string{`"code":"internal_error"`, `"message":""`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, err := protocol.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(data), `{"type":"`) {
				t.Errorf("%s does not start with the type member", data)
			}
			for _, m := range tt.members {
				if !strings.Contains(string(data), m) {
					t.Errorf("%s lacks %s", data, m)
				}
			}
		})
	}
}
