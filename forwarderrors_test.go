package tunnel_test

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/logbuf"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// rawRequest sends raw bytes to the gateway at base and reads one response.
func rawRequest(t *testing.T, base, raw string) (*http.Response, string) {
	t.Helper()
	u, _ := url.Parse(base)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Errorf("reading the gateway's answer: %v", err)
		return nil, ""
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// Every way a forward can fail is answered with the code of whose fault it
// was, and only the gateway's and the agent's faults are logged as
// warnings.
func TestForwardingFailuresHaveTheRightCode(t *testing.T) {
	t.Parallel()
	logs := &logbuf.Buffer{}
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, ResponseTimeout: time.Second, StallTimeout: time.Second,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	ln := listen(t, gw)
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/read-body":
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return
			}
			io.WriteString(w, "read it all")
		case "/garbage":
			// The agent's side answers something that is not HTTP.
			conn, brw, _ := http.NewResponseController(w).Hijack()
			brw.WriteString("this is not an HTTP response\r\n\r\n")
			brw.Flush()
			conn.Close()
		case "/slow":
			<-r.Context().Done()
		}
	}))
	prefix := "/" + ln.ID()

	tests := []struct {
		name   string
		raw    string
		status int
		code   tunnel.Code
	}{
		{
			name: "malformed chunked body (the client's fault)",
			raw: "POST " + prefix + "/read-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"5\r\nhello\r\nzz-not-hex\r\n",
			status: http.StatusBadRequest, code: tunnel.CodeInvalidRequest,
		},
		{
			name:   "the client stops sending its body (the client's fault)",
			raw:    "POST " + prefix + "/read-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
			status: http.StatusBadRequest, code: tunnel.CodeInvalidRequest,
		},
		{
			name:   "the agent answers garbage (the agent's fault)",
			raw:    "GET " + prefix + "/garbage HTTP/1.1\r\nHost: x\r\n\r\n",
			status: http.StatusBadGateway, code: tunnel.CodeAgentUnavailable,
		},
		{
			name:   "no answer within ResponseTimeout",
			raw:    "GET " + prefix + "/slow HTTP/1.1\r\nHost: x\r\n\r\n",
			status: http.StatusGatewayTimeout, code: tunnel.CodeGatewayTimeout,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawRequest(t, gw.URL, tt.raw)
			if resp == nil {
				t.Fatalf("gateway log:\n%s", logs)
			}
			wantError(t, resp.StatusCode, resp.Header, body, tt.status, tt.code)
		})
	}
	// A client's fault is INFO in the gateway's log, not a WARN that pages
	// an operator; the agent's is WARN.
	var sawClient, sawAgent bool
	for line := range strings.SplitSeq(logs.String(), "\n") {
		switch {
		case strings.Contains(line, `"code":"invalid_request"`):
			sawClient = true
			if !strings.Contains(line, `"level":"INFO"`) {
				t.Errorf("client fault logged as: %s", line)
			}
		case strings.Contains(line, `"code":"agent_unavailable"`):
			sawAgent = true
			if !strings.Contains(line, `"level":"WARN"`) {
				t.Errorf("agent fault logged as: %s", line)
			}
		}
	}
	if !sawClient || !sawAgent {
		t.Errorf("log lines missing (client %v, agent %v):\n%s", sawClient, sawAgent, logs)
	}
}

// An agent cannot make the gateway hold a response header of any size:
// past MaxResponseHeaderBytes the public client gets 502.
func TestResponseHeaderIsBounded(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, MaxResponseHeaderBytes: 8 << 10})
	ln := listen(t, gw)
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("x", 16<<10))
		io.WriteString(w, "never seen")
	}))
	status, hdr, body := get(t, newClient(t), ln.URL()+"/")
	wantError(t, status, hdr, body, http.StatusBadGateway, tunnel.CodeAgentUnavailable)
}
