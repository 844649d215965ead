package protocol_test

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/http-tunnel/tunnel/protocol"
)

func TestRemoveHopByHop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   map[string][]string
		want map[string][]string
	}{
		{
			name: "canonical names",
			in: http.Header{
				"Connection": {"keep-alive, X-Secret"}, "Keep-Alive": {"timeout=5"}, "Proxy-Connection": {"x"},
				"Te": {"trailers"}, "Trailer": {"X-Sum"}, "Transfer-Encoding": {"chunked"}, "Upgrade": {"websocket"},
				"X-Secret": {"s"}, "Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"},
			},
			want: map[string][]string{"Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}},
		},
		{
			name: "lower-case json-mode names",
			in: map[string][]string{
				"connection": {"close", "x-a"}, "te": {"trailers"}, "upgrade": {"h2c"},
				"x-a": {"1"}, "x-b": {"2"}, "host": {"example.com"},
			},
			want: map[string][]string{"x-b": {"2"}, "host": {"example.com"}},
		},
		{
			name: "Connection naming a header in another case, with empty elements",
			in:   map[string][]string{"Connection": {" , x-forwarded-prefix ,"}, "X-Forwarded-Prefix": {"/evil"}, "Accept": {"*/*"}},
			want: map[string][]string{"Accept": {"*/*"}},
		},
		{
			name: "nothing to remove",
			in:   map[string][]string{"Accept": {"*/*"}},
			want: map[string][]string{"Accept": {"*/*"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			protocol.RemoveHopByHop(tt.in)
			if !reflect.DeepEqual(map[string][]string(tt.in), tt.want) {
				t.Errorf("got %v, want %v", tt.in, tt.want)
			}
		})
	}
}

func TestValidHeader(t *testing.T) {
	t.Parallel()
	names := map[string]bool{
		"Content-Type": true, "x-a_b.c~d!#$%&'*+^`|": true, "GET": true,
		"": false, "A B": false, "a:b": false, "a\r\nb": false, "ü": false, "a\x00": false, "(x)": false,
	}
	for s, want := range names {
		if got := protocol.ValidHeaderName(s); got != want {
			t.Errorf("ValidHeaderName(%q) = %v, want %v", s, got, want)
		}
	}
	values := map[string]bool{
		"": true, "text/html; charset=utf-8": true, "a\tb": true, "ü obs-text \xff": true,
		"a\r\nX-Injected: 1": false, "a\nb": false, "a\rb": false, "a\x00b": false, "a\x7fb": false, "\x1b[31m": false,
	}
	for s, want := range values {
		if got := protocol.ValidHeaderValue(s); got != want {
			t.Errorf("ValidHeaderValue(%q) = %v, want %v", s, got, want)
		}
	}
}
