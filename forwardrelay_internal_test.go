package tunnel

import (
	"testing"

	"github.com/http-tunnel/tunnel/inspector"
)

// relayable sends to the byte relay exactly the local services it can
// serve: plain http:// with nothing to join to the target and no
// inspector; everything else keeps the proxy.
func TestRelayable(t *testing.T) {
	for _, tt := range []struct {
		local   string
		inspect bool
		want    bool
	}{
		{"3000", false, true},
		{"http://localhost:3000", false, true},
		{"http://localhost:3000/", false, true},
		{"127.0.0.1:8080", false, true},
		{"http://localhost:3000", true, false},
		{"http://localhost:3000/api", false, false},
		{"http://localhost:3000/?v=1", false, false},
		{"https://localhost:8443", false, false},
		{"h2c://localhost:50051", false, false},
	} {
		local, h2c, err := parseLocal(tt.local)
		if err != nil {
			t.Fatalf("parseLocal(%q): %v", tt.local, err)
		}
		var o options
		if tt.inspect {
			o.inspect = &inspector.Options{}
		}
		if got := relayable(local, h2c, &o); got != tt.want {
			t.Errorf("relayable(%q, inspector %v) = %v, want %v", tt.local, tt.inspect, got, tt.want)
		}
	}
}
