package tunnel_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/logbuf"
	"github.com/http-tunnel/tunnel/tunneltest"
)

func TestLogsCarryIDsAndNoSecrets(t *testing.T) {
	t.Parallel()
	const agentToken, badToken, publicAuth = "agent-token-s3cr3t", "wrong-token-s3cr3t", "Bearer public-s3cr3t"
	logs := &logbuf.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, Logger: logger, Authenticator: tunnel.NewStaticTokens(agentToken)})

	if _, err := tunnel.Listen(context.Background(), gw.URL, tunnel.WithToken(badToken), tunnel.WithLogger(logger)); err == nil {
		t.Fatal("bad token accepted")
	}
	if _, err := tunnel.Listen(context.Background(), gw.URL+"?token="+badToken, tunnel.WithLogger(logger)); err == nil || strings.Contains(err.Error(), badToken) {
		t.Fatalf("query token: err %v", err)
	}
	ln := listen(t, gw, tunnel.WithToken(agentToken), tunnel.WithLogger(logger))
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", 500)
	}))
	c := newClient(t)
	req, _ := http.NewRequest("GET", gw.URL+"/nosuchtunnel/", nil)
	req.Header.Set("Authorization", publicAuth)
	req.Header.Set("X-Request-Id", "req-from-client")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	errorID := resp.Header.Get(tunnel.ErrorIDHeader)
	get(t, c, ln.URL()+"/x")
	ln.Close()

	out := logs.String()
	for _, secret := range []string{agentToken, badToken, "public-s3cr3t"} {
		if strings.Contains(out, secret) {
			t.Errorf("logs contain the secret %q", secret)
		}
	}
	// The 404's log line carries its request and error IDs.
	var found bool
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"error_id":"`+errorID+`"`) {
			found = strings.Contains(line, `"request_id":"req-from-client"`)
		}
	}
	if !found {
		t.Errorf("no log line with error_id %s and request_id req-from-client in:\n%s", errorID, out)
	}
}
