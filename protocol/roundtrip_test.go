package protocol_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/http-tunnel/tunnel/protocol"
)

// TestRoundTrip encodes and decodes one value of every type, including
// values whose strings need escaping, and expects the value back.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	awkward := "a\"b\\c\nd\te\x01f é 😀 \u2028 </script>"
	tests := []struct {
		name string
		msg  protocol.Message
	}{
		{"ping", &protocol.Ping{}},
		{"pong", &protocol.Pong{}},
		{"drain", &protocol.Drain{}},
		{"ready", &protocol.Ready{Version: 7, Name: "n", TunnelID: "t", ResumeToken: awkward}},
		{"ready pool", &protocol.Ready{Version: 4, Name: "n", Pool: true}},
		{"connection_established", &protocol.ConnectionEstablished{
			Version: 1, ConnectionID: awkward, TunnelID: "t", PublicURL: "https://t.example.com",
			SubdomainURL: "https://t.example.com", PathBasedURL: "https://example.com/t", ResumeToken: "r",
			Limits: &protocol.Limits{MaxBodyBytes: 1 << 40, MaxMessageBytes: 1, MaxFrameBytes: 2, HeartbeatMillis: 3, RequestTimeoutMillis: 4},
		}},
		{"connection_established pool", &protocol.ConnectionEstablished{Version: 4, ConnectionID: "c", TunnelID: "t", PublicURL: "u", Pool: true}},
		{"http_request", &protocol.HTTPRequest{
			RequestID: "r", Method: "PATCH", URI: "/p%2Fq?a=1&a=2&b=%zz",
			Headers:   map[string][]string{"x-awkward": {awkward, "", awkward}, "x-one": {"1"}},
			Body:      protocol.EncodeBody([]byte(strings.Repeat("\x00\xff", 100))),
			Timestamp: 1700000000123, ChunkCount: 2, BodySize: 400,
		}},
		{"http_request continuation", &protocol.HTTPRequest{RequestID: "r", Body: "AA==", ChunkIndex: 1, ChunkCount: 2}},
		{"http_response", &protocol.HTTPResponse{
			RequestID: "r", StatusCode: 599, Headers: map[string][]string{"set-cookie": {"a=1", "a=2"}},
			Body: "", ProcessingTimeMillis: 1, ChunkIndex: 0, ChunkCount: 1, BodySize: 0,
		}},
		{"http_response continuation with extras", &protocol.HTTPResponse{
			RequestID: "r", StatusCode: 200, Headers: map[string][]string{"a": {"b"}}, ChunkIndex: 4, ChunkCount: 5,
		}},
		{"error", &protocol.Error{RequestID: "r", Code: "local_service_unavailable", Message: awkward}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, err := protocol.Marshal(tt.msg)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if strings.ContainsRune(string(data), '\n') {
				t.Errorf("Marshal output contains a newline: %s", data)
			}
			got, err := protocol.Unmarshal(data, len(data))
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", data, err)
			}
			if !reflect.DeepEqual(got, tt.msg) {
				t.Errorf("round trip =\n%#v\nwant\n%#v", got, tt.msg)
			}
		})
	}
}

// TestHeadersCanonical covers the one place where decoding is not the
// inverse of the Go value: empty header maps and names without values, which
// the encoding cannot tell from absence.
func TestHeadersCanonical(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		headers map[string][]string
		want    map[string][]string
	}{
		{"nil", nil, nil},
		{"empty", map[string][]string{}, nil},
		{"only empty values", map[string][]string{"a": nil, "b": {}}, nil},
		{"mixed", map[string][]string{"a": nil, "b": {"1"}}, map[string][]string{"b": {"1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, err := protocol.Marshal(&protocol.HTTPResponse{RequestID: "r", StatusCode: 200, Headers: tt.headers})
			if err != nil {
				t.Fatal(err)
			}
			got := mustUnmarshal(t, string(data)).(*protocol.HTTPResponse).Headers
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("headers = %#v, want %#v", got, tt.want)
			}
		})
	}
	// Decoding canonicalises what another encoder wrote the same way.
	m := mustUnmarshal(t, `{"type":"http_request","request_id":"r","method":"GET","uri":"/","headers":{"a":[],"b":null},"body":""}`)
	if h := m.(*protocol.HTTPRequest).Headers; h != nil {
		t.Errorf("headers = %#v, want nil", h)
	}
}

func TestMarshalRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  protocol.Message
		want error
	}{
		{"nil interface", nil, protocol.ErrMalformed},
		{"nil pointer", (*protocol.HTTPRequest)(nil), protocol.ErrMalformed},
		{"nil ping", (*protocol.Ping)(nil), protocol.ErrMalformed},
		{"foreign type", foreign{}, protocol.ErrUnknownType},
		{"request without id", &protocol.HTTPRequest{Method: "GET", URI: "/"}, protocol.ErrMalformed},
		{"request without method", &protocol.HTTPRequest{RequestID: "r", URI: "/"}, protocol.ErrMalformed},
		{"request without uri", &protocol.HTTPRequest{RequestID: "r", Method: "GET"}, protocol.ErrMalformed},
		{"request negative chunk", &protocol.HTTPRequest{RequestID: "r", Method: "GET", URI: "/", ChunkCount: -1}, protocol.ErrMalformed},
		{"response without id", &protocol.HTTPResponse{StatusCode: 200}, protocol.ErrMalformed},
		{"response negative status", &protocol.HTTPResponse{RequestID: "r", StatusCode: -200}, protocol.ErrMalformed},
		{"established without public url", &protocol.ConnectionEstablished{ConnectionID: "c", TunnelID: "t"}, protocol.ErrMalformed},
		{"established negative limit", &protocol.ConnectionEstablished{
			ConnectionID: "c", TunnelID: "t", PublicURL: "u", Limits: &protocol.Limits{MaxFrameBytes: -1},
		}, protocol.ErrMalformed},
		{"ready negative version", &protocol.Ready{Version: -1}, protocol.ErrMalformed},
		{"error without code", &protocol.Error{Message: "m"}, protocol.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, err := protocol.Marshal(tt.msg)
			assertIs(t, err, tt.want)
			if data != nil {
				t.Errorf("Marshal returned %q with an error", data)
			}
		})
	}
}

type foreign struct{}

func (foreign) Type() string { return "ping" }
