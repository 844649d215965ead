package tunnel

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/websocket"
)

// TestStatusWriterRecordsUpgrades: a WebSocket upgrade answers 101 on the
// hijacked connection, past WriteHeader; the request's metrics and span
// must still say 101, not 499 (client gone without an answer).
func TestStatusWriterRecordsUpgrades(t *testing.T) {
	status := make(chan int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		c, err := websocket.Accept(sw, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		status <- sw.status
		c.CloseNow()
	}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, &http.Client{Transport: tr}, "ws"+strings.TrimPrefix(srv.URL, "http"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if got := <-status; got != http.StatusSwitchingProtocols {
		t.Fatalf("recorded status %d, want 101", got)
	}
}
