package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/logbuf"
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
		g.mu.Unlock()
		g.post(id, &protocol.ConnectionEstablished{
			Version: min(m.Version, protocol.Version), ConnectionID: id, TunnelID: tid,
			PublicURL: "https://gw.example/" + tid, ResumeToken: "resume-secret",
		})
		g.ready <- id
	case *protocol.Ping:
		g.pings <- struct{}{}
		g.mu.Lock()
		silent := id == g.silenced
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
		g.deliver(m.RequestID, jsonReply{err: m})
	}
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

func TestJSONModeRequests(t *testing.T) {
	t.Parallel()
	for _, noSub := range []bool{false, true} {
		t.Run(fmt.Sprintf("noSubprotocol=%v", noSub), func(t *testing.T) {
			t.Parallel()
			g := newJSONGateway(t, noSub)
			ln := listenJSON(t, g, echo)
			if ln.ID() != "jsontunnel" || ln.URL() != "https://gw.example/jsontunnel" {
				t.Errorf("ID %q URL %q", ln.ID(), ln.URL())
			}

			binary := make([]byte, 256)
			for i := range binary {
				binary[i] = byte(i)
			}
			tests := []struct {
				name   string
				method string
				uri    string
				body   []byte
			}{
				{"GET", "GET", "/hello", nil},
				{"POST", "POST", "/submit", []byte(`{"a":1}`)},
				{"binary", "PUT", "/bin", binary},
				{"query and escapes", "GET", "/a%2Fb/%E2%9C%93?tag=a&tag=b%2Fc&empty=&sp=%20+x", nil},
			}
			for i, tt := range tests {
				hdr := map[string][]string{"x-multi": {"one", "two"}, "host": {"public.example"}}
				r := g.do(request(fmt.Sprint("req-", i), tt.method, tt.uri, hdr), tt.body)
				if r.err != nil {
					t.Fatalf("%s: error %s: %s", tt.name, r.err.Code, r.err.Message)
				}
				h := r.resp.Headers
				if r.resp.StatusCode != 200 || !bytes.Equal(r.body, tt.body) && len(tt.body)+len(r.body) > 0 {
					t.Errorf("%s: status %d body %q", tt.name, r.resp.StatusCode, r.body)
				}
				if got := h["x-uri"]; len(got) != 1 || got[0] != tt.uri {
					t.Errorf("%s: handler saw uri %q, want %q byte for byte", tt.name, got, tt.uri)
				}
				if got := h["x-method"]; len(got) != 1 || got[0] != tt.method {
					t.Errorf("%s: method %q", tt.name, got)
				}
				if got := h["x-host"]; len(got) != 1 || got[0] != "public.example" {
					t.Errorf("%s: host %q", tt.name, got)
				}
				if got := strings.Join(h["x-multi"], "|"); got != "one|two" {
					t.Errorf("%s: repeated request header arrived as %q", tt.name, got)
				}
				if got := h["set-cookie"]; len(got) != 2 || got[0] != "a=1; Path=/" || got[1] != "b=2; Path=/" {
					t.Errorf("%s: set-cookie %q, want two values", tt.name, got)
				}
				if got := h["content-length"]; len(got) != 1 || got[0] != fmt.Sprint(len(tt.body)) {
					t.Errorf("%s: content-length %q", tt.name, got)
				}
				if _, ok := h["connection"]; ok {
					t.Errorf("%s: hop-by-hop header connection sent", tt.name)
				}
			}
		})
	}
}

func TestJSONModeLargeBodies(t *testing.T) {
	t.Parallel()
	g := newJSONGateway(t, false)
	big := make([]byte, 3<<19) // 1.5 MiB
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	listenJSON(t, g, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/download" {
			b = big
		}
		w.Write(b)
	}))

	r := g.do(request("up", "POST", "/upload", nil), big)
	if r.err != nil || !bytes.Equal(r.body, big) {
		t.Fatalf("upload echoed %d bytes (error %v), want %d", len(r.body), r.err, len(big))
	}
	r = g.do(request("down", "GET", "/download", nil), nil)
	if r.err != nil || !bytes.Equal(r.body, big) {
		t.Fatalf("download got %d bytes (error %v), want %d", len(r.body), r.err, len(big))
	}
	// Each 1.5 MiB body crossed as chunks: many messages each way (and
	// no frame over 32 KiB, which listenJSON's cleanup checks).
	g.mu.Lock()
	received, posts := g.received, g.posts
	g.mu.Unlock()
	if received < 16 || posts < 16 {
		t.Errorf("messages in %d, posts %d: bodies were not chunked", received, posts)
	}
}

func TestJSONModeConcurrent(t *testing.T) {
	t.Parallel()
	g := newJSONGateway(t, false)
	listenJSON(t, g, echo)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			id := fmt.Sprint("c-", i)
			body := []byte(strings.Repeat(id, 1000))
			r := g.do(request(id, "POST", "/"+id, nil), body)
			if r.err != nil || r.resp.RequestID != id || !bytes.Equal(r.body, body) || r.resp.Headers["x-uri"][0] != "/"+id {
				t.Errorf("%s: answered %+v with %d bytes", id, r.resp, len(r.body))
			}
		})
	}
	wg.Wait()
}

func TestJSONModePingPong(t *testing.T) {
	t.Parallel()
	g := newJSONGateway(t, false)
	listenJSON(t, g, echo, WithHeartbeat(50*time.Millisecond))
	g.post(g.current(), &protocol.Ping{})
	select {
	case <-g.pongs:
	case <-time.After(10 * time.Second):
		t.Fatal("no pong to the gateway's ping")
	}
	// The agent's own heartbeat, which keeps API Gateway's idle timer
	// from closing the connection.
	select {
	case <-g.pings:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent sent no ping")
	}
}

func TestJSONModeRejects(t *testing.T) {
	t.Parallel()
	g := newJSONGateway(t, false)
	listenJSON(t, g, echo)
	tests := []struct {
		name string
		req  *protocol.HTTPRequest
		code Code
	}{
		{"header injection", request("bad-1", "GET", "/", map[string][]string{"x": {"a\r\nEvil: 1"}}), CodeInvalidRequest},
		{"space in uri", request("bad-2", "GET", "/a b", nil), CodeInvalidRequest},
		{"bad method", request("bad-3", "G T", "/", nil), CodeInvalidRequest},
	}
	for _, tt := range tests {
		r := g.do(tt.req, nil)
		if r.err == nil || r.err.Code != string(tt.code) || r.err.RequestID != tt.req.RequestID {
			t.Errorf("%s: answered %+v, want error %s", tt.name, r.err, tt.code)
		}
	}
	// A chunk whose index is out of range is rejected with its request ID.
	ch := make(chan jsonReply, 1)
	g.mu.Lock()
	g.waiters["bad-4"] = ch
	g.mu.Unlock()
	g.post(g.current(), &protocol.HTTPRequest{RequestID: "bad-4", ChunkIndex: 3, ChunkCount: 2, Body: "YQ=="})
	select {
	case r := <-ch:
		if r.err == nil || r.err.Code != string(CodeInvalidRequest) {
			t.Errorf("bad chunk: answered %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bad chunk: no answer")
	}
}

func TestJSONModeCloseUnblocksAccept(t *testing.T) {
	t.Parallel()
	g := newJSONGateway(t, false)
	ln, err := Listen(t.Context(), g.url, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	<-g.ready
	accepted := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	ln.Close()
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
	select {
	case <-ln.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after Close")
	}
}

// TestJSONModeLifetime checks the proactive reconnect before API
// Gateway's 2 h limit: a new connection resumes the same tunnel, and
// requests keep working on it.
func TestJSONModeLifetime(t *testing.T) {
	t.Parallel()
	g := newJSONGateway(t, false)
	logs := &logbuf.Buffer{}
	disconnects := make(chan error, 4)
	ln := listenJSON(t, g, echo, withJSONTiming(jsonTiming{lifetime: time.Second}), WithBackoff(time.Millisecond, 10*time.Millisecond),
		WithLogger(slog.New(slog.NewTextHandler(logs, nil))),
		WithEvents(func(e Event) {
			if e.Kind == EventDisconnected {
				disconnects <- e.Err
			}
		}))
	first := g.current()
	var second string
	select {
	case second = <-g.ready:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnect at the connection's lifetime")
	}
	if second == first {
		t.Fatal("reconnected on the same connection")
	}
	g.mu.Lock()
	resumed := g.readies[len(g.readies)-1]
	g.mu.Unlock()
	if resumed.TunnelID != "jsontunnel" || resumed.ResumeToken != "resume-secret" {
		t.Errorf("reconnect sent tunnel %q token %q, want a resume", resumed.TunnelID, resumed.ResumeToken)
	}
	if ln.ID() != "jsontunnel" {
		t.Errorf("ID after reconnect %q", ln.ID())
	}
	// A planned reconnect is reported as one, not as a lost connection.
	if err := <-disconnects; !strings.Contains(fmt.Sprint(err), "lifetime") {
		t.Errorf("disconnect reason %v, want the lifetime", err)
	}
	if out := logs.String(); strings.Contains(out, "connection lost") || !strings.Contains(out, "at its lifetime") {
		t.Errorf("logs of a planned reconnect:\n%s", out)
	}
	r := g.do(request("after", "GET", "/after", nil), nil)
	if r.err != nil || r.resp.StatusCode != 200 {
		t.Errorf("request after reconnect: %+v", r)
	}
}

// TestJSONModeSilentGatewayIsDropped: a json-mode connection on which the
// gateway goes silent (pings unanswered, nothing else arriving) is given up
// after 2 × heartbeat + jsonDeadSlack, and the agent resumes the tunnel on
// a new connection that serves requests.
func TestJSONModeSilentGatewayIsDropped(t *testing.T) {
	t.Parallel()
	g := newJSONGateway(t, false)
	logs := &logbuf.Buffer{}
	listenJSON(t, g, echo, withJSONTiming(jsonTiming{deadSlack: 50 * time.Millisecond}), WithHeartbeat(20*time.Millisecond), WithBackoff(time.Millisecond, 10*time.Millisecond),
		WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	first := g.current()
	g.mu.Lock()
	g.silenced = first
	g.mu.Unlock()

	var second string
	select {
	case second = <-g.ready:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnect after the gateway went silent")
	}
	if second == first {
		t.Fatal("reconnected on the same connection")
	}
	if out := logs.String(); !strings.Contains(out, "gateway silent") {
		t.Errorf("no log line for the silent gateway:\n%s", out)
	}
	if r := g.do(request("after-silence", "GET", "/after", nil), nil); r.err != nil || r.resp.StatusCode != 200 {
		t.Errorf("request on the new connection: %+v", r)
	}
}

// A json-mode request's remote_addr is the connection's RemoteAddr; without
// one (a version 0 or 1 gateway) it is the unspecified address.
func TestJSONModeRemoteAddr(t *testing.T) {
	t.Parallel()
	g := newJSONGateway(t, false)
	listenJSON(t, g, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.RemoteAddr)
	}))
	for _, tt := range []struct{ sent, want string }{
		{"198.51.100.9:4567", "198.51.100.9:4567"},
		{"[2001:db8::1]:0", "[2001:db8::1]:0"},
		{"", "0.0.0.0:0"},
		{"not an address", "0.0.0.0:0"},
	} {
		req := request("ra-"+tt.want+tt.sent, "GET", "/", nil)
		req.RemoteAddr = tt.sent
		r := g.do(req, nil)
		if r.err != nil || string(r.body) != tt.want {
			t.Errorf("remote_addr %q: answered %q (%+v), want %q", tt.sent, r.body, r.err, tt.want)
		}
	}
}
