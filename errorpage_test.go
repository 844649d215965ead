package tunnel_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/http-tunnel/tunnel"
)

// A browser gets an error as a small HTML page with the same code, message
// and error id as the JSON that programs get; what is shown is escaped.
func TestErrorsAsPagesForBrowsers(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	c := newClient(t)
	for _, tt := range []struct {
		accept string
		html   bool
	}{
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", true},
		{"", false},
		{"*/*", false},
		{"application/json", false},
		{"text/html, application/json", false},
	} {
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/no-such-tunnel/<script>", nil)
		if tt.accept != "" {
			req.Header.Set("Accept", tt.accept)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if !tt.html {
			wantError(t, resp.StatusCode, resp.Header, body, http.StatusNotFound, tunnel.CodeTunnelNotFound)
			continue
		}
		id := resp.Header.Get(tunnel.ErrorIDHeader)
		if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("Accept %q: %s, Content-Type %q", tt.accept, resp.Status, resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{"<!doctype html>", "404 Not Found", "tunnel_not_found", tunnel.ErrTunnelNotFound.Message, id} {
			if id == "" || !strings.Contains(body, want) {
				t.Errorf("page lacks %q:\n%s", want, body)
			}
		}
		if strings.Contains(body, "<script>") {
			t.Errorf("page echoes unescaped input:\n%s", body)
		}
		if resp.Header.Get("Content-Security-Policy") == "" {
			t.Error("error page without a Content-Security-Policy")
		}
	}
}
