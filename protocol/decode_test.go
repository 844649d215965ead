package protocol_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/http-tunnel/tunnel/protocol"
)

// sizedRequest returns an encoded http_request of exactly n bytes, padding
// the body.
func sizedRequest(t *testing.T, n int) []byte {
	t.Helper()
	base, err := protocol.Marshal(&protocol.HTTPRequest{RequestID: "r", Method: "POST", URI: "/"})
	if err != nil {
		t.Fatal(err)
	}
	pad := n - len(base)
	if pad < 0 {
		t.Fatalf("cannot make a %d-byte message, the smallest is %d", n, len(base))
	}
	data, err := protocol.Marshal(&protocol.HTTPRequest{RequestID: "r", Method: "POST", URI: "/", Body: strings.Repeat("A", pad)})
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != n {
		t.Fatalf("made %d bytes, want %d", len(data), n)
	}
	return data
}

func TestUnmarshalLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		size  int
		limit int
		want  error
	}{
		{"at limit", protocol.MaxHandshakeBytes, protocol.MaxHandshakeBytes, nil},
		{"one over limit", protocol.MaxHandshakeBytes + 1, protocol.MaxHandshakeBytes, protocol.ErrTooLarge},
		{"control at limit", protocol.MaxControlBytes, protocol.MaxControlBytes, nil},
		{"control one over", protocol.MaxControlBytes + 1, protocol.MaxControlBytes, protocol.ErrTooLarge},
		{"zero limit means MaxMessageBytes", protocol.MaxMessageBytes, 0, nil},
		{"zero limit, one over", protocol.MaxMessageBytes + 1, 0, protocol.ErrTooLarge},
		{"negative limit means MaxMessageBytes", protocol.MaxMessageBytes + 1, -1, protocol.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := protocol.Unmarshal(sizedRequest(t, tt.size), tt.limit)
			assertIs(t, err, tt.want)
			if tt.want == nil && m == nil {
				t.Error("Unmarshal returned neither a message nor an error")
			}
		})
	}
}

// TestUnmarshalTooLargeBeforeParsing feeds bytes that are not JSON: only a
// size check that runs before the parser can report ErrTooLarge for them.
func TestUnmarshalTooLargeBeforeParsing(t *testing.T) {
	t.Parallel()
	garbage := []byte(strings.Repeat("\xff", 11))
	_, err := protocol.Unmarshal(garbage, 10)
	assertIs(t, err, protocol.ErrTooLarge)
	if errors.Is(err, protocol.ErrMalformed) {
		t.Errorf("error %v also reports ErrMalformed: the message was parsed", err)
	}
	_, err = protocol.Unmarshal(garbage, 11)
	assertIs(t, err, protocol.ErrMalformed)
}

func TestUnmarshalRejects(t *testing.T) {
	t.Parallel()
	const (
		req  = `"type":"http_request","request_id":"r","method":"GET","uri":"/","body":""`
		resp = `"type":"http_response","request_id":"r","status_code":200,"body":""`
	)
	tests := []struct {
		name string
		json string
		want error
	}{
		{"empty", ``, protocol.ErrMalformed},
		{"whitespace", " \n", protocol.ErrMalformed},
		{"not json", `type=ping`, protocol.ErrMalformed},
		{"truncated", `{"type":"ping"`, protocol.ErrMalformed},
		{"truncated unknown", `{"type":"future"`, protocol.ErrMalformed},
		{"null", `null`, protocol.ErrMalformed},
		{"string", `"ping"`, protocol.ErrMalformed},
		{"number", `1`, protocol.ErrMalformed},
		{"array", `[]`, protocol.ErrMalformed},
		{"array of message", `[{"type":"ping"}]`, protocol.ErrMalformed},
		{"missing type", `{}`, protocol.ErrMalformed},
		{"missing type with fields", `{"request_id":"r"}`, protocol.ErrMalformed},
		{"type number", `{"type":1}`, protocol.ErrMalformed},
		{"type null", `{"type":null}`, protocol.ErrMalformed},
		{"type empty", `{"type":""}`, protocol.ErrMalformed},
		{"type array", `{"type":["ping"]}`, protocol.ErrMalformed},
		{"type object", `{"type":{"ping":1}}`, protocol.ErrMalformed},
		{"conflicting types", `{"type":"ping","type":"pong"}`, protocol.ErrMalformed},
		{"conflicting types by case", `{"type":"ping","TYPE":"error"}`, protocol.ErrMalformed},
		{"trailing garbage", `{"type":"ping"}x`, protocol.ErrMalformed},
		{"trailing object", `{"type":"ping"}{"type":"ping"}`, protocol.ErrMalformed},
		{"trailing garbage on request", `{` + req + `}}`, protocol.ErrMalformed},
		{"invalid utf-8 outside strings", "{\"type\":\"ping\"}\xff", protocol.ErrMalformed},
		{"request_id number", `{"type":"http_request","request_id":1,"method":"GET","uri":"/","body":""}`, protocol.ErrMalformed},
		{"request missing request_id", `{"type":"http_request","method":"GET","uri":"/","body":""}`, protocol.ErrMalformed},
		{"request empty request_id", `{"type":"http_request","request_id":"","method":"GET","uri":"/","body":""}`, protocol.ErrMalformed},
		{"request missing method", `{"type":"http_request","request_id":"r","uri":"/","body":""}`, protocol.ErrMalformed},
		{"request missing uri", `{"type":"http_request","request_id":"r","method":"GET","body":""}`, protocol.ErrMalformed},
		{"headers not lists", `{` + req + `,"headers":{"a":"b"}}`, protocol.ErrMalformed},
		{"headers list of numbers", `{` + req + `,"headers":{"a":[1]}}`, protocol.ErrMalformed},
		{"headers array", `{` + req + `,"headers":[]}`, protocol.ErrMalformed},
		{"body number", `{"type":"http_request","request_id":"r","method":"GET","uri":"/","body":0}`, protocol.ErrMalformed},
		{"timestamp string", `{` + req + `,"timestamp":"1"}`, protocol.ErrMalformed},
		{"timestamp fraction", `{` + req + `,"timestamp":1.5}`, protocol.ErrMalformed},
		{"timestamp negative", `{` + req + `,"timestamp":-1}`, protocol.ErrMalformed},
		{"chunk_index negative", `{` + req + `,"chunk_index":-1}`, protocol.ErrMalformed},
		{"chunk_count overflow", `{` + req + `,"chunk_count":1e30}`, protocol.ErrMalformed},
		{"body_size negative", `{` + req + `,"body_size":-5}`, protocol.ErrMalformed},
		{"response missing request_id", `{"type":"http_response","status_code":200,"body":""}`, protocol.ErrMalformed},
		{"status string", `{"type":"http_response","request_id":"r","status_code":"200","body":""}`, protocol.ErrMalformed},
		{"status negative", `{"type":"http_response","request_id":"r","status_code":-1,"body":""}`, protocol.ErrMalformed},
		{"processing time negative", `{` + resp + `,"processing_time_ms":-1}`, protocol.ErrMalformed},
		{"established missing connection_id", `{"type":"connection_established","tunnel_id":"t","public_url":"u"}`, protocol.ErrMalformed},
		{"established missing tunnel_id", `{"type":"connection_established","connection_id":"c","public_url":"u"}`, protocol.ErrMalformed},
		{"established missing public_url", `{"type":"connection_established","connection_id":"c","tunnel_id":"t"}`, protocol.ErrMalformed},
		{"limits array", `{"type":"connection_established","connection_id":"c","tunnel_id":"t","public_url":"u","limits":[]}`, protocol.ErrMalformed},
		{"limits negative", `{"type":"connection_established","connection_id":"c","tunnel_id":"t","public_url":"u","limits":{"max_body_bytes":-1}}`, protocol.ErrMalformed},
		{"ready version string", `{"type":"ready","version":"1"}`, protocol.ErrMalformed},
		{"ready version negative", `{"type":"ready","version":-1}`, protocol.ErrMalformed},
		{"error missing code", `{"type":"error","message":"m"}`, protocol.ErrMalformed},
		{"error code number", `{"type":"error","code":1,"message":"m"}`, protocol.ErrMalformed},
		{"unknown type", `{"type":"future_feature"}`, protocol.ErrUnknownType},
		{"unknown type with fields", `{"type":"stream_open","stream":1,"x":[1,2]}`, protocol.ErrUnknownType},
		{"unknown type not first", `{"x":1,"type":"future_feature"}`, protocol.ErrUnknownType},
		{"type differs by case", `{"type":"Ping"}`, protocol.ErrUnknownType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := protocol.Unmarshal([]byte(tt.json), 0)
			assertIs(t, err, tt.want)
			if m != nil {
				t.Errorf("Unmarshal returned %#v with an error", m)
			}
		})
	}
}

// TestUnmarshalAccepts covers inputs that are unusual but valid: the type
// member elsewhere than first, whitespace, escapes, unknown members, and
// continuations that omit what the first message carries.
func TestUnmarshalAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		json string
		want string // the message's type
	}{
		{"type last", `{"request_id":"r","method":"GET","uri":"/","body":"","type":"http_request"}`, "http_request"},
		{"whitespace", " \t\r\n{ \"type\" : \"ping\" } \n", "ping"},
		{"escaped type", `{"type":"p\u0069ng"}`, "ping"},
		{"repeated equal type", `{"type":"pong","type":"pong"}`, "pong"},
		{"unknown members", `{"type":"ping","future":{"nested":[1,2,{"a":null}]},"n":1.5}`, "ping"},
		{"unknown member with another type", `{"type":"ready","status_code":"not a number"}`, "ready"},
		{"nulls", `{"type":"http_request","request_id":"r","method":"GET","uri":"/","headers":null,"body":null,"timestamp":null}`, "http_request"},
		{"continuation", `{"type":"http_request","request_id":"r","chunk_index":2,"chunk_count":3,"body":"QQ=="}`, "http_request"},
		{"response without status", `{"type":"http_response","request_id":"r","body":""}`, "http_response"},
		{"error without message", `{"type":"error","code":"x"}`, "error"},
		{"drain", `{"type":"drain"}`, "drain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := mustUnmarshal(t, tt.json).Type(); got != tt.want {
				t.Errorf("type = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMalformedKeepsCause checks that a JSON syntax error stays reachable,
// so a caller can log where the message broke.
func TestMalformedKeepsCause(t *testing.T) {
	t.Parallel()
	_, err := protocol.Unmarshal([]byte(`{"type":"ping",}`), 0)
	var syntax *json.SyntaxError
	if !errors.As(err, &syntax) {
		t.Fatalf("error %v does not wrap a *json.SyntaxError", err)
	}
	assertIs(t, err, protocol.ErrMalformed)
}

// TestUnmarshalDoesNotAlias checks the caller may reuse its read buffer.
func TestUnmarshalDoesNotAlias(t *testing.T) {
	t.Parallel()
	data := []byte(`{"type":"error","request_id":"abc","code":"x","message":"hello"}`)
	m := mustUnmarshal(t, string(data))
	m2, err := protocol.Unmarshal(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 'z'
	}
	for _, got := range []protocol.Message{m, m2} {
		if e := got.(*protocol.Error); e.RequestID != "abc" || e.Message != "hello" {
			t.Errorf("message changed with the buffer: %#v", e)
		}
	}
}

// assertIs fails unless err wraps want (or is nil when want is nil), and
// unless it wraps no other sentinel of the package.
func assertIs(t *testing.T, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want one wrapping %v", err, want)
	}
	for _, other := range []error{protocol.ErrTooLarge, protocol.ErrUnknownType, protocol.ErrMalformed} {
		if other != want && errors.Is(err, other) {
			t.Errorf("error %v wraps %v as well as %v", err, other, want)
		}
	}
}
