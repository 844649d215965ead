package mux

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestConnCoalescesDataHeaders checks that a yamux data header and its
// body leave as one WebSocket message, and other frames alone.
func TestConnCoalescesDataHeaders(t *testing.T) {
	var mu sync.Mutex
	var messages [][]byte
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		defer close(done)
		for {
			_, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			mu.Lock()
			messages = append(messages, msg)
			mu.Unlock()
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(ws)
	writes := [][]byte{
		{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3}, []byte("abc"), // data frame: coalesced
		{0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9}, // window update: alone
		{0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7}, // ping: alone
	}
	for _, w := range writes {
		if n, err := c.Write(w); err != nil || n != len(w) {
			t.Fatalf("write: %d %v", n, err)
		}
	}
	ws.Close(websocket.StatusNormalClosure, "")
	<-done
	mu.Lock()
	defer mu.Unlock()
	want := []string{string(append(append([]byte{}, writes[0]...), writes[1]...)), string(writes[2]), string(writes[3])}
	if len(messages) != len(want) {
		t.Fatalf("%d messages, want %d", len(messages), len(want))
	}
	for i := range want {
		if string(messages[i]) != want[i] {
			t.Errorf("message %d = %x, want %x", i, messages[i], want[i])
		}
	}
	c.Close()
}
