package tunnel_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// nodeSecrets is what one node sends to the others, and what else it
// accepts from them.
type nodeSecrets struct {
	send   string
	accept []string
}

// TestNodeSecretRotation runs two nodes in every pair of adjacent states
// of a rolling change of the node secret (old; old accepting new; new
// accepting old; new) with an agent on each, and checks that requests
// crossing between them in both directions are served. Skipping the
// middle step, a node that sends the new secret to one that knows only
// the old is refused, which is why the step exists.
func TestNodeSecretRotation(t *testing.T) {
	t.Parallel()
	steps := []nodeSecrets{
		{send: "old"},
		{send: "old", accept: []string{"new"}},
		{send: "new", accept: []string{"old"}},
		{send: "new"},
	}
	for i := range len(steps) - 1 {
		t.Run(fmt.Sprintf("step%dto%d", i, i+1), func(t *testing.T) {
			t.Parallel()
			if got := crossNodes(t, steps[i], steps[i+1]); got != [2]int{200, 200} {
				t.Errorf("requests crossing between the nodes = %v; want both 200", got)
			}
		})
	}
	t.Run("skipping the step refuses", func(t *testing.T) {
		t.Parallel()
		// The second node sends "new" (and accepts "old"), the first
		// accepts only "old".
		if got := crossNodes(t, steps[0], steps[2]); got != [2]int{200, http.StatusForbidden} {
			t.Errorf("requests crossing between the nodes = %v; want 200 one way, 403 the other", got)
		}
	})
}

// crossNodes starts two nodes on one store with secrets a and b, an agent
// on each, and returns the status of a request for the second node's
// tunnel sent to the first node, and of one for the first node's tunnel
// sent to the second.
func crossNodes(t *testing.T, a, b nodeSecrets) [2]int {
	t.Helper()
	shared := store.NewMemory()
	// start runs a node and an agent on it, and returns the node's URL
	// and the tunnel's path.
	start := func(sec nodeSecrets) (node, path string) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		node = "http://" + l.Addr().String()
		srv := &tunnel.Server{Routing: tunnel.RoutePath, Logger: quiet, Store: shared, Cache: noCache{},
			NodeURL: node, NodeSecret: sec.send, AcceptNodeSecrets: sec.accept}
		go srv.Serve(l)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		})
		ln, err := tunnel.Listen(t.Context(), node, tunnel.WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		return node, "/" + ln.ID()
	}
	firstNode, firstPath := start(a)
	secondNode, secondPath := start(b)
	c := newClient(t)
	get := func(node, path string) int {
		resp, err := c.Get(node + path + "/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && string(body) != "ok" {
			t.Errorf("GET %s%s/x = 200 %q; want the agent's answer", node, path, body)
		}
		return resp.StatusCode
	}
	return [2]int{get(firstNode, secondPath), get(secondNode, firstPath)}
}

// TestAcceptNodeSecretsChecked: Serve refuses an empty accepted secret
// (a hop with an empty header would pass) and accepted secrets without a
// NodeSecret.
func TestAcceptNodeSecretsChecked(t *testing.T) {
	t.Parallel()
	for _, srv := range []*tunnel.Server{
		{Logger: quiet, NodeSecret: "s", AcceptNodeSecrets: []string{"t", ""}},
		{Logger: quiet, AcceptNodeSecrets: []string{"t"}},
	} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Serve(l); err == nil || !strings.Contains(err.Error(), "AcceptNodeSecrets") {
			t.Errorf("Serve with AcceptNodeSecrets %q, NodeSecret set %v = %v; want a configuration error", srv.AcceptNodeSecrets, srv.NodeSecret != "", err)
		}
	}
}
