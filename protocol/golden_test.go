package protocol_test

import (
	"reflect"
	"testing"

	"github.com/http-tunnel/tunnel/protocol"
)

// golden is one message and its exact encoding. Marshal must produce the
// bytes and Unmarshal must turn them back into the message, so renaming a
// member, reordering members or changing what is omitted breaks a test.
type golden struct {
	name string
	msg  protocol.Message
	json string
}

func goldens() []golden {
	return []golden{
		{"ping", &protocol.Ping{}, `{"type":"ping"}`},
		{"pong", &protocol.Pong{}, `{"type":"pong"}`},
		{"drain", &protocol.Drain{}, `{"type":"drain"}`},
		{"ready/original", &protocol.Ready{}, `{"type":"ready"}`},
		{
			"ready/new name",
			&protocol.Ready{Version: 1, Name: "myapp"},
			`{"type":"ready","version":1,"name":"myapp"}`,
		},
		{
			"ready/resume",
			&protocol.Ready{Version: 1, TunnelID: "k3j5h2g7f8d9s0a1", ResumeToken: "rt_secret"},
			`{"type":"ready","version":1,"tunnel_id":"k3j5h2g7f8d9s0a1","resume_token":"rt_secret"}`,
		},
		{
			"ready/protected",
			&protocol.Ready{Version: 3, Name: "docs", Access: &protocol.Access{
				Basic:    []protocol.BasicCredential{{User: "alice", Password: "pw"}},
				Bearer:   []string{"tok"},
				AllowIPs: []string{"203.0.113.0/24"},
				DenyIPs:  []string{"2001:db8::1"},
			}},
			`{"type":"ready","version":3,"name":"docs","access":{"basic":[{"user":"alice","password":"pw"}],"bearer":["tok"],"allow_ips":["203.0.113.0/24"],"deny_ips":["2001:db8::1"]}}`,
		},
		{
			"ready/pool",
			&protocol.Ready{Version: 4, Name: "api", Pool: true},
			`{"type":"ready","version":4,"name":"api","pool":true}`,
		},
		{
			"connection_established/original",
			&protocol.ConnectionEstablished{
				ConnectionID: "conn_123",
				TunnelID:     "abc123def456",
				PublicURL:    "https://tunnel.example.com/abc123def456",
			},
			`{"type":"connection_established","connection_id":"conn_123","tunnel_id":"abc123def456",` +
				`"public_url":"https://tunnel.example.com/abc123def456"}`,
		},
		{
			"connection_established/full",
			&protocol.ConnectionEstablished{
				Version:      1,
				ConnectionID: "c1",
				TunnelID:     "myapp",
				PublicURL:    "https://myapp.example.com",
				SubdomainURL: "https://myapp.example.com",
				PathBasedURL: "https://example.com/myapp",
				ResumeToken:  "rt",
				Limits: &protocol.Limits{
					MaxBodyBytes:         2097152,
					MaxMessageBytes:      131072,
					MaxFrameBytes:        32768,
					HeartbeatMillis:      300000,
					RequestTimeoutMillis: 25000,
				},
			},
			`{"type":"connection_established","version":1,"connection_id":"c1","tunnel_id":"myapp",` +
				`"public_url":"https://myapp.example.com","subdomain_url":"https://myapp.example.com",` +
				`"path_based_url":"https://example.com/myapp","resume_token":"rt","limits":{` +
				`"max_body_bytes":2097152,"max_message_bytes":131072,"max_frame_bytes":32768,` +
				`"heartbeat_interval_ms":300000,"request_timeout_ms":25000}}`,
		},
		{
			"connection_established/empty limits",
			&protocol.ConnectionEstablished{ConnectionID: "c", TunnelID: "t", PublicURL: "u", Limits: &protocol.Limits{}},
			`{"type":"connection_established","connection_id":"c","tunnel_id":"t","public_url":"u","limits":{}}`,
		},
		{
			"connection_established/one limit",
			&protocol.ConnectionEstablished{ConnectionID: "c", TunnelID: "t", PublicURL: "u", Limits: &protocol.Limits{RequestTimeoutMillis: 1}},
			`{"type":"connection_established","connection_id":"c","tunnel_id":"t","public_url":"u","limits":{"request_timeout_ms":1}}`,
		},
		{
			"http_request/minimal",
			&protocol.HTTPRequest{RequestID: "req_1", Method: "GET", URI: "/"},
			`{"type":"http_request","request_id":"req_1","method":"GET","uri":"/","headers":{},"body":"","timestamp":0}`,
		},
		{
			"http_request/full",
			&protocol.HTTPRequest{
				RequestID: "req_abc123",
				Method:    "POST",
				URI:       "/api/v1/users?limit=10&q=a%20b",
				Headers: map[string][]string{
					"host":         {"example.com"},
					"content-type": {"application/json"},
					"cookie":       {"session=abc", "token=xyz"},
				},
				Body:      "eyJ0ZXN0IjoidmFsdWUifQ==",
				Timestamp: 1234567890000,
			},
			`{"type":"http_request","request_id":"req_abc123","method":"POST","uri":"/api/v1/users?limit=10&q=a%20b",` +
				`"headers":{"content-type":["application/json"],"cookie":["session=abc","token=xyz"],"host":["example.com"]},` +
				`"body":"eyJ0ZXN0IjoidmFsdWUifQ==","timestamp":1234567890000}`,
		},
		{
			"http_request/first chunk",
			&protocol.HTTPRequest{
				RequestID: "r", Method: "PUT", URI: "/upload", Body: "QUJD", Timestamp: 5,
				ChunkIndex: 0, ChunkCount: 3, BodySize: 7,
			},
			`{"type":"http_request","request_id":"r","method":"PUT","uri":"/upload","headers":{},"body":"QUJD","timestamp":5,` +
				`"chunk_index":0,"chunk_count":3,"body_size":7}`,
		},
		{
			"http_request/continuation",
			&protocol.HTTPRequest{RequestID: "r", Body: "REVG", ChunkIndex: 1, ChunkCount: 3},
			`{"type":"http_request","request_id":"r","body":"REVG","chunk_index":1,"chunk_count":3}`,
		},
		{
			"http_response/minimal",
			&protocol.HTTPResponse{RequestID: "req_1", StatusCode: 204},
			`{"type":"http_response","request_id":"req_1","status_code":204,"headers":{},"body":""}`,
		},
		{
			"http_response/full",
			&protocol.HTTPResponse{
				RequestID:            "req_1",
				StatusCode:           200,
				Headers:              map[string][]string{"set-cookie": {"a=1", "b=2"}, "content-type": {"text/plain"}},
				Body:                 "aGVsbG8=",
				ProcessingTimeMillis: 12,
			},
			`{"type":"http_response","request_id":"req_1","status_code":200,` +
				`"headers":{"content-type":["text/plain"],"set-cookie":["a=1","b=2"]},"body":"aGVsbG8=","processing_time_ms":12}`,
		},
		{
			"http_response/first chunk",
			&protocol.HTTPResponse{RequestID: "r", StatusCode: 200, Body: "QQ==", ChunkCount: 2, BodySize: 2},
			`{"type":"http_response","request_id":"r","status_code":200,"headers":{},"body":"QQ==",` +
				`"chunk_index":0,"chunk_count":2,"body_size":2}`,
		},
		{
			"http_response/continuation",
			&protocol.HTTPResponse{RequestID: "r", Body: "Qg==", ChunkIndex: 1, ChunkCount: 2},
			`{"type":"http_response","request_id":"r","body":"Qg==","chunk_index":1,"chunk_count":2}`,
		},
		{
			"error/connection",
			&protocol.Error{Code: "name_in_use", Message: "tunnel name myapp is in use"},
			`{"type":"error","code":"name_in_use","message":"tunnel name myapp is in use"}`,
		},
		{
			"error/request",
			&protocol.Error{RequestID: "req_123", Code: "timeout", Message: "Request timed out"},
			`{"type":"error","request_id":"req_123","code":"timeout","message":"Request timed out"}`,
		},
		{
			"error/empty message",
			&protocol.Error{Code: "internal"},
			`{"type":"error","code":"internal","message":""}`,
		},
		{
			"escaping",
			&protocol.Error{Code: "x", Message: "quote\" backslash\\ nl\n cr\r tab\t nul\x00 esc\x1b <&> é 😀"},
			`{"type":"error","code":"x","message":"quote\" backslash\\ nl\n cr\r tab\t nul\u0000 esc\u001b <&> é 😀"}`,
		},
	}
}

func TestMarshalGolden(t *testing.T) {
	t.Parallel()
	for _, g := range goldens() {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			got, err := protocol.Marshal(g.msg)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(got) != g.json {
				t.Errorf("Marshal =\n%s\nwant\n%s", got, g.json)
			}
		})
	}
}

func TestUnmarshalGolden(t *testing.T) {
	t.Parallel()
	for _, g := range goldens() {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			got := mustUnmarshal(t, g.json)
			if !reflect.DeepEqual(got, g.msg) {
				t.Errorf("Unmarshal =\n%#v\nwant\n%#v", got, g.msg)
			}
		})
	}
}

func mustUnmarshal(t *testing.T, data string) protocol.Message {
	t.Helper()
	m, err := protocol.Unmarshal([]byte(data), 0)
	if err != nil {
		t.Fatalf("Unmarshal(%s): %v", data, err)
	}
	return m
}
