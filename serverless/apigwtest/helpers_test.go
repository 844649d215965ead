package apigwtest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"
	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// waitFor bounds every wait in these tests; nothing waits on a timer to
// synchronise, only to fail instead of hanging.
const waitFor = 5 * time.Second

// startEmulator starts an emulator that the test's cleanup closes (after
// the clients the test registers later, cleanups running last-in first).
func startEmulator(t *testing.T, cfg Config) *Emulator {
	t.Helper()
	return startWithHooks(t, cfg, hooks{})
}

func startWithHooks(t *testing.T, cfg Config, h hooks) *Emulator {
	t.Helper()
	e, err := start(cfg, h)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// dial opens a WebSocket to the emulator; the test's cleanup drops it.
func dial(t *testing.T, e *Emulator, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(testContext(t), e.WebSocketURL(), opts)
	if err != nil {
		t.Fatalf("dial: %v (response %v)", err, resp)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// httpClient returns a client whose idle connections the test's cleanup
// closes.
func httpClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitFor}
}

// management sends a @connections request with a dummy SigV4
// Authorization header, as an SDK would, and returns status, error type
// and body.
func management(t *testing.T, client *http.Client, e *Emulator, method, id string, body []byte) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.ManagementURL()+"/@connections/"+strings.ReplaceAll(id, "=", "%3D"), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=00")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s @connections: %v", method, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), string(b)
}

// recv takes one value from ch or fails the test.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("nothing received in %v", waitFor)
		panic("unreachable")
	}
}

// wsRecorder is a WebSocket handler that passes every event to a channel
// per route, after running the optional per-route behaviour.
type wsRecorder struct {
	connect, message, disconnect chan events.APIGatewayWebsocketProxyRequest

	onConnect func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error)
	onMessage func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error)
}

func newRecorder() *wsRecorder {
	return &wsRecorder{
		connect:    make(chan events.APIGatewayWebsocketProxyRequest, 64),
		message:    make(chan events.APIGatewayWebsocketProxyRequest, 64),
		disconnect: make(chan events.APIGatewayWebsocketProxyRequest, 64),
	}
}

func (r *wsRecorder) handle(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	resp, err := events.APIGatewayProxyResponse{StatusCode: 200}, error(nil)
	switch ev.RequestContext.RouteKey {
	case "$connect":
		if r.onConnect != nil {
			resp, err = r.onConnect(ctx, ev)
		}
		r.connect <- ev
	case "$default":
		if r.onMessage != nil {
			resp, err = r.onMessage(ctx, ev)
		}
		r.message <- ev
	case "$disconnect":
		r.disconnect <- ev
	}
	return resp, err
}

// readText reads one message and requires it to be text.
func readText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	typ, b, err := c.Read(testContext(t))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type %v, want text", typ)
	}
	return string(b)
}

// readCloseStatus reads until the connection ends and returns the close
// status the server sent.
func readCloseStatus(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx := testContext(t)
	for {
		_, _, err := c.Read(ctx)
		if err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// writeFragmented sends p as one message in frames of frameSize bytes.
func writeFragmented(t *testing.T, c *websocket.Conn, typ websocket.MessageType, p []byte, frameSize int) {
	t.Helper()
	w, err := c.Writer(testContext(t), typ)
	if err != nil {
		t.Fatal(err)
	}
	for len(p) > 0 {
		n := min(frameSize, len(p))
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatalf("write frame: %v", err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close message: %v", err)
	}
}
