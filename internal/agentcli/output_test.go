package agentcli

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/inspector"
)

// TestPrinter checks every line the agent prints, as text and as JSON.
func TestPrinter(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 5, 4, 15, 4, 5, 120000000, time.FixedZone("CEST", 2*3600))
	print := func(p *printer) {
		p.forwarding("https://app.gw.example.com", "app", "http://localhost:3000")
		p.access(accessConfig{
			basic:  []tunnel.BasicCredential{{User: "alice", Password: "pass-1"}, {User: "bob", Password: "pass-2"}},
			bearer: []tunnel.Token{"token-1", "token-2"},
			allow:  []string{"10.0.0.0/8", "2001:db8::/32"},
			deny:   []string{"10.9.0.0/16"},
		})
		p.access(accessConfig{bearer: []tunnel.Token{"token-1"}})
		p.inspector("http://127.0.0.1:4040")
		p.request(request{id: 1, method: "GET", path: "/hello", status: 200, duration: 1234567 * time.Nanosecond})
		p.request(request{id: 2, method: "GET", path: "/ws", status: 101, duration: 12*time.Second + 345*time.Millisecond})
		p.request(request{id: 3, method: "POST", path: "/\x1b[31mred", status: 502, duration: 42 * time.Microsecond})
		p.request(request{id: 4, replayOf: 1, method: "GET", path: "/hello", status: 0, duration: time.Millisecond})
		p.event(tunnel.Event{Kind: tunnel.EventConnected, Attempt: 0})
		p.event(tunnel.Event{Kind: tunnel.EventHeartbeat, RTT: time.Millisecond})
		p.event(tunnel.Event{Kind: tunnel.EventDisconnected, Err: errors.New("connection to the gateway lost")})
		p.event(tunnel.Event{Kind: tunnel.EventReconnecting, Attempt: 1, Delay: 250 * time.Millisecond, Gateway: "wss://gw.example.com/_tunnel/connect"})
		p.event(tunnel.Event{Kind: tunnel.EventConnected, Attempt: 1})
		p.closed(errors.New("tunnel stopped: unauthorized"))
		p.closed(nil)
	}

	var text strings.Builder
	print(&printer{out: &text, now: func() time.Time { return at }})
	wantText := `Forwarding  https://app.gw.example.com -> http://localhost:3000
Protected   basic auth (alice, bob), bearer tokens (2), allow 10.0.0.0/8 2001:db8::/32, deny 10.9.0.0/16
Protected   bearer token
Inspector   http://127.0.0.1:4040
15:04:05  GET     /hello  200  1.235ms
15:04:05  GET     /ws  101  12.3s
15:04:05  POST    /\x1b[31mred  502  42µs
15:04:05  GET     /hello  -  1ms  (replay of #1)
15:04:05  connection lost: connection to the gateway lost
15:04:05  reconnecting in 250ms (attempt 1)
15:04:05  reconnected
15:04:05  tunnel closed: tunnel stopped: unauthorized
Tunnel closed. Goodbye.
`
	if text.String() != wantText {
		t.Errorf("text:\n%s\nwant:\n%s", text.String(), wantText)
	}

	var js strings.Builder
	print(&printer{out: &js, json: true, now: func() time.Time { return at }})
	const ts = `{"time":"2026-05-04T13:04:05.12Z",`
	wantJSON := ts + `"event":"forwarding","url":"https://app.gw.example.com","tunnel_id":"app","local":"http://localhost:3000"}
` + ts + `"event":"access","basic_auth_users":["alice","bob"],"bearer_tokens":2,"allow_ips":["10.0.0.0/8","2001:db8::/32"],"deny_ips":["10.9.0.0/16"]}
` + ts + `"event":"access","bearer_tokens":1}
` + ts + `"event":"inspector","url":"http://127.0.0.1:4040"}
` + ts + `"event":"request","id":1,"method":"GET","path":"/hello","status":200,"duration_ms":1.234}
` + ts + `"event":"request","id":2,"method":"GET","path":"/ws","status":101,"duration_ms":12345}
` + ts + `"event":"request","id":3,"method":"POST","path":"/\u001b[31mred","status":502,"duration_ms":0.042}
` + ts + `"event":"request","id":4,"replay_of":1,"method":"GET","path":"/hello","status":0,"duration_ms":1}
` + ts + `"event":"disconnected","error":"connection to the gateway lost"}
` + ts + `"event":"reconnecting","attempt":1,"delay_ms":250,"gateway":"wss://gw.example.com/_tunnel/connect"}
` + ts + `"event":"reconnected","attempt":1}
` + ts + `"event":"closed","error":"tunnel stopped: unauthorized"}
` + ts + `"event":"closed"}
`
	if js.String() != wantJSON {
		t.Errorf("JSON:\n%s\nwant:\n%s", js.String(), wantJSON)
	}
	for _, secret := range []string{"pass-1", "pass-2", "token-1", "token-2"} {
		if strings.Contains(text.String()+js.String(), secret) {
			t.Errorf("the access line shows %s", secret)
		}
	}
}

// TestRequestOf checks the request line of an exchange: the path without
// the query, which may hold secrets.
func TestRequestOf(t *testing.T) {
	t.Parallel()
	ex := inspector.Exchange{ID: 7, ReplayOf: 2, Method: "POST", URL: "/hook/a%20b?token=secret&x=1", Status: 201, Duration: time.Second, Done: true}
	want := request{id: 7, replayOf: 2, method: "POST", path: "/hook/a%20b", status: 201, duration: time.Second}
	if got := requestOf(ex); got != want {
		t.Errorf("requestOf = %+v; want %+v", got, want)
	}
}

func TestPrintable(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/plain/path?x=1":  "/plain/path?x=1",
		"/café":            "/café",
		"/a\x1b]0;title\a": `/a\x1b]0;title\a`,
		"/\r\nX: y":        `/\r\nX: y`,
		"/\u202eevil":      `/\u202eevil`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q; want %q", in, got, want)
		}
	}
}
