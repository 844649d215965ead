package agentcli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/inspector"
)

// printer writes what the agent's user wants to see, one line per thing
// that happens, as text for people or as JSON lines for scripts. It is
// safe for concurrent use: requests end on their own goroutines, events
// arrive on the listener's.
//
// Text lines:
//
//	Forwarding  https://app.tunnel.example.com -> http://localhost:3000
//	Protected   basic auth (alice), bearer token, allow 10.0.0.0/8
//	Inspector   http://127.0.0.1:4040
//	15:04:05  GET     /hello  200  1.2ms
//	15:04:07  connection lost: <reason>
//	15:04:07  reconnecting in 250ms (attempt 1)
//	15:04:08  reconnected
//	Tunnel closed. Goodbye.
//
// JSON lines carry "time" (RFC 3339) and "event": forwarding (url,
// tunnel_id, local), access (basic_auth_users, bearer_tokens, allow_ips,
// deny_ips: what the agent asked the gateway to check), inspector (url), request (id, method, path, status,
// duration_ms, replay_of),
// disconnected (error), reconnecting (attempt, delay_ms, gateway),
// reconnected (attempt), closed (error, when the gateway ended the tunnel).
type printer struct {
	mu   sync.Mutex
	out  io.Writer
	json bool
	now  func() time.Time
}

// line is one JSON line; the zero fields of an event are left out.
type line struct {
	Time       string   `json:"time"`
	Event      string   `json:"event"`
	URL        string   `json:"url,omitempty"`
	TunnelID   string   `json:"tunnel_id,omitempty"`
	Local      string   `json:"local,omitempty"`
	ID         uint64   `json:"id,omitempty"`
	ReplayOf   uint64   `json:"replay_of,omitempty"`
	Method     string   `json:"method,omitempty"`
	Path       string   `json:"path,omitempty"`
	Status     *int     `json:"status,omitempty"`
	DurationMS *float64 `json:"duration_ms,omitempty"`
	Attempt    int      `json:"attempt,omitempty"`
	DelayMS    *float64 `json:"delay_ms,omitempty"`
	Gateway    string   `json:"gateway,omitempty"`
	Error      string   `json:"error,omitempty"`
	Users      []string `json:"basic_auth_users,omitempty"`
	Bearer     int      `json:"bearer_tokens,omitempty"`
	AllowIPs   []string `json:"allow_ips,omitempty"`
	DenyIPs    []string `json:"deny_ips,omitempty"`
}

// emit writes l as JSON, or text as it is, with the time prepended when
// stamp is set.
func (p *printer) emit(l line, stamp bool, text string) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		l.Time = now.UTC().Format(time.RFC3339Nano)
		b, _ := json.Marshal(l) // a struct of strings and numbers
		p.out.Write(append(b, '\n'))
		return
	}
	if stamp {
		text = now.Format(time.TimeOnly) + "  " + text
	}
	io.WriteString(p.out, text+"\n")
}

func (p *printer) forwarding(url, id, local string) {
	p.emit(line{Event: "forwarding", URL: url, TunnelID: id, Local: local}, false,
		fmt.Sprintf("Forwarding  %s -> %s", url, local))
}

// request is one request that went through the tunnel to the local
// service, as its line shows it.
type request struct {
	id       uint64 // the inspector's
	replayOf uint64 // the inspector's ID of the request this one replays; 0 for none
	method   string
	path     string // without the query, which may hold secrets
	status   int    // 0 when no status was written (a client gone)
	duration time.Duration
}

// requestOf returns the request line of an exchange that has ended.
func requestOf(ex inspector.Exchange) request {
	path, _, _ := strings.Cut(ex.URL, "?")
	return request{id: ex.ID, replayOf: ex.ReplayOf, method: ex.Method, path: path, status: ex.Status, duration: ex.Duration}
}

// requestOfLog returns the request line of a request the Forwarder logged
// (--inspect off), numbered id.
func requestOfLog(id uint64, r tunnel.RequestLog) request {
	path, _, _ := strings.Cut(r.Target, "?")
	return request{id: id, method: r.Method, path: path, status: r.Status, duration: r.Duration}
}

func (p *printer) request(r request) {
	status := strconv.Itoa(r.status)
	if r.status == 0 {
		status = "-"
	}
	text := fmt.Sprintf("%-7s %s  %s  %s", printable(r.method), printable(r.path), status, round(r.duration))
	if r.replayOf != 0 {
		text += fmt.Sprintf("  (replay of #%d)", r.replayOf)
	}
	ms := float64(r.duration.Microseconds()) / 1000
	p.emit(line{Event: "request", ID: r.id, ReplayOf: r.replayOf, Method: r.method, Path: r.path, Status: &r.status, DurationMS: &ms}, true, text)
}

// access says what the agent asked the gateway to require of public
// clients: the users and the number of tokens, never a password or token.
// The gateway may require more (what the agent's identity imposes).
func (p *printer) access(a accessConfig) {
	var parts []string
	if len(a.basic) > 0 {
		parts = append(parts, "basic auth ("+printable(strings.Join(a.users(), ", "))+")")
	}
	switch len(a.bearer) {
	case 0:
	case 1:
		parts = append(parts, "bearer token")
	default:
		parts = append(parts, fmt.Sprintf("bearer tokens (%d)", len(a.bearer)))
	}
	if len(a.allow) > 0 {
		parts = append(parts, "allow "+strings.Join(a.allow, " "))
	}
	if len(a.deny) > 0 {
		parts = append(parts, "deny "+strings.Join(a.deny, " "))
	}
	p.emit(line{Event: "access", Users: a.users(), Bearer: len(a.bearer), AllowIPs: a.allow, DenyIPs: a.deny}, false,
		"Protected   "+strings.Join(parts, ", "))
}

// inspector announces the inspector's page.
func (p *printer) inspector(url string) {
	p.emit(line{Event: "inspector", URL: url}, false, "Inspector   "+url)
}

// event prints what the connection to the gateway went through. The
// first connection is the forwarding line's; heartbeats are for the log.
func (p *printer) event(e tunnel.Event) {
	switch e.Kind {
	case tunnel.EventDisconnected:
		reason := "closed"
		if e.Err != nil {
			reason = e.Err.Error()
		}
		p.emit(line{Event: "disconnected", Error: reason}, true, "connection lost: "+printable(reason))
	case tunnel.EventReconnecting:
		ms := float64(e.Delay.Microseconds()) / 1000
		p.emit(line{Event: "reconnecting", Attempt: e.Attempt, DelayMS: &ms, Gateway: e.Gateway}, true,
			fmt.Sprintf("reconnecting in %s (attempt %d)", round(e.Delay), e.Attempt))
	case tunnel.EventConnected:
		if e.Attempt > 0 {
			p.emit(line{Event: "reconnected", Attempt: e.Attempt}, true, "reconnected")
		}
	}
}

// closed is the last line: a goodbye after an interrupt, or why the
// gateway ended the tunnel (err, which the command also returns).
func (p *printer) closed(err error) {
	if err != nil {
		p.emit(line{Event: "closed", Error: err.Error()}, true, "tunnel closed: "+printable(err.Error()))
		return
	}
	p.emit(line{Event: "closed"}, false, "Tunnel closed. Goodbye.")
}

// round shortens d for a request line: three significant digits or so.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// printable escapes what a terminal would interpret: a request path is the
// public's to choose, and %1b in it decodes to an escape character.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsPrint(r) {
			b.WriteRune(r)
		} else {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}
