package serverless

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/protocol"
)

// originalAgent is the agent of the original http-tunnel, written against
// the wire: it offers no subprotocol, announces no version in ready, and
// knows http_request and http_response without chunk fields. It echoes
// every request. Messages from API Gateway arrive in frames of up to 32
// KiB; the websocket package reassembles them.
type originalAgent struct {
	conn        *websocket.Conn
	established map[string]any

	pong chan struct{}

	mu       sync.Mutex
	requests int      // http_request messages received
	faults   []string // what the agent found wrong on the wire
}

// dialOriginalAgent connects an originalAgent to g and waits for its
// connection_established. The agent runs until the test ends.
func dialOriginalAgent(t *testing.T, g *gateway) *originalAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, resp, err := websocket.Dial(ctx, g.emu.WebSocketURL(), &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		cancel()
		t.Fatalf("dial: %v", err)
	}
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" {
		t.Errorf("gateway selected subprotocol %q for an agent that offered none", p)
	}
	conn.SetReadLimit(2 * protocol.MaxMessageBytes)
	a := &originalAgent{conn: conn, pong: make(chan struct{}, 1)}
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		conn.CloseNow()
		<-done
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, f := range a.faults {
			t.Errorf("original agent: %s", f)
		}
	})

	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"type":"ready"}`)); err != nil {
		close(done)
		t.Fatalf("write ready: %v", err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	typ, b, err := conn.Read(rctx)
	if err != nil || typ != websocket.MessageText {
		close(done)
		t.Fatalf("read connection_established: type %v, %v", typ, err)
	}
	if err := json.Unmarshal(b, &a.established); err != nil || a.established["type"] != "connection_established" {
		close(done)
		t.Fatalf("first message %s, want connection_established (%v)", b, err)
	}
	go func() {
		defer close(done)
		a.serve(ctx)
	}()
	return a
}

func (a *originalAgent) fault(s string) {
	a.mu.Lock()
	a.faults = append(a.faults, s)
	a.mu.Unlock()
}

func (a *originalAgent) requestCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests
}

// serve answers messages until the connection ends.
func (a *originalAgent) serve(ctx context.Context) {
	for {
		typ, b, err := a.conn.Read(ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			a.fault("binary message in json mode")
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			a.fault("undecodable message: " + err.Error())
			continue
		}
		var kind string
		json.Unmarshal(raw["type"], &kind)
		switch kind {
		case "ping":
			a.write(ctx, map[string]any{"type": "pong"})
		case "pong":
			select {
			case a.pong <- struct{}{}:
			default:
			}
		case "http_request":
			a.mu.Lock()
			a.requests++
			a.mu.Unlock()
			for _, f := range []string{"chunk_index", "chunk_count", "body_size"} {
				if _, ok := raw[f]; ok {
					a.fault(fmt.Sprintf("http_request with %s: %.200s", f, b))
				}
			}
			a.answer(ctx, b)
		}
	}
}

// answer echoes an http_request as the original agent's http_response.
func (a *originalAgent) answer(ctx context.Context, b []byte) {
	var req struct {
		RequestID string              `json:"request_id"`
		Method    string              `json:"method"`
		URI       string              `json:"uri"`
		Headers   map[string][]string `json:"headers"`
		Body      string              `json:"body"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		a.fault("undecodable http_request: " + err.Error())
		return
	}
	body, err := base64.StdEncoding.DecodeString(req.Body)
	if err != nil {
		a.fault("http_request body is not base64: " + err.Error())
		return
	}
	a.write(ctx, map[string]any{
		"type":        "http_response",
		"request_id":  req.RequestID,
		"status_code": http.StatusOK,
		"headers": map[string][]string{
			"content-type": {"application/octet-stream"},
			"x-method":     {req.Method},
			"x-uri":        {req.URI},
			"set-cookie":   {"a=1; Path=/", "b=2; Path=/"},
		},
		"body":               base64.StdEncoding.EncodeToString(body),
		"processing_time_ms": 1,
	})
}

func (a *originalAgent) write(ctx context.Context, m map[string]any) {
	b, err := json.Marshal(m)
	if err != nil {
		a.fault("marshal: " + err.Error())
		return
	}
	if err := a.send(ctx, b); err != nil && ctx.Err() == nil {
		a.fault("write: " + err.Error())
	}
}

// send writes b as one text message in frames of at most 16 KiB: API
// Gateway closes a connection that sends a frame over 32 KiB, even when
// its message is within the 128 KiB limit.
func (a *originalAgent) send(ctx context.Context, b []byte) error {
	w, err := a.conn.Writer(ctx, websocket.MessageText)
	if err != nil {
		return err
	}
	for len(b) > 0 {
		n := min(len(b), 16<<10)
		if _, err := w.Write(b[:n]); err != nil {
			w.Close()
			return err
		}
		b = b[n:]
	}
	return w.Close()
}

func TestOriginalProtocolAgent(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{})
	a := dialOriginalAgent(t, g)

	for _, f := range []string{"connection_id", "tunnel_id", "public_url"} {
		if s, _ := a.established[f].(string); s == "" {
			t.Errorf("connection_established has no %s: %v", f, a.established)
		}
	}
	if v, ok := a.established["version"]; ok {
		t.Errorf("connection_established to a version 0 agent has version %v", v)
	}
	url, _ := a.established["public_url"].(string)
	if !strings.HasPrefix(url, g.emu.HTTPURL()+"/") {
		t.Fatalf("public_url %q is not under %q", url, g.emu.HTTPURL())
	}
	rec, err := g.h.Store.Get(t.Context(), a.established["tunnel_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Version != 0 {
		t.Errorf("record of a version 0 agent has version %d", rec.Version)
	}

	t.Run("ping", func(t *testing.T) {
		a.write(t.Context(), map[string]any{"type": "ping"})
		select {
		case <-a.pong:
		case <-time.After(10 * time.Second):
			t.Fatal("no pong")
		}
	})

	tests := []struct {
		name   string
		method string
		path   string
		body   []byte
	}{
		{"get", http.MethodGet, "/hello?x=1", nil},
		{"post", http.MethodPost, "/form", []byte("hello, original agent")},
		// Crosses API Gateway in several frames each way.
		{"post 64 KiB", http.MethodPost, "/upload", randomBytes(64 << 10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := g.do(t, tt.method, url+tt.path, tt.body, nil)
			checkEcho(t, resp, body, tt.method, tt.path, tt.body)
		})
	}

	t.Run("body over one message", func(t *testing.T) {
		before, requests := g.emu.Stats(), a.requestCount()
		resp, body := g.do(t, http.MethodPost, url+"/big", randomBytes(protocol.MaxMessageBytes), nil)
		wantError(t, resp, body, http.StatusRequestEntityTooLarge, tunnel.CodePayloadTooLarge)
		if posts := g.emu.Stats().Posts - before.Posts; posts != 0 {
			t.Errorf("%d messages posted to the agent, want none", posts)
		}
		// The agent still serves, and saw nothing of the refused request:
		// the next request is the only one it received since.
		resp, body = g.do(t, http.MethodGet, url+"/after", nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request after the refused one: status %d, body %q", resp.StatusCode, body)
		}
		if n := a.requestCount() - requests; n != 1 {
			t.Errorf("agent received %d requests, want only the one after the refused request", n)
		}
	})
}

// A current agent, which announces version 1, still gets chunked requests:
// the refusal is for version 0 only.
func TestChunkedRequestToCurrentAgent(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{})
	ln, _ := g.agent(t, echo)
	rec, err := g.h.Store.Get(t.Context(), ln.ID())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Version != protocol.Version {
		t.Fatalf("record of a current agent has version %d, want %d", rec.Version, protocol.Version)
	}
	big := randomBytes(protocol.MaxMessageBytes)
	resp, body := g.do(t, http.MethodPost, ln.URL()+"/big", big, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, big) {
		t.Fatalf("status %d, %d bytes back", resp.StatusCode, len(body))
	}
}
