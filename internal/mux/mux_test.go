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

// TestConnWriteParts checks that the parts of one WriteParts call (a data
// header and its body, or several queued frames) leave as one WebSocket
// message.
func TestConnWriteParts(t *testing.T) {
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
		c.SetReadLimit(1 << 20)
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
	hdr := []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3}
	big := make([]byte, 3*maxKeptBuffer+5)
	for i := range big {
		big[i] = byte(i % 251)
	}
	update := []byte{0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9}
	ping := []byte{0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7}
	calls := [][][]byte{
		{hdr, []byte("abc")},       // a data frame
		{update},                   // a window update
		{ping, hdr, []byte("abc")}, // a batch of two frames
		{hdr, big},                 // over maxKeptBuffer: streamed, still one message
	}
	var want []string
	for _, parts := range calls {
		if err := c.WriteParts(parts); err != nil {
			t.Fatal(err)
		}
		var msg []byte
		for _, p := range parts {
			msg = append(msg, p...)
		}
		want = append(want, string(msg))
	}
	ws.Close(websocket.StatusNormalClosure, "")
	<-done
	mu.Lock()
	defer mu.Unlock()
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
