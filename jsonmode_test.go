package tunnel

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/logbuf"
	"github.com/http-tunnel/tunnel/protocol"
)

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
