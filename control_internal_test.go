package tunnel

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/protocol"
)

// TestOversizedControlMessageIsRefused sends the gateway a control line
// over the limit and a malformed one: each closes its control stream, and
// the tunnel keeps serving.
func TestOversizedControlMessageIsRefused(t *testing.T) {
	srv := &Server{Routing: RoutePath, Logger: quietLog}
	ln := startListener(t, startGateway(t, srv), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	ln.mu.Lock()
	c := ln.current
	ln.mu.Unlock()
	for _, line := range []string{
		strings.Repeat("x", protocol.MaxControlBytes+10) + "\n",
		"{not json}\n",
	} {
		st, err := c.agentSession.(*muxSession).mux.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		st.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := st.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		// The gateway answers nothing and closes the stream.
		if b, err := bufio.NewReader(st).ReadByte(); err != io.EOF {
			t.Fatalf("control stream after a bad line: read %q, %v; want EOF", b, err)
		}
		st.Close()
	}

	resp, err := client.Get(ln.URL() + "/after")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("tunnel after bad control lines: %d %q", resp.StatusCode, body)
	}
	if len(srv.Tunnels()) != 1 {
		t.Fatalf("gateway holds %d tunnels, want 1", len(srv.Tunnels()))
	}
}
