package tunnel_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// An agent that crashes (its connection cut, no drain, no reconnect) frees
// its name at once for a new agent of the same identity, which has no
// resume token, while another identity still gets name_in_use.
func TestCrashedAgentsNameComesBackAtOnce(t *testing.T) {
	t.Parallel()
	gw, ev := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, Authenticator: tunnel.NewStaticTokens("alice-token", "bob-token")})
	d := &cuttableDialer{}
	crashed := listen(t, gw, tunnel.WithToken("alice-token"), tunnel.WithName("stable"),
		tunnel.WithDialer(d.Dial), tunnel.WithBackoff(time.Hour, time.Hour))
	tunneltest.Serve(t, crashed, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "old") }))
	next(t, ev.Connected, "connect")

	crash := time.Now()
	d.Cut() // kill -9: the connection ends, nothing is said
	next(t, ev.Disconnected, "the gateway seeing the crash")

	// Another identity may not take the name.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tunnel.Listen(ctx, gw.URL, tunnel.WithLogger(quiet), tunnel.WithToken("bob-token"), tunnel.WithName("stable")); !errors.Is(err, tunnel.ErrNameInUse) {
		t.Fatalf("another identity claiming the crashed agent's name: %v, want name_in_use", err)
	}
	// The restarted agent of the same identity takes it at once.
	restarted := listen(t, gw, tunnel.WithToken("alice-token"), tunnel.WithName("stable"))
	tunneltest.Serve(t, restarted, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "new") }))
	status, _, body := get(t, newClient(t), restarted.URL()+"/")
	elapsed := time.Since(crash)
	if status != 200 || body != "new" {
		t.Fatalf("restarted agent: %d %q", status, body)
	}
	t.Logf("from the crash to the restarted agent's first 200: %v", elapsed)
	if elapsed > 5*time.Second {
		t.Errorf("the name came back after %v, want under 5 s", elapsed)
	}
}
