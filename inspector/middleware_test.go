package inspector

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/websocket"
)

// A flush through the Middleware reaches the client at once: the handler
// waits for the client to have read the first event before it sends the
// second, which would hang if the flush stayed in a buffer.
func TestFlushPassesThrough(t *testing.T) {
	t.Parallel()
	rec := New(nil)
	clientGotFirst := make(chan struct{})
	srv := serve(t, rec.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: greeting\nid: 1\ndata: hello\n\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush through the Middleware: %v", err)
		}
		select {
		case <-clientGotFirst:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: second\n\n")
	})))
	resp, err := client(t).Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the first event: %v", err)
		}
		if line == "\n" {
			break
		}
	}
	close(clientGotFirst)
	rest, _ := io.ReadAll(br)
	if string(rest) != "data: second\n\n" {
		t.Errorf("rest of the stream = %q", rest)
	}
	ex := next(t, rec)
	if ex.Kind != KindSSE || ex.EventCount != 2 || len(ex.Events) != 2 {
		t.Fatalf("Kind %s, %d events (%d kept); want sse, 2", ex.Kind, ex.EventCount, len(ex.Events))
	}
	if e := ex.Events[0]; e.Type != "greeting" || e.ID != "1" || e.Data != "hello" {
		t.Errorf("first event = %+v", e)
	}
	if e := ex.Events[1]; e.Type != "" || e.ID != "1" || e.Data != "second" {
		t.Errorf("second event = %+v (the last ID carries over)", e)
	}
}

// http.ResponseController's other methods reach the server's writer.
func TestResponseControllerReachesTheServer(t *testing.T) {
	t.Parallel()
	rec := New(nil)
	srv := serve(t, rec.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for name, err := range map[string]error{
			"SetReadDeadline":  rc.SetReadDeadline(time.Now().Add(time.Minute)),
			"SetWriteDeadline": rc.SetWriteDeadline(time.Now().Add(time.Minute)),
			"EnableFullDuplex": rc.EnableFullDuplex(),
		} {
			if err != nil {
				t.Errorf("%s through the Middleware: %v", name, err)
			}
		}
		// The old interfaces still assert.
		if _, ok := w.(http.Flusher); !ok {
			t.Error("the writer is not an http.Flusher")
		}
		if _, ok := w.(http.Hijacker); !ok {
			t.Error("the writer is not an http.Hijacker")
		}
	})))
	do(t, client(t), "GET", srv.URL, "", nil)
	next(t, rec)
}

// wsEcho echoes WebSocket messages with the module's own server.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	defer c.CloseNow()
	for {
		op, p, err := c.ReadMessage(1 << 20)
		if err != nil {
			return
		}
		if err := c.WriteMessage(op, p); err != nil {
			return
		}
	}
}

// A WebSocket upgrade works through the Middleware, and its frames are
// recorded each way: the client's unmasked, big ones cut to the budget.
func TestWebSocketThroughTheMiddleware(t *testing.T) {
	t.Parallel()
	rec := New(&Options{MaxBodyBytes: 4096})
	srv := serve(t, rec.Middleware(http.HandlerFunc(wsEcho)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, wsClient(t), "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws?room=1", nil, nil)
	if err != nil {
		t.Fatalf("dial through the Middleware: %v", err)
	}
	defer c.CloseNow()
	big := payload(10000, 5)
	for _, m := range []struct {
		op byte
		p  []byte
	}{{websocket.OpText, []byte("hello")}, {websocket.OpBinary, big}} {
		if err := c.WriteMessage(m.op, m.p); err != nil {
			t.Fatal(err)
		}
		op, p, err := c.ReadMessage(1 << 20)
		if err != nil || op != m.op || !bytes.Equal(p, m.p) {
			t.Fatalf("echo: op %d, %d bytes, %v", op, len(p), err)
		}
	}
	if err := c.CloseAndDrain(websocket.StatusNormalClosure, "bye", 5*time.Second); err != nil {
		t.Fatalf("close: %v", err)
	}

	ex := next(t, rec)
	if ex.Kind != KindWebSocket || ex.Status != http.StatusSwitchingProtocols || ex.URL != "/ws?room=1" {
		t.Fatalf("Kind %s, Status %d, URL %s; want websocket, 101, /ws?room=1", ex.Kind, ex.Status, ex.URL)
	}
	if ex.ResponseHeader.Get("Upgrade") != "websocket" || ex.HeaderTime <= 0 {
		t.Errorf("response header %v, HeaderTime %v", ex.ResponseHeader, ex.HeaderTime)
	}
	// text, binary and close, each way.
	if ex.FrameCount != 6 {
		t.Errorf("FrameCount = %d, want 6", ex.FrameCount)
	}
	var client, server []Frame
	for _, f := range ex.Frames {
		if f.FromClient {
			client = append(client, f)
		} else {
			server = append(server, f)
		}
	}
	for _, side := range []struct {
		name   string
		frames []Frame
	}{{"client", client}, {"server", server}} {
		fs := side.frames
		if len(fs) < 2 {
			t.Fatalf("%s: %d frames kept, want at least 2", side.name, len(fs))
		}
		if fs[0].Opcode != websocket.OpText || string(fs[0].Payload) != "hello" || fs[0].Length != 5 || !fs[0].Fin {
			t.Errorf("%s's first frame = %+v, want text hello", side.name, fs[0])
		}
		// The budget (4096 with overheads) cuts the big frame.
		if f := fs[1]; f.Opcode != websocket.OpBinary || f.Length != int64(len(big)) || len(f.Payload) != 4096-2*frameOverhead-5 || !bytes.Equal(f.Payload, big[:len(f.Payload)]) {
			t.Errorf("%s's binary frame: opcode %d, length %d, %d kept (want %d, matching what was sent)", side.name, f.Opcode, f.Length, len(f.Payload), 4096-2*frameOverhead-5)
		}
		// The close frame is only counted: the budget is spent.
		if len(fs) != 2 {
			t.Errorf("%s: %d frames kept, want 2", side.name, len(fs))
		}
	}
	if ex.RequestBody.Size < int64(len(big)) || ex.ResponseBody.Size < int64(len(big)) || len(ex.RequestBody.Data) != 0 {
		t.Errorf("bodies: request %d bytes (%d kept), response %d bytes; want the framed bytes counted, none kept", ex.RequestBody.Size, len(ex.RequestBody.Data), ex.ResponseBody.Size)
	}
	checkAccounting(t, rec)
}

// Another protocol taken over with Hijack is recorded as raw bytes each
// way, after the response head.
func TestHijackedRawProtocol(t *testing.T) {
	t.Parallel()
	rec := New(nil)
	srv := serve(t, rec.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack through the Middleware: %v", err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	})))
	conn, err := net.DialTimeout("tcp", srv.Listener.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The line follows the request in the same write: the server has it
	// buffered when the handler takes over.
	fmt.Fprintf(conn, "GET /raw HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nping\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("response %v, %v", resp, err)
	}
	line, _ := br.ReadString('\n')
	if line != "echo: ping\n" {
		t.Fatalf("echoed %q", line)
	}
	ex := next(t, rec)
	if ex.Kind != KindHTTP || ex.Status != 101 || string(ex.RequestBody.Data) != "ping\n" || string(ex.ResponseBody.Data) != "echo: ping\n" {
		t.Errorf("Kind %s, Status %d, request %q, response %q", ex.Kind, ex.Status, ex.RequestBody.Data, ex.ResponseBody.Data)
	}
}

// A request that this Recorder's Middleware already records is not
// recorded again by an inner one.
func TestNestedMiddlewareRecordsOnce(t *testing.T) {
	t.Parallel()
	rec, other := New(nil), New(nil)
	h := rec.Middleware(other.Middleware(rec.Middleware(echo)))
	h.ServeHTTP(newDiscardWriter(), httptest.NewRequest("POST", "/", strings.NewReader("once")))
	if n := rec.Stats().Exchanges; n != 1 {
		t.Errorf("recorded %d times, want once", n)
	}
	if ex, _ := rec.Get(1); string(ex.RequestBody.Data) != "once" {
		t.Errorf("request body %q", ex.RequestBody.Data)
	}
	if n := other.Stats().Exchanges; n != 1 {
		t.Errorf("another Recorder's Middleware recorded %d times, want once", n)
	}
}

// Over HTTP/2 bodies are recorded and flushing works; nothing is read that
// the handler did not read.
func TestHTTP2(t *testing.T) {
	t.Parallel()
	rec := New(nil)
	srv := httptest.NewUnstartedServer(rec.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Write(append([]byte("got "), b...))
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush over HTTP/2: %v", err)
		}
	})))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := srv.Client()
	t.Cleanup(c.CloseIdleConnections)
	status, _, body := do(t, c, "PUT", srv.URL+"/h2", "payload", nil)
	ex := next(t, rec)
	if status != 200 || body != "got payload" || ex.Proto != "HTTP/2.0" || string(ex.RequestBody.Data) != "payload" || string(ex.ResponseBody.Data) != "got payload" {
		t.Errorf("status %d body %q; recorded %s, request %q, response %q", status, body, ex.Proto, ex.RequestBody.Data, ex.ResponseBody.Data)
	}
}

// wsClient is a client for WebSocket dials: without a Timeout, whose
// wrapper would hide the connection.
func wsClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
