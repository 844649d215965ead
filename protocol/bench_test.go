package protocol_test

import (
	"strings"
	"testing"

	"github.com/http-tunnel/tunnel/protocol"
)

// benchMessages are typical messages: a heartbeat, a small API request with
// browser-like headers, a response, and a request whose body fills most of
// one json-mode message.
func benchMessages() []struct {
	name string
	msg  protocol.Message
} {
	headers := map[string][]string{
		"host":            {"myapp.tunnel.example.com"},
		"user-agent":      {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"},
		"accept":          {"application/json, text/plain, */*"},
		"accept-encoding": {"gzip, deflate, br"},
		"accept-language": {"en-GB,en;q=0.9"},
		"content-type":    {"application/json"},
		"cookie":          {"session=0123456789abcdef", "theme=dark"},
		"traceparent":     {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	}
	return []struct {
		name string
		msg  protocol.Message
	}{
		{"ping", &protocol.Ping{}},
		{"request_small", &protocol.HTTPRequest{
			RequestID: "req_7f3a9c1e2b4d", Method: "POST", URI: "/api/v1/orders?expand=items",
			Headers: headers, Body: protocol.EncodeBody([]byte(`{"sku":"A-1","qty":2}`)), Timestamp: 1700000000123,
		}},
		{"response_small", &protocol.HTTPResponse{
			RequestID: "req_7f3a9c1e2b4d", StatusCode: 201,
			Headers: map[string][]string{"content-type": {"application/json"}, "set-cookie": {"a=1", "b=2"}},
			Body:    protocol.EncodeBody([]byte(`{"id":"ord_1","status":"created"}`)), ProcessingTimeMillis: 3,
		}},
		{"request_90KiB", &protocol.HTTPRequest{
			RequestID: "req_big", Method: "PUT", URI: "/upload", Headers: headers,
			Body: protocol.EncodeBody([]byte(strings.Repeat("x", 90<<10))), Timestamp: 1700000000123,
			ChunkCount: 3, BodySize: 250 << 10,
		}},
	}
}

func BenchmarkMarshal(b *testing.B) {
	for _, bm := range benchMessages() {
		b.Run(bm.name, func(b *testing.B) {
			data, err := protocol.Marshal(bm.msg)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := protocol.Marshal(bm.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	for _, bm := range benchMessages() {
		b.Run(bm.name, func(b *testing.B) {
			data, err := protocol.Marshal(bm.msg)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := protocol.Unmarshal(data, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeBody(b *testing.B) {
	body := []byte(strings.Repeat("x", 96<<10))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		_ = protocol.EncodeBody(body)
	}
}

func BenchmarkDecodeBody(b *testing.B) {
	body := protocol.EncodeBody([]byte(strings.Repeat("x", 96<<10)))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := protocol.DecodeBody(body); err != nil {
			b.Fatal(err)
		}
	}
}
