package apigwtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/coder/websocket"
)

var connectionIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{15}=$`)

// TestWebSocketEvents follows one connection through its three routes and
// checks the events' shapes and the counters.
func TestWebSocketEvents(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	e := startEmulator(t, Config{WebSocket: rec.handle, WebSocketStage: "prod"})
	if !strings.HasSuffix(e.WebSocketURL(), "/prod") {
		t.Fatalf("WebSocketURL %q lacks the stage", e.WebSocketURL())
	}

	c, _, err := websocket.Dial(testContext(t), e.WebSocketURL()+"?token=abc&tag=a&tag=b", &websocket.DialOptions{
		HTTPHeader:   http.Header{"Authorization": {"Bearer tok"}, "User-Agent": {"agent/1.0"}},
		Subprotocols: []string{"tunnel.json"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	conn := recv(t, rec.connect)
	rc := conn.RequestContext
	id := rc.ConnectionID
	if !connectionIDPattern.MatchString(id) {
		t.Errorf("connectionId %q is not shaped like API Gateway's", id)
	}
	wantRC := map[string][2]string{
		"routeKey":         {rc.RouteKey, "$connect"},
		"eventType":        {rc.EventType, "CONNECT"},
		"stage":            {rc.Stage, "prod"},
		"messageDirection": {rc.MessageDirection, "IN"},
		"sourceIp":         {rc.Identity.SourceIP, "127.0.0.1"},
		"userAgent":        {rc.Identity.UserAgent, "agent/1.0"},
		"domainName":       {rc.DomainName, strings.TrimPrefix(strings.TrimSuffix(e.WebSocketURL(), "/prod"), "ws://")},
	}
	for name, got := range wantRC {
		if got[0] != got[1] {
			t.Errorf("requestContext.%s = %q, want %q", name, got[0], got[1])
		}
	}
	if rc.ConnectedAt == 0 || rc.RequestTimeEpoch == 0 || rc.RequestID == "" || rc.APIID == "" || rc.RequestTime == "" {
		t.Errorf("requestContext lacks times or IDs: %+v", rc)
	}
	if got := conn.Headers["Authorization"]; got != "Bearer tok" {
		t.Errorf("Authorization header %q", got)
	}
	if got := conn.MultiValueHeaders["Sec-Websocket-Protocol"]; !slices.Equal(got, []string{"tunnel.json"}) {
		t.Errorf("Sec-WebSocket-Protocol values %q", got)
	}
	if conn.Headers["Host"] == "" || conn.Headers["X-Forwarded-For"] != "127.0.0.1" || conn.Headers["X-Amzn-Trace-Id"] == "" {
		t.Errorf("headers lack Host or the forwarding headers: %v", conn.Headers)
	}
	if _, ok := conn.Headers["Connection"]; ok {
		t.Error("hop-by-hop Connection header passed on")
	}
	if got := conn.QueryStringParameters["token"]; got != "abc" {
		t.Errorf("query token %q", got)
	}
	if got := conn.MultiValueQueryStringParameters["tag"]; !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("query tag values %q", got)
	}

	ctx := testContext(t)
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"ready"}`)); err != nil {
		t.Fatal(err)
	}
	binary := []byte{0, 1, 2, 0xff}
	if err := c.Write(ctx, websocket.MessageBinary, binary); err != nil {
		t.Fatal(err)
	}
	msgs := []events.APIGatewayWebsocketProxyRequest{recv(t, rec.message), recv(t, rec.message)}
	for _, m := range msgs {
		if m.RequestContext.RouteKey != "$default" || m.RequestContext.EventType != "MESSAGE" || m.RequestContext.ConnectionID != id {
			t.Errorf("message event context %+v", m.RequestContext)
		}
		if m.RequestContext.MessageID == nil {
			t.Error("message event without messageId")
		}
	}
	// Invocations run concurrently: the two events may come in any order.
	slices.SortFunc(msgs, func(a, b events.APIGatewayWebsocketProxyRequest) int {
		return strings.Compare(a.Body, b.Body)
	})
	if msgs[0].Body != "AAEC/w==" || !msgs[0].IsBase64Encoded {
		t.Errorf("binary message event body %q base64=%v", msgs[0].Body, msgs[0].IsBase64Encoded)
	}
	if msgs[1].Body != `{"type":"ready"}` || msgs[1].IsBase64Encoded {
		t.Errorf("text message event body %q base64=%v", msgs[1].Body, msgs[1].IsBase64Encoded)
	}

	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
	disc := recv(t, rec.disconnect)
	drc := disc.RequestContext
	if drc.RouteKey != "$disconnect" || drc.EventType != "DISCONNECT" || drc.ConnectionID != id {
		t.Errorf("disconnect event context %+v", drc)
	}
	if drc.DisconnectStatusCode != 1000 || drc.DisconnectReason == nil || *drc.DisconnectReason != "bye" {
		t.Errorf("disconnect status %d reason %v", drc.DisconnectStatusCode, drc.DisconnectReason)
	}

	s := e.Stats()
	if s.ConnectInvocations != 1 || s.DefaultInvocations != 2 || s.DisconnectInvocations != 1 || s.MessagesIn != 2 || s.Closes[1000] != 1 {
		t.Errorf("stats %+v", s)
	}
	if s.Invocations() != 4 {
		t.Errorf("Invocations() = %d, want 4", s.Invocations())
	}
}

// TestHandlerContext checks what a handler finds in its context: a Lambda
// context and a deadline.
func TestHandlerContext(t *testing.T) {
	t.Parallel()
	type seen struct {
		lc       *lambdacontext.LambdaContext
		deadline time.Duration
	}
	got := make(chan seen, 1)
	e := startEmulator(t, Config{
		Limits: Limits{FunctionTimeout: time.Minute},
		HTTP: func(ctx context.Context, _ events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			lc, _ := lambdacontext.FromContext(ctx)
			d, _ := ctx.Deadline()
			got <- seen{lc, time.Until(d)}
			return events.APIGatewayV2HTTPResponse{StatusCode: 204}, nil
		},
	})
	resp, err := httpClient(t).Get(e.HTTPURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s := recv(t, got)
	if s.lc == nil || s.lc.AwsRequestID == "" || !strings.HasPrefix(s.lc.InvokedFunctionArn, "arn:aws:lambda:") {
		t.Errorf("lambda context %+v", s.lc)
	}
	if s.deadline <= 50*time.Second || s.deadline > time.Minute {
		t.Errorf("deadline %v away, want the function timeout", s.deadline)
	}
}

// TestConnectRefusal checks that $connect decides the upgrade.
func TestConnectRefusal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		onConnect  func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error)
		timeout    time.Duration // IntegrationTimeout; zero for the default
		wantStatus int
		wantBody   string
	}{
		{
			name: "401 with body",
			onConnect: func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
				return events.APIGatewayProxyResponse{StatusCode: 401, Body: "Unauthorized"}, nil
			},
			wantStatus: 401,
			wantBody:   "Unauthorized",
		},
		{
			name: "handler error",
			onConnect: func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
				return events.APIGatewayProxyResponse{}, errors.New("table missing")
			},
			wantStatus: 500,
			wantBody:   `{"message":"Internal server error"}`,
		},
		{
			name: "statusCode unset",
			onConnect: func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
				return events.APIGatewayProxyResponse{}, nil
			},
			wantStatus: 500,
			wantBody:   `{"message":"Internal server error"}`,
		},
		{
			name: "integration timeout",
			onConnect: func(ctx context.Context, _ events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
				<-ctx.Done() // past the integration timeout; Close cancels it
				return events.APIGatewayProxyResponse{StatusCode: 200}, nil
			},
			timeout:    200 * time.Millisecond,
			wantStatus: 504,
			wantBody:   `{"message":"Endpoint request timed out"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			rec.onConnect = tt.onConnect
			e := startEmulator(t, Config{WebSocket: rec.handle, Limits: Limits{IntegrationTimeout: tt.timeout}})
			_, resp, err := websocket.Dial(testContext(t), e.WebSocketURL(), nil)
			if err == nil {
				t.Fatal("dial succeeded")
			}
			if resp == nil || resp.StatusCode != tt.wantStatus {
				t.Fatalf("response %v, want status %d", resp, tt.wantStatus)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != tt.wantBody {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
			s := e.Stats()
			if s.RefusedConnects != 1 || s.ConnectInvocations != 1 {
				t.Errorf("stats %+v", s)
			}
			if s.DisconnectInvocations != 0 {
				t.Error("$disconnect ran for a refused upgrade")
			}
		})
	}
}

// TestSubprotocolSelection checks that $connect's Sec-WebSocket-Protocol
// header selects the subprotocol.
func TestSubprotocolSelection(t *testing.T) {
	t.Parallel()
	for _, choice := range []string{"tunnel.mux", ""} {
		t.Run("choice="+choice, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			rec.onConnect = func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
				resp := events.APIGatewayProxyResponse{StatusCode: 200}
				if choice != "" {
					resp.Headers = map[string]string{"sec-websocket-protocol": choice}
				}
				return resp, nil
			}
			e := startEmulator(t, Config{WebSocket: rec.handle})
			c := dial(t, e, &websocket.DialOptions{Subprotocols: []string{"tunnel.json", "tunnel.mux"}})
			if got := c.Subprotocol(); got != choice {
				t.Errorf("subprotocol %q, want %q", got, choice)
			}
		})
	}
}

// TestPostDuringConnectIsGone checks the ordering the original worked
// around with retries: posts from $connect get 410, posts after the
// upgrade are delivered.
func TestPostDuringConnectIsGone(t *testing.T) {
	t.Parallel()
	client := httpClient(t)
	var emu atomic.Pointer[Emulator] // set before any connection
	type outcome struct{ post, get int }
	during := make(chan outcome, 1)
	rec := newRecorder()
	rec.onConnect = func(_ context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		id := ev.RequestContext.ConnectionID
		post, _, _ := management(t, client, emu.Load(), http.MethodPost, id, []byte(`{"type":"connection_established"}`))
		get, _, _ := management(t, client, emu.Load(), http.MethodGet, id, nil)
		during <- outcome{post, get}
		return events.APIGatewayProxyResponse{StatusCode: 200}, nil
	}
	e := startEmulator(t, Config{WebSocket: rec.handle})
	emu.Store(e)
	c := dial(t, e, nil)
	if o := recv(t, during); o.post != http.StatusGone || o.get != http.StatusGone {
		t.Errorf("during $connect: POST %d, GET %d; want 410 for both", o.post, o.get)
	}
	id := recv(t, rec.connect).RequestContext.ConnectionID
	if status, _, body := management(t, client, e, http.MethodPost, id, []byte("after")); status != http.StatusOK {
		t.Fatalf("POST after upgrade: %d %s", status, body)
	}
	if got := readText(t, c); got != "after" {
		t.Errorf("client read %q", got)
	}
	if s := e.Stats(); s.Posts != 1 || s.GonePosts != 1 || s.MessagesOut != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestManagementAPI exercises @connections with plain HTTP.
func TestManagementAPI(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	e := startEmulator(t, Config{WebSocket: rec.handle, WebSocketStage: "dev"})
	client := httpClient(t)
	c := dial(t, e, &websocket.DialOptions{HTTPHeader: http.Header{"User-Agent": {"ttf/0.1"}}})
	c.SetReadLimit(1 << 20)
	id := recv(t, rec.connect).RequestContext.ConnectionID

	t.Run("GET", func(t *testing.T) {
		status, _, body := management(t, client, e, http.MethodGet, id, nil)
		if status != http.StatusOK {
			t.Fatalf("GET: %d %s", status, body)
		}
		var info struct {
			ConnectedAt, LastActiveAt string
			Identity                  struct{ SourceIP, UserAgent string }
		}
		if err := json.Unmarshal([]byte(body), &info); err != nil {
			t.Fatal(err)
		}
		if _, err := time.Parse(time.RFC3339, info.ConnectedAt); err != nil {
			t.Errorf("connectedAt %q: %v", info.ConnectedAt, err)
		}
		if _, err := time.Parse(time.RFC3339, info.LastActiveAt); err != nil {
			t.Errorf("lastActiveAt %q: %v", info.LastActiveAt, err)
		}
		if info.Identity.SourceIP != "127.0.0.1" || info.Identity.UserAgent != "ttf/0.1" {
			t.Errorf("identity %+v", info.Identity)
		}
	})
	t.Run("unknown connection", func(t *testing.T) {
		for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
			status, typ, body := management(t, client, e, method, "AAAAAAAAAAAAAAA=", []byte("x"))
			if status != http.StatusGone || typ != "GoneException" || !strings.Contains(body, `"message"`) {
				t.Errorf("%s unknown: %d %q %s", method, status, typ, body)
			}
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		resp, err := client.Post(e.ManagementURL()+"/@connections/"+id, "application/octet-stream", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Amzn-Errortype") != "ForbiddenException" {
			t.Errorf("unsigned POST: %d %q", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"))
		}
	})
	t.Run("POST size limit", func(t *testing.T) {
		status, typ, _ := management(t, client, e, http.MethodPost, id, bytes.Repeat([]byte("x"), DefaultMaxMessageBytes+1))
		if status != http.StatusRequestEntityTooLarge || typ != "PayloadTooLargeException" {
			t.Errorf("POST over the limit: %d %q", status, typ)
		}
		atLimit := bytes.Repeat([]byte("y"), DefaultMaxMessageBytes)
		if status, _, body := management(t, client, e, http.MethodPost, id, atLimit); status != http.StatusOK {
			t.Fatalf("POST at the limit: %d %s", status, body)
		}
		if got := readText(t, c); got != string(atLimit) {
			t.Errorf("client read %d bytes, want %d", len(got), len(atLimit))
		}
	})
	t.Run("DELETE", func(t *testing.T) {
		if status, _, body := management(t, client, e, http.MethodDelete, id, nil); status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", status, body)
		}
		if code := readCloseStatus(t, c); code != websocket.StatusNormalClosure {
			t.Errorf("client saw close %d, want 1000", code)
		}
		disc := recv(t, rec.disconnect)
		if disc.RequestContext.ConnectionID != id || disc.RequestContext.DisconnectStatusCode != 1000 {
			t.Errorf("disconnect event %+v", disc.RequestContext)
		}
		if status, typ, _ := management(t, client, e, http.MethodPost, id, []byte("late")); status != http.StatusGone || typ != "GoneException" {
			t.Errorf("POST after DELETE: %d %q", status, typ)
		}
	})
}

// TestMessageSizeLimit checks the 128 KiB message limit, with messages
// sent in legal 32 KiB frames.
func TestMessageSizeLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		size      int
		delivered bool
	}{
		{DefaultMaxMessageBytes, true},
		{DefaultMaxMessageBytes + 1, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("size=%d", tt.size), func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			e := startEmulator(t, Config{WebSocket: rec.handle})
			c := dial(t, e, nil)
			writeFragmented(t, c, websocket.MessageText, bytes.Repeat([]byte("m"), tt.size), DefaultMaxFrameBytes)
			if tt.delivered {
				if got := recv(t, rec.message); len(got.Body) != tt.size {
					t.Errorf("delivered %d bytes, want %d", len(got.Body), tt.size)
				}
				return
			}
			if code := readCloseStatus(t, c); code != websocket.StatusMessageTooBig {
				t.Errorf("close status %d, want 1009", code)
			}
			if disc := recv(t, rec.disconnect); disc.RequestContext.DisconnectStatusCode != 1009 {
				t.Errorf("disconnect status %d", disc.RequestContext.DisconnectStatusCode)
			}
			if s := e.Stats(); s.DefaultInvocations != 0 || s.Closes[1009] != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestFrameSizeLimit checks the 32 KiB frame limit, which applies to each
// frame whatever the message size.
func TestFrameSizeLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		size      int // message size
		frame     int // frame size the client uses
		delivered bool
	}{
		{"one 40 KB frame", 40 << 10, 40 << 10, false},
		{"one frame one byte over", DefaultMaxFrameBytes + 1, DefaultMaxFrameBytes + 1, false},
		{"one frame at the limit", DefaultMaxFrameBytes, DefaultMaxFrameBytes, true},
		{"100 KB in 32 KB frames", 100 << 10, DefaultMaxFrameBytes, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			e := startEmulator(t, Config{WebSocket: rec.handle})
			c := dial(t, e, nil)
			msg := bytes.Repeat([]byte("f"), tt.size)
			writeFragmented(t, c, websocket.MessageText, msg, tt.frame)
			if tt.delivered {
				if got := recv(t, rec.message); got.Body != string(msg) {
					t.Errorf("delivered %d bytes, want %d", len(got.Body), tt.size)
				}
				return
			}
			if code := readCloseStatus(t, c); code != websocket.StatusMessageTooBig {
				t.Errorf("close status %d, want 1009", code)
			}
			if disc := recv(t, rec.disconnect); disc.RequestContext.DisconnectStatusCode != 1009 {
				t.Errorf("disconnect status %d", disc.RequestContext.DisconnectStatusCode)
			}
			if s := e.Stats(); s.DefaultInvocations != 0 {
				t.Errorf("a refused message was invoked: %+v", s)
			}
		})
	}
}

// TestOutgoingMessagesAreFragmented checks that a post larger than a frame
// reaches the client in MaxFrameBytes frames, reassembled by the client.
func TestOutgoingMessagesAreFragmented(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	e := startEmulator(t, Config{WebSocket: rec.handle})
	c := dial(t, e, nil)
	c.SetReadLimit(1 << 20)
	id := recv(t, rec.connect).RequestContext.ConnectionID
	msg := bytes.Repeat([]byte("o"), 100<<10)
	if status, _, body := management(t, httpClient(t), e, http.MethodPost, id, msg); status != http.StatusOK {
		t.Fatalf("POST: %d %s", status, body)
	}
	if got := readText(t, c); got != string(msg) {
		t.Errorf("read %d bytes, want %d", len(got), len(msg))
	}
	// The framing itself is checked in TestAppendMessage.
}

// TestIdleTimeout checks that a silent connection is closed with 1001
// and $disconnect runs.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	const idle = 300 * time.Millisecond
	e := startEmulator(t, Config{WebSocket: rec.handle, Limits: Limits{IdleTimeout: idle}})
	start := time.Now()
	c := dial(t, e, nil)
	if code := readCloseStatus(t, c); code != websocket.StatusGoingAway {
		t.Errorf("close status %d, want 1001", code)
	}
	if d := time.Since(start); d < idle {
		t.Errorf("closed after %v, before the idle timeout %v", d, idle)
	}
	disc := recv(t, rec.disconnect)
	if disc.RequestContext.DisconnectStatusCode != 1001 || *disc.RequestContext.DisconnectReason != "Going away" {
		t.Errorf("disconnect %d %q", disc.RequestContext.DisconnectStatusCode, *disc.RequestContext.DisconnectReason)
	}
	if s := e.Stats(); s.Closes[1001] != 1 {
		t.Errorf("closes %v", s.Closes)
	}
}

// TestIdleTimerRestartsOnTraffic keeps a connection busy past its idle
// timeout with one kind of traffic, then lets it go idle.
func TestIdleTimerRestartsOnTraffic(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"client messages", "posts"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			const idle = 600 * time.Millisecond
			e := startEmulator(t, Config{WebSocket: rec.handle, Limits: Limits{IdleTimeout: idle}})
			client := httpClient(t)
			c := dial(t, e, nil)
			id := recv(t, rec.connect).RequestContext.ConnectionID
			ctx := testContext(t)

			// Traffic every idle/3 for 2.5 idle periods. The pauses are
			// the stimulus under test, not synchronisation.
			for deadline := time.Now().Add(idle * 5 / 2); time.Now().Before(deadline); {
				time.Sleep(idle / 3)
				if kind == "client messages" {
					if err := c.Write(ctx, websocket.MessageText, []byte("keepalive")); err != nil {
						t.Fatalf("write: %v", err)
					}
					recv(t, rec.message)
					continue
				}
				if status, _, body := management(t, client, e, http.MethodPost, id, []byte("server")); status != http.StatusOK {
					t.Fatalf("post: %d %s", status, body)
				}
				if got := readText(t, c); got != "server" {
					t.Fatalf("read %q", got)
				}
			}
			if code := readCloseStatus(t, c); code != websocket.StatusGoingAway {
				t.Errorf("close status %d, want 1001", code)
			}
		})
	}
}

// TestMaxConnectionLife checks the lifetime limit, which activity does
// not extend.
func TestMaxConnectionLife(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	const life = 400 * time.Millisecond
	e := startEmulator(t, Config{WebSocket: rec.handle, Limits: Limits{MaxConnectionLife: life}})
	start := time.Now()
	c := dial(t, e, nil)
	if err := c.Write(testContext(t), websocket.MessageText, []byte("busy")); err != nil {
		t.Fatal(err)
	}
	if code := readCloseStatus(t, c); code != websocket.StatusGoingAway {
		t.Errorf("close status %d, want 1001", code)
	}
	if d := time.Since(start); d < life {
		t.Errorf("closed after %v, before the lifetime %v", d, life)
	}
	if disc := recv(t, rec.disconnect); disc.RequestContext.DisconnectStatusCode != 1001 {
		t.Errorf("disconnect status %d", disc.RequestContext.DisconnectStatusCode)
	}
}

// TestDefaultRouteOutcomes checks what a client receives after a $default
// invocation: API Gateway's notices on failure, the route response when
// configured, nothing otherwise.
func TestDefaultRouteOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		noHandler     bool
		routeResponse bool
		timeout       time.Duration // IntegrationTimeout; zero for the default
		onMessage     func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error)
		want          string // message the client receives first; "" for none
	}{
		{
			name: "handler error",
			onMessage: func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
				return events.APIGatewayProxyResponse{}, errors.New("invalid message format")
			},
			want: "Internal server error",
		},
		{
			name: "handler panic",
			onMessage: func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
				panic("boom")
			},
			want: "Internal server error",
		},
		{
			name: "integration timeout",
			onMessage: func(ctx context.Context, _ events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
				<-ctx.Done() // past the integration timeout; Close cancels it
				return events.APIGatewayProxyResponse{StatusCode: 200, Body: "too late"}, nil
			},
			timeout:       200 * time.Millisecond,
			routeResponse: true,
			want:          "Endpoint request timed out",
		},
		{name: "no integration", noHandler: true, want: "Forbidden"},
		{
			name:          "route response",
			routeResponse: true,
			onMessage: func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
				return events.APIGatewayProxyResponse{StatusCode: 200, Body: "pong"}, nil
			},
			want: "pong",
		},
		{
			name: "response without route response",
			onMessage: func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
				return events.APIGatewayProxyResponse{StatusCode: 200, Body: "dropped"}, nil
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			rec.onMessage = tt.onMessage
			dispatched := make(chan struct{}, 1)
			cfg := Config{WebSocket: rec.handle, RouteResponse: tt.routeResponse, Limits: Limits{IntegrationTimeout: tt.timeout}}
			if tt.noHandler {
				cfg.WebSocket = nil
			}
			e := startWithHooks(t, cfg, hooks{dispatched: func() { dispatched <- struct{}{} }})
			c := dial(t, e, nil)
			if err := c.Write(testContext(t), websocket.MessageText, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			recv(t, dispatched)
			// A marker posted after the invocation was handled shows
			// whether anything came before it.
			id := onlyConnectionID(t, e)
			if status, _, _ := management(t, httpClient(t), e, http.MethodPost, id, []byte("marker")); status != http.StatusOK {
				t.Fatalf("marker POST: %d", status)
			}
			first := readText(t, c)
			switch {
			case tt.want == "":
				if first != "marker" {
					t.Errorf("client received %q before the marker", first)
				}
			case tt.routeResponse && tt.want == "pong":
				if first != "pong" {
					t.Errorf("client received %q, want the route response", first)
				}
			default:
				var notice struct{ Message, ConnectionID, RequestID string }
				if err := json.Unmarshal([]byte(first), &notice); err != nil {
					t.Fatalf("notice %q: %v", first, err)
				}
				if notice.Message != tt.want || notice.ConnectionID != id || notice.RequestID == "" {
					t.Errorf("notice %+v, want message %q for %s", notice, tt.want, id)
				}
			}
		})
	}
}

// onlyConnectionID returns the ID of the emulator's one connection.
func onlyConnectionID(t *testing.T, e *Emulator) string {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.conns) != 1 {
		t.Fatalf("%d connections, want 1", len(e.conns))
	}
	for id := range e.conns {
		return id
	}
	return ""
}

// TestCloseEndsConnections checks that Close closes clients with 1001 and
// runs $disconnect for each before returning.
func TestCloseEndsConnections(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	e, err := Start(Config{WebSocket: rec.handle})
	if err != nil {
		t.Fatal(err)
	}
	conns := []*websocket.Conn{dial(t, e, nil), dial(t, e, nil)}
	statuses := make(chan websocket.StatusCode, len(conns))
	for _, c := range conns {
		go func() { statuses <- readCloseStatus(t, c) }()
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.DisconnectInvocations != 2 {
		t.Errorf("$disconnect ran %d times before Close returned, want 2", s.DisconnectInvocations)
	}
	for range conns {
		if code := recv(t, statuses); code != websocket.StatusGoingAway {
			t.Errorf("close status %d, want 1001", code)
		}
	}
	if _, _, err := websocket.Dial(testContext(t), e.WebSocketURL(), nil); err == nil {
		t.Error("dial after Close succeeded")
	}
}
