package apigwtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"
)

// TestPostToStalledClient checks that posts to a client that stops
// reading are answered 429 LimitExceededException once its buffer is
// full, that no accepted message is lost, and that posts succeed again
// once the client reads.
func TestPostToStalledClient(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	e := startEmulator(t, Config{WebSocket: rec.handle, Limits: Limits{ClientBufferBytes: 64 << 10}})
	client := httpClient(t)
	c := dial(t, e, nil)
	c.SetReadLimit(1 << 20)
	id := recv(t, rec.connect).RequestContext.ConnectionID

	// The client reads nothing: TCP buffers fill, then the emulator's.
	const maxPosts = 2000 // 125 MiB: far beyond any socket buffer
	accepted := 0
	for ; accepted < maxPosts; accepted++ {
		body := fmt.Sprintf("%06d%s", accepted, strings.Repeat("x", 64<<10-6))
		status, errType, msg := management(t, client, e, http.MethodPost, id, []byte(body))
		if status == http.StatusTooManyRequests {
			if errType != "LimitExceededException" {
				t.Fatalf("429 with error type %q (%s), want LimitExceededException", errType, msg)
			}
			break
		}
		if status != http.StatusOK {
			t.Fatalf("post %d: %d %s %s", accepted, status, errType, msg)
		}
	}
	if accepted == maxPosts {
		t.Fatalf("%d posts to a client that reads nothing were all accepted", maxPosts)
	}
	if got := e.Stats().ThrottledPosts; got != 1 {
		t.Errorf("Stats.ThrottledPosts = %d, want 1", got)
	}

	// Reading drains everything accepted, in order, and posts work again.
	for i := range accepted {
		if got := readText(t, c); got[:6] != fmt.Sprintf("%06d", i) || len(got) != 64<<10 {
			t.Fatalf("message %d: starts %q, %d bytes", i, got[:6], len(got))
		}
	}
	// The client has read the last message; the emulator's writer counts
	// it as buffered until its Write returns, a moment later: a post may
	// meet that moment, and is refused until it passes.
	for deadline := time.Now().Add(10 * time.Second); ; {
		status, errType, msg := management(t, client, e, http.MethodPost, id, []byte("again"))
		if status == http.StatusOK {
			break
		}
		if status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("post after reading: %d %s %s", status, errType, msg)
		}
		time.Sleep(time.Millisecond)
	}
	if got := readText(t, c); got != "again" {
		t.Fatalf("read %q, want again", got)
	}
	if s := e.Stats(); s.MeteredMessages != int64(2*accepted+1) {
		// Each 64 KiB post is two 32 KB units; the last is one.
		t.Errorf("Stats.MeteredMessages = %d, want %d", s.MeteredMessages, 2*accepted+1)
	}
}

// TestConcurrencyThrottles checks a function's concurrency: an invocation
// beyond it is throttled (503 on the HTTP API, the notice on the
// WebSocket API, no handler call), and one slot freed admits the next.
// One Concurrency for both APIs is one function serving both.
func TestConcurrencyThrottles(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}, 1), make(chan struct{})
	rec := newRecorder()
	fn := NewConcurrency(1)
	e := startEmulator(t, Config{
		WebSocket: rec.handle,
		HTTP: func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			if ev.RawPath == "/hold" {
				entered <- struct{}{}
				<-release
			}
			return events.APIGatewayV2HTTPResponse{StatusCode: 200, Body: "ok"}, nil
		},
		WebSocketConcurrency: fn,
		HTTPConcurrency:      fn,
	})
	client := httpClient(t)
	c := dial(t, e, nil) // $connect takes the slot and gives it back
	recv(t, rec.connect)

	held := make(chan int, 1)
	go func() {
		resp, err := client.Get(e.HTTPURL() + "/hold")
		if err != nil {
			held <- 0
			return
		}
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	recv(t, entered)
	if fn.InUse() != 1 || fn.Limit() != 1 {
		t.Fatalf("in use %d of %d, want 1 of 1", fn.InUse(), fn.Limit())
	}

	resp, err := client.Get(e.HTTPURL() + "/other")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != `{"message":"Service Unavailable"}` {
		t.Errorf("throttled HTTP request: %d %s, want 503 Service Unavailable", resp.StatusCode, body)
	}
	if err := c.Write(testContext(t), websocket.MessageText, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, c); !strings.Contains(got, `"message":"Internal server error"`) {
		t.Errorf("throttled message: notice %s, want Internal server error", got)
	}

	close(release)
	if status := recv(t, held); status != http.StatusOK {
		t.Fatalf("held request: status %d", status)
	}
	if err := c.Write(testContext(t), websocket.MessageText, []byte("delivered")); err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, rec.message); ev.Body != "delivered" {
		t.Errorf("$default got %q, want the message sent after the slot was freed", ev.Body)
	}
	s := e.Stats()
	if s.Throttles != 2 || s.HTTPInvocations != 1 || s.DefaultInvocations != 1 {
		t.Errorf("throttles %d, HTTP invocations %d, $default %d; want 2, 1, 1", s.Throttles, s.HTTPInvocations, s.DefaultInvocations)
	}
}

// TestActiveTracing checks the trace header each invocation gets with
// Config.ActiveTracing, where aws-lambda-go puts it.
func TestActiveTracing(t *testing.T) {
	t.Parallel()
	got := make(chan any, 2)
	e := startEmulator(t, Config{
		ActiveTracing: true,
		HTTP: func(ctx context.Context, _ events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			got <- ctx.Value("x-amzn-trace-id")
			return events.APIGatewayV2HTTPResponse{StatusCode: 204}, nil
		},
	})
	format := regexp.MustCompile(`^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=1$`)
	var seen []string
	for range 2 {
		resp, err := httpClient(t).Get(e.HTTPURL() + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h, _ := recv(t, got).(string)
		if !format.MatchString(h) {
			t.Fatalf("trace header %q", h)
		}
		seen = append(seen, h)
	}
	if seen[0] == seen[1] {
		t.Errorf("two invocations share the trace header %q", seen[0])
	}
}
