package mux

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSessionOverWebSocket runs a session as a tunnel does: the gateway's
// Client over the WebSocket it accepted, the agent's Server over the one it
// dialed. Streams the gateway opens carry data both ways, and closing the
// gateway's session ends the agent's.
func TestSessionOverWebSocket(t *testing.T) {
	var wg sync.WaitGroup
	gateway := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		gateway <- c
	}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	agentWS, _, err := websocket.Dial(ctx, &http.Client{Transport: tr}, "ws"+strings.TrimPrefix(srv.URL, "http"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := Server(agentWS.NetConn(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := Client((<-gateway).NetConn(), Config{})
	if err != nil {
		t.Fatal(err)
	}

	// The agent echoes every stream.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			st, err := agent.AcceptStream()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer st.Close()
				io.Copy(st, st)
			}()
		}
	}()

	// Larger than a stream window, so flow control runs both ways.
	data := make([]byte, 3*StreamWindow+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for range 3 {
		st, err := gw.Open()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			st.Write(data)
			st.Close() // a half close: the echo still arrives
		}()
		got, err := io.ReadAll(st)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("echo: %d bytes, %v", len(got), err)
		}
	}

	gw.Close()
	select {
	case <-agent.CloseChan():
	case <-time.After(10 * time.Second):
		t.Fatal("the agent's session outlived the gateway's")
	}
	wg.Wait()
}
