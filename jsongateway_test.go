package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/protocol"
)

// jsonGateway plays a serverless gateway in json mode, in process: it
// accepts agents on a WebSocket (with API Gateway's 32 KiB frame limit,
// which fails the connection with 1009), answers ready, and lets a test
// send http_request messages and collect the http_response (or error)
// messages the agent sends back. The serverless module's tests run the
// real adapter behind the API Gateway emulator.
type jsonGateway struct {
	t   *testing.T
	url string // what agents dial

	// noSubprotocol makes the gateway select no subprotocol, as an API
	// Gateway deployment that does not echo one.
	noSubprotocol bool

	reasm *protocol.Reassembler

	mu       sync.Mutex
	conns    map[string]*websocket.Conn // by connection ID
	conn     string                     // connection ID of the latest ready
	readies  []*protocol.Ready
	waiters  map[string]chan jsonReply
	tooBig   int    // connections failed for a frame over 32 KiB
	received int    // messages from agents
	posts    int    // messages to agents
	silenced string // a connection whose pings go unanswered
	// original makes the gateway behave as the original Lambda (version
	// 0): connection_established without version or resume token, no
	// answer to ping, and an error message whose code is not one of the
	// four of version 0 is undecodable (a test failure).
	original bool
	nextID   int

	ready chan string   // connection IDs, one per ready
	pongs chan struct{} // one per pong from the agent
	pings chan struct{} // one per ping from the agent
}

// jsonReply is what the agent answered a request.
type jsonReply struct {
	resp *protocol.HTTPResponse
	body []byte
	err  *protocol.Error
}

func newJSONGateway(t *testing.T, noSubprotocol bool) *jsonGateway {
	t.Helper()
	g := &jsonGateway{
		t:             t,
		noSubprotocol: noSubprotocol,
		reasm:         protocol.NewReassembler(4<<20, 64),
		conns:         make(map[string]*websocket.Conn),
		waiters:       make(map[string]chan jsonReply),
		ready:         make(chan string, 16),
		pongs:         make(chan struct{}, 16),
		pings:         make(chan struct{}, 1024),
	}
	var served sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subs := []string{protocol.SubprotocolJSON}
		if g.noSubprotocol {
			subs = nil
		}
		ws, err := websocket.Accept(w, r, subs)
		if err != nil {
			return
		}
		ws.MaxReadFrame = protocol.MaxFrameBytes
		ws.MaxFrame = protocol.MaxFrameBytes
		served.Add(1)
		defer served.Done()
		g.serve(ws)
	}))
	g.url = strings.Replace(srv.URL, "http://", "ws://", 1) + "/prod"
	t.Cleanup(func() {
		g.mu.Lock()
		for _, ws := range g.conns {
			ws.CloseNow()
		}
		g.mu.Unlock()
		served.Wait()
		srv.Close()
	})
	return g
}

// serve reads one agent connection's messages until it ends.
func (g *jsonGateway) serve(ws *websocket.Conn) {
	g.mu.Lock()
	g.nextID++
	id := fmt.Sprintf("conn-%d", g.nextID)
	g.conns[id] = ws
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.conns, id)
		g.mu.Unlock()
		ws.CloseNow()
	}()
	for {
		_, data, err := ws.ReadMessage(protocol.MaxMessageBytes)
		if errors.Is(err, websocket.ErrFrameTooBig) {
			g.mu.Lock()
			g.tooBig++
			g.mu.Unlock()
		}
		if err != nil {
			return
		}
		g.mu.Lock()
		g.received++
		g.mu.Unlock()
		g.handle(id, data)
	}
}

// handle is the gateway's answer to one message from connection id.
func (g *jsonGateway) handle(id string, data []byte) {
	msg, err := protocol.Unmarshal(data, protocol.MaxMessageBytes)
	if err != nil {
		g.t.Errorf("gateway: undecodable message from the agent: %v", err)
		return
	}
	switch m := msg.(type) {
	case *protocol.Ready:
		tid := m.TunnelID
		if tid == "" || m.ResumeToken != "resume-secret" {
			tid = "jsontunnel"
		}
		g.mu.Lock()
		g.conn = id
		g.readies = append(g.readies, m)
		original := g.original
		g.mu.Unlock()
		est := &protocol.ConnectionEstablished{
			Version: min(m.Version, protocol.Version), ConnectionID: id, TunnelID: tid,
			PublicURL: "https://gw.example/" + tid, ResumeToken: "resume-secret",
		}
		if original {
			est.Version, est.ResumeToken = 0, ""
		}
		g.post(id, est)
		g.ready <- id
	case *protocol.Ping:
		g.pings <- struct{}{}
		g.mu.Lock()
		silent := id == g.silenced || g.original
		g.mu.Unlock()
		if !silent {
			g.post(id, &protocol.Pong{})
		}
	case *protocol.Pong:
		g.pongs <- struct{}{}
	case *protocol.HTTPResponse:
		done, body, err := g.reasm.Add(m)
		if err != nil {
			g.t.Errorf("gateway: response chunk rejected: %v", err)
		} else if done != nil {
			g.deliver(done.(*protocol.HTTPResponse).RequestID, jsonReply{resp: done.(*protocol.HTTPResponse), body: body})
		}
	case *protocol.Error:
		g.mu.Lock()
		original := g.original
		g.mu.Unlock()
		switch m.Code {
		case protocol.CodeV0InvalidRequest, protocol.CodeV0Timeout, protocol.CodeV0LocalServiceUnavailable, protocol.CodeV0InternalError:
		default:
			if original {
				g.t.Errorf("gateway: the original cannot decode an error message with code %q", m.Code)
			}
		}
		g.deliver(m.RequestID, jsonReply{err: m})
	}
}

// newOriginalGateway is a jsonGateway that behaves as the original Lambda
// behind API Gateway: it selects no subprotocol and speaks version 0.
func newOriginalGateway(t *testing.T) *jsonGateway {
	g := newJSONGateway(t, true)
	g.mu.Lock()
	g.original = true
	g.mu.Unlock()
	return g
}

func (g *jsonGateway) deliver(requestID string, r jsonReply) {
	g.mu.Lock()
	ch := g.waiters[requestID]
	delete(g.waiters, requestID)
	g.mu.Unlock()
	if ch == nil {
		g.t.Errorf("gateway: answer for unknown request %q", requestID)
		return
	}
	ch <- r
}

// post sends m to connection id, in frames of at most 32 KiB as API
// Gateway's @connections API does; a connection gone meanwhile is not an
// error (a pong racing the agent's close).
func (g *jsonGateway) post(id string, m protocol.Message) {
	b, err := protocol.Marshal(m)
	if err != nil {
		g.t.Errorf("marshal %T: %v", m, err)
		return
	}
	g.mu.Lock()
	ws := g.conns[id]
	g.posts++
	g.mu.Unlock()
	if ws == nil {
		return
	}
	ws.WriteMessage(websocket.OpText, b)
}

func (g *jsonGateway) current() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.conn
}

// do sends req with body to the agent, chunked as needed, and waits for
// its answer.
func (g *jsonGateway) do(req *protocol.HTTPRequest, body []byte) jsonReply {
	g.t.Helper()
	ch := make(chan jsonReply, 1)
	g.mu.Lock()
	g.waiters[req.RequestID] = ch
	g.mu.Unlock()
	msgs, err := protocol.SplitRequest(req, body, protocol.MaxMessageBytes)
	if err != nil {
		g.t.Fatalf("split: %v", err)
	}
	for _, m := range msgs {
		g.post(g.current(), m)
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		g.t.Fatalf("no answer to %s %s", req.Method, req.URI)
		return jsonReply{}
	}
}

// listenJSON opens a tunnel through g and serves h on it until the test
// ends.
func listenJSON(t *testing.T, g *jsonGateway, h http.Handler, opts ...Option) *Listener {
	t.Helper()
	opts = append([]Option{WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	ln, err := Listen(t.Context(), g.url, opts...)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	<-g.ready
	srv := &http.Server{Handler: h}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close() // closes ln and the connections it accepted
		<-served
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ln.CloseWithContext(ctx); err != nil {
			t.Errorf("closing the listener: %v", err)
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.tooBig != 0 {
			t.Errorf("the agent sent a frame over 32 KiB on %d connections", g.tooBig)
		}
	})
	return ln
}

func request(id, method, uri string, headers map[string][]string) *protocol.HTTPRequest {
	return &protocol.HTTPRequest{RequestID: id, Method: method, URI: uri, Headers: headers, Timestamp: time.Now().UnixMilli()}
}

// echo answers with what it received.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-URI", r.RequestURI)
	w.Header().Set("X-Host", r.Host)
	w.Header()["X-Multi"] = r.Header.Values("X-Multi")
	w.Header().Add("Set-Cookie", "a=1; Path=/")
	w.Header().Add("Set-Cookie", "b=2; Path=/")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(b)
})
