package mux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/internal/yamux"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// TestSessionOverWebSocket runs a session as a tunnel does: the gateway's
// Client over the WebSocket it accepted, the agent's Server over the one it
// dialed. Streams the gateway opens carry data both ways, and closing the
// gateway's session ends the agent's.
func TestSessionOverWebSocket(t *testing.T) {
	var wg sync.WaitGroup
	gw, agent := sessionPair(t)

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

// TestMaskedDataWaitsInTheReceiveBuffer: what the agent sends is masked
// (RFC 6455), each frame with its own key. A window's worth of frames is
// parked in the gateway's stream buffer before anything reads, then read
// in pieces of many sizes; every byte must come out unmasked and in
// order.
func TestMaskedDataWaitsInTheReceiveBuffer(t *testing.T) {
	gw, agent := sessionPair(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		st, err := agent.AcceptStream()
		if err != nil {
			t.Error(err)
		}
		accepted <- st
	}()
	st, err := gw.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Write([]byte("x")); err != nil { // make the stream known to the agent
		t.Fatal(err)
	}
	ast := <-accepted
	if ast == nil {
		t.FailNow()
	}
	defer ast.Close()
	one := make([]byte, 1)
	if _, err := io.ReadFull(ast, one); err != nil {
		t.Fatal(err)
	}

	// One window: the agent's writes complete without the gateway reading.
	data := make([]byte, StreamWindow)
	for i := range data {
		data[i] = byte(i*131 + i>>8)
	}
	for off := 0; off < len(data); off += 10007 { // several frames
		if _, err := ast.Write(data[off:min(off+10007, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	// The agent's pong follows its data on the connection: once the ping
	// returns, the gateway's receive loop has buffered all of it.
	if _, err := gw.Ping(); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for size := 1; len(got) < len(data); size = size%4099 + 3 {
		p := make([]byte, size)
		n, err := st.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p[:n]...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the data read differs from the data sent")
	}
}

// TestAgentOpeningTooManyStreamsEndsTheSession: an agent (here a yamux
// server without the agent's own limit) that opens more than
// MaxControlStreams streams, and keeps them open, ends the gateway's
// session, and the gateway can tell why.
func TestAgentOpeningTooManyStreamsEndsTheSession(t *testing.T) {
	gwConn, agentConn := wsPair(t)
	conf := yamux.DefaultConfig()
	conf.LogOutput = io.Discard
	hostile, err := yamux.Server(agentConn, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostile.Close() })
	gw, err := Client(gwConn, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })

	// The gateway holds every stream the agent opens, as its control
	// loop does.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			st, err := gw.AcceptStream()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, st)
			}()
		}
	}()
	for i := 0; i <= MaxControlStreams; i++ {
		st, err := hostile.OpenStream()
		if err != nil {
			break // the gateway has ended the session
		}
		st.Write([]byte("x")) // the SYN leaves with the first write
	}
	select {
	case <-gw.CloseChan():
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway's session outlived the agent's excess stream")
	}
	if err := gw.Err(); !errors.Is(err, yamux.ErrTooManyStreams) {
		t.Fatalf("the gateway's session ended with %v, want yamux.ErrTooManyStreams", err)
	}
	wg.Wait()
}

// TestStreamLimits: each side opens up to its peer's limit and no further;
// an open past it fails with yamux.ErrStreamLimit and the session goes on.
func TestStreamLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		agent bool // whether the agent opens the streams
		limit int
	}{
		{"the agent's control streams", true, MaxControlStreams},
		{"the gateway's tunnel streams", false, MaxTunnelStreams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open, accept := sessionPair(t)
			if tc.agent {
				open, accept = accept, open
			}
			accepted := make(chan *yamux.Stream, tc.limit+1)
			go func() {
				defer close(accepted)
				for {
					st, err := accept.AcceptStream()
					if err != nil {
						return
					}
					accepted <- st
				}
			}()
			var opened []*yamux.Stream
			for range tc.limit {
				st, err := open.OpenStream()
				if err != nil {
					t.Fatalf("open %d: %v", len(opened)+1, err)
				}
				opened = append(opened, st)
			}
			if _, err := open.OpenStream(); !errors.Is(err, yamux.ErrStreamLimit) {
				t.Fatalf("open past the limit: %v, want yamux.ErrStreamLimit", err)
			}
			for range tc.limit {
				(<-accepted).Close()
			}
			for _, st := range opened {
				st.Close()
			}
			// Closed both ways, the streams make room for others, and
			// the session has gone on.
			waitStreams(t, open, 0)
			st, err := open.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if st := <-accepted; st == nil {
				t.Fatalf("the session ended: %v", accept.Err())
			}
		})
	}
}

// waitStreams polls until s has n streams open.
func waitStreams(t *testing.T, s *yamux.Session, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for s.NumStreams() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open, want %d", s.NumStreams(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// sessionPair returns the two ends of a session as a tunnel runs it: the
// gateway's Client over the WebSocket it accepted, the agent's Server over
// the one it dialed, on loopback. Both are closed when the test ends.
func sessionPair(t *testing.T) (gw, agent *yamux.Session) {
	t.Helper()
	gwConn, agentConn := wsPair(t)
	agent, err := Server(agentConn, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close() })
	gw, err = Client(gwConn, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return gw, agent
}

// wsPair returns the two ends of a WebSocket on loopback: the gateway's,
// which it accepted, and the agent's, which it dialed.
func wsPair(t *testing.T) (gw, agent net.Conn) {
	t.Helper()
	gateway := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Error(err)
			close(gateway)
			return
		}
		gateway <- c
	}))
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	agentWS, _, err := websocket.Dial(ctx, &http.Client{Transport: tr}, "ws"+strings.TrimPrefix(srv.URL, "http"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentWS.CloseNow() })
	gwWS := <-gateway
	if gwWS == nil {
		t.FailNow()
	}
	t.Cleanup(func() { gwWS.CloseNow() })
	return gwWS.NetConn(), agentWS.NetConn()
}
