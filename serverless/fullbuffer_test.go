package serverless

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/coder/websocket"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/serverless/apigwtest"
)

// stalledAgent is a json-mode agent that stops reading its connection
// after the handshake, until resume: API Gateway's buffer for it fills.
type stalledAgent struct {
	conn   *websocket.Conn
	connID string
	tunnel string
}

// dialStalledAgent connects a stalledAgent to g and returns it once its
// tunnel is up.
func dialStalledAgent(t *testing.T, g *gateway) *stalledAgent {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// A fixed receive buffer: the kernel does not grow it while the agent
	// reads nothing, so the buffers stay full once full.
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(16 << 10)
		}
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	conn, _, err := websocket.Dial(ctx, g.emu.WebSocketURL(), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr}, Subprotocols: []string{protocol.SubprotocolJSON}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	conn.SetReadLimit(2 * protocol.MaxMessageBytes)
	ready, _ := protocol.Marshal(&protocol.Ready{Version: protocol.Version})
	if err := conn.Write(ctx, websocket.MessageText, ready); err != nil {
		t.Fatalf("write ready: %v", err)
	}
	_, b, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("read connection_established: %v", err)
	}
	m, err := protocol.Unmarshal(b, protocol.MaxMessageBytes)
	est, ok := m.(*protocol.ConnectionEstablished)
	if err != nil || !ok {
		t.Fatalf("first message %s (%v), want connection_established", b, err)
	}
	rec, err := g.h.Store.Get(ctx, est.TunnelID)
	if err != nil {
		t.Fatal(err)
	}
	return &stalledAgent{conn: conn, connID: rec.ConnectionID, tunnel: est.TunnelID}
}

// fill posts filler messages to the agent until its buffers are full for
// good, and fails the test if they never are. One 429 does not show that:
// the emulator's writer may not yet have moved the queued message into
// the socket, which then takes it and the next post too. Once the socket
// is full the writer stays blocked and every post is refused until the
// agent reads; fill waits for a run of refusals long enough for the
// writer to have caught up.
func (a *stalledAgent) fill(t *testing.T, g *gateway) {
	t.Helper()
	filler := []byte(strings.Repeat("f", 64<<10))
	refused := 0
	for range 4000 {
		_, err := g.mgmt.PostToConnection(t.Context(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(a.connID), Data: filler}, noThrottleRetries)
		var limit *types.LimitExceededException
		switch {
		case errors.As(err, &limit):
			if refused++; refused == 25 {
				return
			}
			runtime.Gosched()
		case err != nil:
			t.Fatalf("filler post: %v", err)
		default:
			refused = 0
		}
	}
	t.Fatal("the buffer of an agent that reads nothing never filled")
}

// resume reads messages again, skips the filler, and answers each
// http_request with 200 and body "resumed", until the connection ends.
func (a *stalledAgent) resume(ctx context.Context) {
	for {
		_, b, err := a.conn.Read(ctx)
		if err != nil {
			return
		}
		m, err := protocol.Unmarshal(b, protocol.MaxMessageBytes)
		req, ok := m.(*protocol.HTTPRequest)
		if err != nil || !ok {
			continue
		}
		resp, _ := protocol.Marshal(&protocol.HTTPResponse{RequestID: req.RequestID, StatusCode: http.StatusOK,
			Headers: map[string][]string{"content-type": {"text/plain"}}, Body: protocol.EncodeBody([]byte("resumed"))})
		a.conn.Write(ctx, websocket.MessageText, resp)
	}
}

// TestPostToFullBuffer checks what a public request meets when its
// agent's buffer is full (PostToConnection answers 429
// LimitExceededException): the post is retried until the request's
// deadline, so an agent that reads again in time answers it, and one that
// does not gets its client a 503 unavailable, not a 500.
func TestPostToFullBuffer(t *testing.T) {
	t.Parallel()

	t.Run("agent reads again", func(t *testing.T) {
		t.Parallel()
		var armed atomic.Bool
		throttled := make(chan struct{}, 1)
		g := newGateway(t, gatewayConfig{
			limits: apigwtest.Limits{ClientBufferBytes: 64 << 10},
			mgmtResponse: func(r *http.Response) {
				if armed.Load() && r.StatusCode == http.StatusTooManyRequests {
					select {
					case throttled <- struct{}{}:
					default:
					}
				}
			},
		})
		a := dialStalledAgent(t, g)
		a.fill(t, g)
		armed.Store(true)

		type result struct {
			status int
			body   string
		}
		done := make(chan result, 1)
		go func() {
			resp, body := g.do(t, http.MethodGet, g.emu.HTTPURL()+"/"+a.tunnel+"/x", nil, nil)
			done <- result{resp.StatusCode, string(body)}
		}()
		select {
		case <-throttled: // the request's post met the full buffer
		case <-time.After(10 * time.Second):
			t.Fatal("the request's post was never refused with 429")
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go a.resume(ctx)
		r := <-done
		if r.status != http.StatusOK || r.body != "resumed" {
			t.Fatalf("status %d, body %q; want 200 resumed", r.status, r.body)
		}
		if n := g.emu.Stats().ThrottledPosts; n < 2 {
			t.Errorf("%d throttled posts, want the filler's and at least one of the request's", n)
		}
	})

	t.Run("agent never reads", func(t *testing.T) {
		t.Parallel()
		g := newGateway(t, gatewayConfig{responseTimeout: 500 * time.Millisecond, limits: apigwtest.Limits{ClientBufferBytes: 64 << 10}})
		a := dialStalledAgent(t, g)
		a.fill(t, g)
		before := g.emu.Stats()
		resp, body := g.do(t, http.MethodGet, g.emu.HTTPURL()+"/"+a.tunnel+"/x", nil, nil)
		wantError(t, resp, body, http.StatusServiceUnavailable, tunnel.CodeUnavailable)
		after := g.emu.Stats()
		if after.ThrottledPosts-before.ThrottledPosts < 2 || after.Posts != before.Posts {
			t.Errorf("%d posts refused, %d accepted; want retries, all refused",
				after.ThrottledPosts-before.ThrottledPosts, after.Posts-before.Posts)
		}
	})
}
