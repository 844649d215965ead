package serverless

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/coder/websocket"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/logbuf"
	"github.com/http-tunnel/tunnel/protocol"
)

// originalAgent is the agent of the original http-tunnel (ttf), written
// against the wire: it offers no subprotocol, announces no version in
// ready, and knows http_request and http_response without chunk fields.
// It echoes every request. As ttf, whose tokio-tungstenite writes every
// message as one WebSocket frame, it sends each message in a single frame,
// however large: an http_response whose body is over about 24 KB is a
// frame over API Gateway's 32 KB limit, and the connection is closed with
// 1009. As ttf, it decodes an error message only when its code is one of
// the four of version 0 (a fault otherwise), does not answer the
// gateway's JSON ping, and connects again when its connection ends, with
// a ready that asks for nothing, so that its tunnel comes back under a
// new ID (ttf waits a second first; the stand-in does not). Messages from
// API Gateway arrive in frames of up to 32 KiB; the websocket package
// reassembles them.
type originalAgent struct {
	url   string
	token string

	established map[string]any      // connection_established of the first connection
	reconnected chan map[string]any // connection_established of every later one
	errs        chan string         // codes of the error messages received
	holding     chan struct{}       // one per request to /hold received
	pong        chan struct{}

	mu           sync.Mutex
	conn         *websocket.Conn // the current connection
	requests     int             // http_request messages received
	largestFrame int             // bytes of the largest message (so frame) written
	faults       []string        // what the agent found wrong on the wire
}

// dialOriginalAgent connects an originalAgent to g and waits for its
// connection_established. The agent runs, reconnecting, until the test
// ends.
func dialOriginalAgent(t *testing.T, g *gateway) *originalAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &originalAgent{url: g.emu.WebSocketURL(), reconnected: make(chan map[string]any, 4),
		errs: make(chan string, 16), holding: make(chan struct{}, 4), pong: make(chan struct{}, 1)}
	conn, est, err := a.connect(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	a.established, a.conn = est, conn
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		a.mu.Lock()
		a.conn.CloseNow()
		a.mu.Unlock()
		<-done
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, f := range a.faults {
			t.Errorf("original agent: %s", f)
		}
	})
	go func() {
		defer close(done)
		for {
			a.serve(ctx, conn)
			conn.CloseNow()
			if ctx.Err() != nil {
				return
			}
			c, est, err := a.connect(ctx)
			if err != nil {
				if ctx.Err() == nil {
					a.fault("reconnect: " + err.Error())
				}
				return
			}
			a.mu.Lock()
			conn, a.conn = c, c
			a.mu.Unlock()
			select {
			case a.reconnected <- est:
			default:
				a.fault("too many reconnects")
			}
		}
	}()
	return a
}

// connect opens a connection as ttf does and returns it with its
// connection_established. Like ttf, it skips any other message before
// that one, and gives up after 10 s.
func (a *originalAgent) connect(ctx context.Context) (*websocket.Conn, map[string]any, error) {
	conn, first, err := originalReady(ctx, a.url, a.token)
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		var m map[string]any
		if err := json.Unmarshal(first, &m); err == nil && m["type"] == "connection_established" {
			return conn, m, nil
		}
		typ, b, err := conn.Read(rctx)
		if err != nil || typ != websocket.MessageText {
			conn.CloseNow()
			return nil, nil, fmt.Errorf("read connection_established: type %v, %v", typ, err)
		}
		first = b
	}
}

// originalReady opens a connection to url as ttf does (no subprotocol,
// the token as a bearer token, if any), sends ready, and returns the
// connection and the first message it receives.
func originalReady(ctx context.Context, url, token string) (*websocket.Conn, []byte, error) {
	opts := &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled}
	if token != "" {
		opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + token}}
	}
	conn, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" {
		conn.CloseNow()
		return nil, nil, fmt.Errorf("gateway selected subprotocol %q for an agent that offered none", p)
	}
	conn.SetReadLimit(2 * protocol.MaxMessageBytes)
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"type":"ready"}`)); err != nil {
		conn.CloseNow()
		return nil, nil, fmt.Errorf("write ready: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	typ, b, err := conn.Read(rctx)
	if err != nil || typ != websocket.MessageText {
		conn.CloseNow()
		return nil, nil, fmt.Errorf("read the answer to ready: type %v, %v", typ, err)
	}
	return conn, b, nil
}

// version0Code reports whether ttf decodes an error message with code: its
// ErrorCode enum has four members, and serde refuses the whole message for
// any other value.
func version0Code(code string) bool {
	switch code {
	case protocol.CodeV0InvalidRequest, protocol.CodeV0Timeout, protocol.CodeV0LocalServiceUnavailable, protocol.CodeV0InternalError:
		return true
	}
	return false
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

// serve answers the messages of conn until it ends.
func (a *originalAgent) serve(ctx context.Context, conn *websocket.Conn) {
	for {
		typ, b, err := conn.Read(ctx)
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
		case "pong":
			select {
			case a.pong <- struct{}{}:
			default:
			}
		case "error":
			var code string
			json.Unmarshal(raw["code"], &code)
			if !version0Code(code) {
				a.fault(fmt.Sprintf("error message with a code ttf cannot decode: %.200s", b))
			}
			select {
			case a.errs <- code:
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
			a.answer(ctx, conn, b)
		}
	}
}

// answer echoes an http_request as the original agent's http_response;
// to a URI under /count it answers the body's size in decimal instead,
// to /error/<code> an error message with that code, and to /hold
// nothing.
func (a *originalAgent) answer(ctx context.Context, conn *websocket.Conn, b []byte) {
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
	if strings.HasPrefix(req.URI, "/hold") {
		// A local service that never answers.
		select {
		case a.holding <- struct{}{}:
		default:
		}
		return
	}
	if code, ok := strings.CutPrefix(req.URI, "/error/"); ok {
		// The error message ttf sends when its local service fails, with
		// the code the test asks for.
		a.write(ctx, conn, map[string]any{"type": "error", "request_id": req.RequestID, "code": code, "message": "local failure"})
		return
	}
	if strings.HasPrefix(req.URI, "/count") {
		// The size alone, so that a large request gets a small answer.
		body = []byte(strconv.Itoa(len(body)))
	}
	a.write(ctx, conn, map[string]any{
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

// write sends m as one text message in one frame, as ttf does. A write
// that fails ends nothing here: ttf's write task stops, and its read
// task sees the connection end.
func (a *originalAgent) write(ctx context.Context, conn *websocket.Conn, m map[string]any) {
	b, err := json.Marshal(m)
	if err != nil {
		a.fault("marshal: " + err.Error())
		return
	}
	a.mu.Lock()
	a.largestFrame = max(a.largestFrame, len(b))
	a.mu.Unlock()
	conn.Write(ctx, websocket.MessageText, b)
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
		a.mu.Lock()
		conn := a.conn
		a.mu.Unlock()
		a.write(t.Context(), conn, map[string]any{"type": "ping"})
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
		// The answer is one frame of about 22 KiB, under API Gateway's
		// frame limit.
		{"post 16 KiB", http.MethodPost, "/upload", randomBytes(16 << 10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := g.do(t, tt.method, url+tt.path, tt.body, nil)
			checkEcho(t, resp, body, tt.method, tt.path, tt.body)
		})
	}
	t.Run("post 64 KiB", func(t *testing.T) {
		// Reaches the agent in several frames, which API Gateway's
		// posts are split into; the answer is small.
		resp, body := g.do(t, http.MethodPost, url+"/count", randomBytes(64<<10), nil)
		if resp.StatusCode != http.StatusOK || string(body) != strconv.Itoa(64<<10) {
			t.Fatalf("status %d, body %q", resp.StatusCode, body)
		}
	})

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

// largest returns the size of the largest frame the agent has written.
func (a *originalAgent) largest() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.largestFrame
}

// TestOriginalAgentLargeResponse pins what happens to an original agent's
// response body over about 24 KB: ttf writes the http_response as one
// frame, over API Gateway's 32 KB frame limit, and API Gateway closes the
// connection with 1009. The public client gets 502 agent_unavailable as
// soon as the relay sees the connection closed, not 504 at the deadline;
// the agent connects again and gets a new tunnel ID, and the old URL
// answers 404.
func TestOriginalAgentLargeResponse(t *testing.T) {
	t.Parallel()
	const deadline = 20 * time.Second
	logs := &logbuf.Buffer{}
	g := newGateway(t, gatewayConfig{responseTimeout: deadline, logger: slog.New(slog.NewTextHandler(logs, nil))})
	g.relay.AgentCheckInterval = 20 * time.Millisecond
	a := dialOriginalAgent(t, g)
	url := a.established["public_url"].(string)
	tunnelID := a.established["tunnel_id"].(string)
	connID := a.established["connection_id"].(string)

	// 23 KiB of body is a frame of about 31.7 KB: delivered.
	small := randomBytes(23 << 10)
	resp, body := g.do(t, http.MethodPost, url+"/fits", small, nil)
	checkEcho(t, resp, body, http.MethodPost, "/fits", small)
	if f := a.largest(); f > protocol.MaxFrameBytes {
		t.Fatalf("the answer to 23 KiB was a frame of %d bytes, over the limit", f)
	}

	// A request that waits on the connection when it closes.
	held := make(chan string, 1) // the status of GET /hold, or its error
	go func() {
		resp, err := g.client.Get(url + "/hold")
		if err != nil {
			held <- err.Error()
			return
		}
		resp.Body.Close()
		held <- resp.Status
	}()
	select {
	case <-a.holding:
	case got := <-held:
		t.Fatalf("GET /hold answered %s before the agent received it", got)
	}

	before := g.emu.Stats()
	start := time.Now()
	resp, body = g.do(t, http.MethodPost, url+"/big", randomBytes(25<<10), nil)
	waited := time.Since(start)
	wantError(t, resp, body, http.StatusBadGateway, tunnel.CodeAgentUnavailable)
	if waited >= deadline {
		t.Errorf("answered after %v, the response deadline", waited)
	}
	var e struct {
		ID string `json:"error_id"`
	}
	json.Unmarshal(body, &e)
	if e.ID == "" || !regexp.MustCompile(`error_id=`+e.ID+` .*connection `+connID+`: the agent's connection closed`).MatchString(logs.String()) {
		t.Errorf("no log line with the error ID %q and the closed connection:\n%s", e.ID, logs)
	}
	if got := <-held; got != "502 Bad Gateway" {
		t.Errorf("the request waiting on the same connection got %s, want 502", got)
	}
	if f := a.largest(); f <= protocol.MaxFrameBytes {
		t.Errorf("the answer to 25 KiB was a frame of %d bytes, want over %d", f, protocol.MaxFrameBytes)
	}
	if n := g.emu.Stats().Closes[1009] - before.Closes[1009]; n != 1 {
		t.Errorf("%d connections closed with 1009, want 1", n)
	}
	g.waitDisconnect(t, connID)

	var est map[string]any
	select {
	case est = <-a.reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not connect again")
	}
	if est["tunnel_id"] == tunnelID {
		t.Errorf("the agent got its tunnel %s back; version 0 cannot resume", tunnelID)
	}
	resp, body = g.do(t, http.MethodGet, url+"/after", nil, nil)
	wantError(t, resp, body, http.StatusNotFound, tunnel.CodeTunnelNotFound)
	resp, body = g.do(t, http.MethodGet, est["public_url"].(string)+"/after", nil, nil)
	checkEcho(t, resp, body, http.MethodGet, "/after", nil)
}

// Without the connection check, the public client of a request whose
// agent's connection closed waits for the deadline and gets 504.
func TestAgentCheckOff(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{responseTimeout: 500 * time.Millisecond})
	g.relay.AgentCheckInterval = -1
	a := dialOriginalAgent(t, g)
	resp, body := g.do(t, http.MethodPost, a.established["public_url"].(string)+"/big", randomBytes(25<<10), nil)
	wantError(t, resp, body, http.StatusGatewayTimeout, tunnel.CodeGatewayTimeout)
}

// The connection check leaves a slow agent alone: a request whose local
// service answers only after several checks gets its response.
func TestAgentCheckSlowAgent(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{})
	g.relay.AgentCheckInterval = 5 * time.Millisecond
	checked := make(chan struct{})
	interceptChecks(t, g, func(n int64, r *http.Request) (*http.Request, *http.Response) {
		if n == 3 {
			close(checked)
		}
		return r, nil
	})
	ln, _ := g.agent(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-checked:
			io.WriteString(w, "slow")
		case <-r.Context().Done():
		}
	}))
	resp, body := g.do(t, http.MethodGet, ln.URL()+"/slow", nil, nil)
	if resp.StatusCode != http.StatusOK || string(body) != "slow" {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
}

// The connection check counts Gone answers in a row: one that the
// connection is open between two Gones starts the count again, so a
// request whose checks alternate (a flapping or briefly unreachable
// connection) is not cut off, and gets its response; two Gones in a row
// do cut it off (TestOriginalAgentLargeResponse).
func TestAgentCheckGoneNotInARow(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{})
	g.relay.AgentCheckInterval = 5 * time.Millisecond
	checked := make(chan struct{})
	interceptChecks(t, g, func(n int64, r *http.Request) (*http.Request, *http.Response) {
		if n == 6 {
			close(checked)
		}
		if n%2 == 1 {
			// Every other check asks of a connection that never was: the
			// emulator answers GoneException.
			r = r.Clone(r.Context())
			r.URL.Path = r.URL.Path[:strings.LastIndex(r.URL.Path, "/")+1] + "never-connected"
			r.URL.RawPath = ""
		}
		return r, nil
	})
	ln, _ := g.agent(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-checked:
			io.WriteString(w, "answered")
		case <-r.Context().Done():
		}
	}))
	resp, body := g.do(t, http.MethodGet, ln.URL()+"/flapping", nil, nil)
	if resp.StatusCode != http.StatusOK || string(body) != "answered" {
		t.Fatalf("status %d, body %q; want the response, three Gones apart", resp.StatusCode, body)
	}
}

// A role that may not check connections (GetConnection answers
// ForbiddenException) ends the checks: the wait runs to its deadline, and
// the 504's log line says why no check cut it short.
func TestAgentCheckRefused(t *testing.T) {
	t.Parallel()
	logs := &logbuf.Buffer{}
	g := newGateway(t, gatewayConfig{responseTimeout: 300 * time.Millisecond, logger: slog.New(slog.NewTextHandler(logs, nil))})
	g.relay.AgentCheckInterval = 5 * time.Millisecond
	var refused atomic.Int64
	interceptChecks(t, g, func(_ int64, r *http.Request) (*http.Request, *http.Response) {
		refused.Add(1)
		return r, &http.Response{
			StatusCode: http.StatusForbidden,
			Header:     http.Header{"X-Amzn-Errortype": {"ForbiddenException"}, "Content-Type": {"application/json"}},
			Body:       io.NopCloser(strings.NewReader(`{"message":"Forbidden"}`)),
			Request:    r,
		}
	})
	ln, _ := g.agent(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	resp, body := g.do(t, http.MethodGet, ln.URL()+"/never", nil, nil)
	wantError(t, resp, body, http.StatusGatewayTimeout, tunnel.CodeGatewayTimeout)
	if n := refused.Load(); n != 1 {
		t.Errorf("%d connection checks, want one: a refusal ends them", n)
	}
	if !strings.Contains(logs.String(), "connection checks were refused") {
		t.Errorf("the 504's log line does not say the checks were refused:\n%s", logs)
	}
}

// interceptChecks sends g's connection checks (GetConnection) through
// check, which sees each with its number from 1 and may change it or
// answer it itself (a non-nil response); the Management API's other calls
// go out as they are.
func interceptChecks(t *testing.T, g *gateway, check func(n int64, r *http.Request) (*http.Request, *http.Response)) {
	var checks atomic.Int64
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	o := g.mgmt.Options()
	o.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/@connections/") {
			var resp *http.Response
			if r, resp = check(checks.Add(1), r); resp != nil {
				return resp, nil
			}
		}
		return tr.RoundTrip(r)
	})}
	g.relay.Mgmt = apigatewaymanagementapi.New(o)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The codes of an original agent's error messages keep their meaning for
// the public client: timeout is gateway_timeout, internal_error a failure
// behind the agent.
func TestOriginalAgentErrorCodes(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{})
	a := dialOriginalAgent(t, g)
	url := a.established["public_url"].(string)
	for _, tt := range []struct {
		code   string
		status int
		want   tunnel.Code
	}{
		{"local_service_unavailable", http.StatusBadGateway, tunnel.CodeLocalServiceUnavailable},
		{"timeout", http.StatusGatewayTimeout, tunnel.CodeGatewayTimeout},
		{"internal_error", http.StatusBadGateway, tunnel.CodeLocalServiceUnavailable},
		{"invalid_request", http.StatusBadRequest, tunnel.CodeInvalidRequest},
	} {
		t.Run(tt.code, func(t *testing.T) {
			resp, body := g.do(t, http.MethodGet, url+"/error/"+tt.code, nil, nil)
			wantError(t, resp, body, tt.status, tt.want)
		})
	}
}

// A ready refused for an original agent carries one of the four codes of
// version 0, which ttf decodes: unauthorized becomes invalid_request,
// internal becomes internal_error. (A current agent gets the codes
// themselves: TestReadyWithoutIdentity.)
func TestOriginalAgentRefused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		spoil func(g *gateway, connID string) error
		want  string
	}{
		{"unauthorized", func(g *gateway, connID string) error {
			return g.h.Identities.delete(context.Background(), connID)
		}, protocol.CodeV0InvalidRequest},
		{"internal", func(g *gateway, connID string) error {
			return g.h.Identities.put(context.Background(), connID, []byte("not an identity"), time.Now().Add(time.Hour))
		}, protocol.CodeV0InternalError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spoiled := make(chan error, 1)
			var g *gateway
			g = newGateway(t, gatewayConfig{tokens: []string{"s3cret"}, afterConnect: func(ev events.APIGatewayWebsocketProxyRequest) {
				spoiled <- tt.spoil(g, ev.RequestContext.ConnectionID)
			}})
			conn, b, err := originalReady(t.Context(), g.emu.WebSocketURL(), "s3cret")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseNow()
			if err := <-spoiled; err != nil {
				t.Fatal(err)
			}
			var m struct {
				Type, Code, Message string
			}
			if err := json.Unmarshal(b, &m); err != nil || m.Type != "error" {
				t.Fatalf("answer to ready %s, want an error (%v)", b, err)
			}
			if m.Code != tt.want || !version0Code(m.Code) {
				t.Errorf("code %q, want %q", m.Code, tt.want)
			}
			if !strings.Contains(m.Message, "error id") {
				t.Errorf("message %q has no error id", m.Message)
			}
		})
	}
}
