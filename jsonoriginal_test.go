package tunnel

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/logbuf"
	"github.com/http-tunnel/tunnel/protocol"
)

// Json mode against the original gateway (version 0): the original Lambda
// never answers ping, and decodes only the four error codes of version 0.

// TestJSONModeOriginalGatewayKeepalive: an idle connection to a gateway
// of version 0, which never answers ping, is not declared dead. The agent
// goes on pinging (data messages, which keep API Gateway's idle timer from
// closing the connection) long past the 2 × heartbeat + slack of silence
// after which a current gateway is given up
// (TestJSONModeSilentGatewayIsDropped), on the same connection, which
// still serves requests.
func TestJSONModeOriginalGatewayKeepalive(t *testing.T) {
	t.Parallel()
	g := newOriginalGateway(t)
	logs := &logbuf.Buffer{}
	listenJSON(t, g, echo, withJSONTiming(jsonTiming{deadSlack: time.Millisecond}), WithHeartbeat(2*time.Millisecond),
		WithBackoff(time.Millisecond, 10*time.Millisecond), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	first := g.current()
	// The agent would call the connection dead after 5 ms of silence; 30
	// pings, one per 2 ms tick at most, are at least 58 ms of it.
	for i := range 30 {
		select {
		case <-g.pings:
		case <-time.After(10 * time.Second):
			t.Fatalf("the agent stopped pinging after %d pings", i)
		}
	}
	select {
	case id := <-g.ready:
		t.Fatalf("the agent connected again (connection %s) to a gateway that is only quiet", id)
	default:
	}
	if c := g.current(); c != first {
		t.Fatalf("the agent moved from connection %s to %s", first, c)
	}
	if out := logs.String(); strings.Contains(out, "gateway silent") {
		t.Errorf("the agent called a version 0 gateway silent:\n%s", out)
	}
	if r := g.do(request("after-idle", "GET", "/idle", nil), nil); r.err != nil || r.resp.StatusCode != http.StatusOK {
		t.Errorf("request after the idle time: %+v", r)
	}
}

// TestJSONModeOriginalGatewayCodes: the agent answers a gateway of version
// 0 with one of the four codes it decodes (the gateway fails the test on
// any other), the nearest by the status the original answers its public
// client with; a current gateway gets the codes themselves.
func TestJSONModeOriginalGatewayCodes(t *testing.T) {
	t.Parallel()
	g := newOriginalGateway(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			// Until the agent gives up on it and closes the connection.
			<-r.Context().Done()
		case "/hangup":
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
		case "/big":
			// Needs two messages: chunks, which version 0 lacks.
			w.Write(bytes.Repeat([]byte("b"), protocol.MaxMessageBytes))
		}
	})
	ln := listenJSON(t, g, h, withJSONTiming(jsonTiming{requestTimeout: 2 * time.Second}))
	for _, tt := range []struct {
		name string
		req  *protocol.HTTPRequest
		want string
	}{
		{"invalid request", request("c-invalid", "G T", "/", nil), protocol.CodeV0InvalidRequest},
		{"local handler too slow", request("c-slow", "GET", "/slow", nil), protocol.CodeV0Timeout},
		{"local handler hangs up", request("c-hangup", "GET", "/hangup", nil), protocol.CodeV0LocalServiceUnavailable},
		{"response needs chunks", request("c-big", "GET", "/big", nil), protocol.CodeV0InternalError},
	} {
		r := g.do(tt.req, nil)
		if r.err == nil || r.err.Code != tt.want || r.err.RequestID != tt.req.RequestID {
			t.Errorf("%s: answered %+v (error %+v), want error %s", tt.name, r.resp, r.err, tt.want)
		}
	}

	// Every code the agent may send, through the one function that sends
	// them, to a gateway of version 0 and to a current one.
	current := newJSONGateway(t, false)
	lnCurrent := listenJSON(t, current, echo)
	for _, gw := range []struct {
		g  *jsonGateway
		ln *Listener
	}{{g, ln}, {current, lnCurrent}} {
		gw.ln.mu.Lock()
		s := gw.ln.current.agentSession.(*jsonSession)
		gw.ln.mu.Unlock()
		for _, code := range []Code{CodeInvalidRequest, CodePayloadTooLarge, CodeGatewayTimeout,
			CodeLocalServiceUnavailable, CodeUnavailable, CodeInternal, CodeAgentUnavailable} {
			id := "direct-" + string(code)
			ch := make(chan jsonReply, 1)
			gw.g.mu.Lock()
			gw.g.waiters[id] = ch
			gw.g.mu.Unlock()
			s.sendError(id, code, "test")
			want := string(code)
			if gw.g == g {
				want = protocol.CodeForVersion0Gateway(want)
			}
			select {
			case r := <-ch:
				if r.err == nil || r.err.Code != want {
					t.Errorf("%s sent to a gateway of version %d arrived as %+v, want %s", code, s.est.Version, r.err, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: nothing arrived", code)
			}
		}
	}
}
