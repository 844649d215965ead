package inspector

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// local is a local service that records what it receives.
type local struct {
	mu   sync.Mutex
	got  []*http.Request
	body []string
	hit  chan struct{} // a token per request
}

func newLocal() *local { return &local{hit: make(chan struct{}, 100)} }

func (l *local) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	l.mu.Lock()
	l.got = append(l.got, r.Clone(context.Background()))
	l.body = append(l.body, string(b))
	l.mu.Unlock()
	// Replays through ReplayTo may come with a prefix.
	switch strings.TrimPrefix(r.URL.Path, "/base") {
	case "/missing":
		http.NotFound(w, r)
	case "/redirect":
		http.Redirect(w, r, "/ok", http.StatusFound)
	case "/boom":
		http.Error(w, "boom", http.StatusInternalServerError)
	case "/binary":
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write([]byte{0, 1, 2, 0xff, 'A'})
	case "/gzip":
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		zw.Write([]byte("unzipped text"))
		zw.Close()
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"method":%q,"path":%q,"received":%d}`, r.Method, r.URL.Path, len(b))
	}
	l.hit <- struct{}{}
}

// wait waits for the local service's next request.
func (l *local) wait(t testing.TB) (*http.Request, string) {
	t.Helper()
	select {
	case <-l.hit:
	case <-time.After(10 * time.Second):
		t.Fatal("the local service received nothing")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got[len(l.got)-1], l.body[len(l.body)-1]
}

// setup runs a local service behind a recorder, and the recorder's page.
type setup struct {
	rec   *Recorder
	local *local
	front *httptest.Server // the local service, through the Middleware
	api   *httptest.Server // the page and API
	c     *http.Client
}

func newSetup(t testing.TB, opts *Options) *setup {
	t.Helper()
	l := newLocal()
	if opts == nil {
		opts = &Options{}
	}
	if opts.Replay == nil {
		opts.Replay = l
	}
	rec := New(opts)
	return &setup{rec: rec, local: l, front: serve(t, rec.Middleware(l)), api: serve(t, rec.Handler()), c: client(t)}
}

// call makes a request to the local service through the Middleware and
// waits for it to be recorded.
func (s *setup) call(t testing.TB, method, path, body string, header http.Header) Exchange {
	t.Helper()
	do(t, s.c, method, s.front.URL+path, body, header)
	s.local.wait(t)
	return next(t, s.rec)
}

// getJSON fetches an API path and decodes its JSON answer into v.
func (s *setup) getJSON(t testing.TB, path string, v any) int {
	t.Helper()
	status, hdr, body := do(t, s.c, "GET", s.api.URL+path, "", nil)
	if ct := hdr.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("GET %s: Content-Type %q, body %s", path, ct, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
	return status
}

func TestAPIListAndFilters(t *testing.T) {
	t.Parallel()
	s := newSetup(t, nil)
	for _, p := range []string{"/ok", "/missing", "/webhook", "/redirect", "/boom"} {
		method := "GET"
		if p == "/webhook" {
			method = "POST"
		}
		s.call(t, method, p, "", nil)
	}
	tests := []struct {
		query string
		want  []string // URLs, newest first
	}{
		{"", []string{"/boom", "/redirect", "/webhook", "/missing", "/ok"}},
		{"?status=2xx", []string{"/webhook", "/ok"}},
		{"?status=404", []string{"/missing"}},
		{"?status=4xx,5xx", []string{"/boom", "/missing"}},
		{"?status=3XX", []string{"/redirect"}},
		{"?path=web", []string{"/webhook"}},
		{"?path=o&status=2xx", []string{"/webhook", "/ok"}},
		{"?limit=2", []string{"/boom", "/redirect"}},
		{"?status=1xx", nil},
	}
	for _, tt := range tests {
		var l listJSON
		if status := s.getJSON(t, "/api/exchanges"+tt.query, &l); status != 200 {
			t.Fatalf("%s: status %d", tt.query, status)
		}
		var got []string
		for _, e := range l.Exchanges {
			got = append(got, e.URL)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("list%s = %v, want %v", tt.query, got, tt.want)
		}
		if !l.Replay || l.FirstID != 1 || l.Stats.Exchanges != 5 || l.Stats.MaxExchanges != DefaultMaxExchanges {
			t.Errorf("list%s: replay %v, first_id %d, stats %+v", tt.query, l.Replay, l.FirstID, l.Stats)
		}
	}
	for _, bad := range []string{"?status=abc", "?status=6xx", "?status=42", "?limit=-1"} {
		var e errorJSON
		if status := s.getJSON(t, "/api/exchanges"+bad, &e); status != http.StatusBadRequest || e.Error != "invalid_request" {
			t.Errorf("list%s: status %d, %+v; want 400 invalid_request", bad, status, e)
		}
	}
}

func TestAPIDetailAndBodies(t *testing.T) {
	t.Parallel()
	s := newSetup(t, nil)
	js := s.call(t, "POST", "/webhook?x=1", `{"event":"push","n":[1,2]}`, http.Header{"Content-Type": {"application/json"}, "X-Signature": {"sha256=abc"}})
	bin := s.call(t, "GET", "/binary", "", nil)
	gz := s.call(t, "GET", "/gzip", "", nil)

	var d detailJSON
	if status := s.getJSON(t, fmt.Sprintf("/api/exchanges/%d", js.ID), &d); status != 200 {
		t.Fatalf("status %d", status)
	}
	if d.Method != "POST" || d.URL != "/webhook?x=1" || d.Status != 201 || !d.Done || d.Proto != "HTTP/1.1" || d.RequestHeaders.Get("X-Signature") != "sha256=abc" {
		t.Errorf("detail: %+v", d.summaryJSON)
	}
	if d.RequestBody.Kind != "json" || d.RequestBody.Text != "{\n  \"event\": \"push\",\n  \"n\": [\n    1,\n    2\n  ]\n}" || d.RequestBody.Size != 26 {
		t.Errorf("request body view: %+v", d.RequestBody)
	}
	if d.ResponseBody.Kind != "json" || !strings.Contains(d.ResponseBody.Text, `"received": 26`) {
		t.Errorf("response body view: %+v", d.ResponseBody)
	}
	if !d.Replayable || d.HeaderMS <= 0 || d.DurationMS < d.HeaderMS {
		t.Errorf("replayable %v (%s), header %v ms, duration %v ms", d.Replayable, d.ReplayNote, d.HeaderMS, d.DurationMS)
	}

	s.getJSON(t, fmt.Sprintf("/api/exchanges/%d", bin.ID), &d)
	if d.ResponseBody.Kind != "binary" || !strings.HasPrefix(d.ResponseBody.Hex, "00000000  00 01 02 ff 41") {
		t.Errorf("binary body view: %+v", d.ResponseBody)
	}
	s.getJSON(t, fmt.Sprintf("/api/exchanges/%d", gz.ID), &d)
	if d.ResponseBody.Kind != "text" || d.ResponseBody.Text != "unzipped text" || d.ResponseBody.Decoded != "gzip" {
		t.Errorf("gzip body view: %+v", d.ResponseBody)
	}

	// The raw bytes come as a download, never as the service's type.
	status, hdr, body := do(t, s.c, "GET", fmt.Sprintf("%s/api/exchanges/%d/response/body", s.api.URL, bin.ID), "", nil)
	if status != 200 || body != "\x00\x01\x02\xffA" || hdr.Get("Content-Type") != "application/octet-stream" ||
		!strings.HasPrefix(hdr.Get("Content-Disposition"), "attachment") || hdr.Get("X-Content-Type-Options") != "nosniff" || hdr.Get("X-Body-Size") != "5" {
		t.Errorf("raw body: %d %q %v", status, body, hdr)
	}
	_, _, body = do(t, s.c, "GET", fmt.Sprintf("%s/api/exchanges/%d/request/body", s.api.URL, js.ID), "", nil)
	if body != `{"event":"push","n":[1,2]}` {
		t.Errorf("raw request body %q", body)
	}

	var e errorJSON
	for _, p := range []string{"/api/exchanges/999", "/api/exchanges/abc", "/api/exchanges/999/request/body"} {
		if status := s.getJSON(t, p, &e); status != 404 || e.Error != "not_found" {
			t.Errorf("GET %s: %d %+v", p, status, e)
		}
	}
}

// replay posts a replay request and returns the status and the decoded
// answer.
func (s *setup) replay(t testing.TB, id uint64, edits string, header http.Header) (int, detailJSON, errorJSON) {
	t.Helper()
	if edits != "" && header == nil {
		header = http.Header{"Content-Type": {"application/json"}}
	}
	status, _, body := do(t, s.c, "POST", fmt.Sprintf("%s/api/exchanges/%d/replay", s.api.URL, id), edits, header)
	var d detailJSON
	var e errorJSON
	if status == 200 {
		json.Unmarshal([]byte(body), &d)
	} else {
		json.Unmarshal([]byte(body), &e)
	}
	return status, d, e
}

func TestReplay(t *testing.T) {
	t.Parallel()
	s := newSetup(t, nil)
	orig := s.call(t, "POST", "/webhook?delivery=1", `{"event":"push"}`, http.Header{
		"X-Signature":   {"sha256=abc"},
		"Authorization": {"Bearer secret"},
		"Content-Type":  {"application/json"},
	})

	// As captured: the service receives it again.
	status, d, e := s.replay(t, orig.ID, "", nil)
	if status != 200 {
		t.Fatalf("replay: %d %+v", status, e)
	}
	r, body := s.local.wait(t)
	if r.Method != "POST" || r.URL.RequestURI() != "/webhook?delivery=1" || body != `{"event":"push"}` || r.Header.Get("X-Signature") != "sha256=abc" || r.ContentLength != int64(len(body)) {
		t.Errorf("the service got %s %s %q %v", r.Method, r.URL, body, r.Header)
	}
	// Masked values were never kept, so they are not sent.
	if r.Header.Get("Authorization") != "" {
		t.Errorf("the replay sent Authorization %q", r.Header.Get("Authorization"))
	}
	if d.ReplayOf != orig.ID || d.ID == orig.ID || d.Status != 201 || !d.Done || d.RequestBody.Text == "" {
		t.Errorf("replayed exchange: %+v", d.summaryJSON)
	}
	if ex := next(t, s.rec); ex.ID != d.ID || ex.ReplayOf != orig.ID {
		t.Errorf("Next after a replay = %d (replay of %d), want %d", ex.ID, ex.ReplayOf, d.ID)
	}

	// With edits: method, path, headers and body.
	status, d, e = s.replay(t, orig.ID, `{"method":"PUT","path":"/other?x=2","headers":{"X-Edited":["yes"],"Authorization":["Bearer typed-in"],"Host":["example.test"]},"body":"edited"}`, nil)
	if status != 200 {
		t.Fatalf("replay with edits: %d %+v", status, e)
	}
	r, body = s.local.wait(t)
	if r.Method != "PUT" || r.URL.RequestURI() != "/other?x=2" || body != "edited" || r.Header.Get("X-Edited") != "yes" ||
		r.Header.Get("Authorization") != "Bearer typed-in" || r.Header.Get("X-Signature") != "" || r.Host != "example.test" {
		t.Errorf("the service got %s %s host %s %q %v", r.Method, r.URL, r.Host, body, r.Header)
	}
	if d.Method != "PUT" || d.URL != "/other?x=2" || d.ReplayOf != orig.ID || d.RequestHeaders.Get("Authorization") != "Bearer [masked]" {
		t.Errorf("replayed exchange: %+v %v", d.summaryJSON, d.RequestHeaders)
	}

	// A binary body in base64.
	if status, _, e = s.replay(t, orig.ID, `{"body_base64":"AAEC"}`, nil); status != 200 {
		t.Fatalf("replay with body_base64: %d %+v", status, e)
	}
	if _, body = s.local.wait(t); body != "\x00\x01\x02" {
		t.Errorf("the service got %q", body)
	}
}

func TestReplayErrors(t *testing.T) {
	t.Parallel()
	s := newSetup(t, &Options{MaxBodyBytes: 10})
	long := s.call(t, "POST", "/webhook", "a body longer than ten bytes", nil)
	tests := []struct {
		name   string
		id     uint64
		edits  string
		header http.Header
		status int
		code   string
	}{
		{"unknown exchange", 999, "", nil, 404, "not_found"},
		{"body not kept whole", long.ID, "", nil, 422, "not_replayable"},
		{"path without a slash", long.ID, `{"path":"x","body":""}`, nil, 422, "not_replayable"},
		{"bad JSON", long.ID, `{`, nil, 400, "invalid_request"},
		{"edits not in JSON", long.ID, `method=PUT`, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, 400, "invalid_request"},
		{"body and body_base64", long.ID, `{"body":"a","body_base64":"YQ=="}`, nil, 400, "invalid_request"},
	}
	for _, tt := range tests {
		status, _, e := s.replay(t, tt.id, tt.edits, tt.header)
		if status != tt.status || e.Error != tt.code {
			t.Errorf("%s: %d %+v, want %d %s", tt.name, status, e, tt.status, tt.code)
		}
	}
	// A replacement body makes it replayable.
	if status, _, e := s.replay(t, long.ID, `{"body":"short"}`, nil); status != 200 {
		t.Errorf("with a new body: %d %+v", status, e)
	}
	if _, body := s.local.wait(t); body != "short" {
		t.Errorf("the service got %q", body)
	}

	// Without a replay target.
	rec := New(nil)
	rec.Middleware(echo).ServeHTTP(newDiscardWriter(), httptest.NewRequest("GET", "/", nil))
	api := serve(t, rec.Handler())
	status, _, body := do(t, s.c, "POST", api.URL+"/api/exchanges/1/replay", "", nil)
	if status != http.StatusNotImplemented || !strings.Contains(body, "replay_unavailable") {
		t.Errorf("without a target: %d %s", status, body)
	}
	if _, err := rec.Replay(context.Background(), 1, nil); err != ErrNoReplay {
		t.Errorf("Replay without a target: %v", err)
	}
}

// A WebSocket is not replayable; the detail says why.
func TestReplayWebSocketRefused(t *testing.T) {
	t.Parallel()
	s := newSetup(t, nil)
	rec := s.rec
	ws := serve(t, rec.Middleware(http.HandlerFunc(wsEcho)))
	req, _ := http.NewRequest("GET", ws.URL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := wsClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ex := next(t, rec)
	if ex.Kind != KindWebSocket {
		t.Fatalf("Kind %s", ex.Kind)
	}
	status, _, e := s.replay(t, ex.ID, "", nil)
	if status != 422 || e.Error != "not_replayable" || !strings.Contains(e.Message, "WebSocket") {
		t.Errorf("replaying a WebSocket: %d %+v", status, e)
	}
	var d detailJSON
	s.getJSON(t, fmt.Sprintf("/api/exchanges/%d", ex.ID), &d)
	if d.Replayable || !strings.Contains(d.ReplayNote, "WebSocket") {
		t.Errorf("detail: replayable %v, note %q", d.Replayable, d.ReplayNote)
	}
}

// ReplayTo sends replays to a service at a URL, as captured, and records a
// service that cannot be reached as 502.
func TestReplayTo(t *testing.T) {
	t.Parallel()
	l := newLocal()
	svc := serve(t, l)
	target, err := ReplayTo(svc.URL+"/base/", client(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := New(&Options{Replay: target})
	front := serve(t, rec.Middleware(l))
	do(t, client(t), "POST", front.URL+"/hook?a=1", "payload", http.Header{"X-Custom": {"v"}})
	l.wait(t)
	orig := next(t, rec)

	ex, err := rec.Replay(context.Background(), orig.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, body := l.wait(t)
	if r.URL.RequestURI() != "/base/hook?a=1" || body != "payload" || r.Header.Get("X-Custom") != "v" || r.Host != orig.Host {
		t.Errorf("the service got %s %q %v host %s", r.URL, body, r.Header, r.Host)
	}
	if ex.Status != 201 || ex.ReplayOf != orig.ID || !strings.Contains(string(ex.ResponseBody.Data), `"received":7`) {
		t.Errorf("replayed: %d %q", ex.Status, ex.ResponseBody.Data)
	}

	// Replays are delivered by Next too.
	if n := next(t, rec); n.ID != ex.ID {
		t.Errorf("Next = %d, want the replay %d", n.ID, ex.ID)
	}

	// A redirect is recorded, not followed.
	do(t, client(t), "GET", front.URL+"/redirect", "", nil)
	l.wait(t)
	redirect := next(t, rec)
	if ex, err = rec.Replay(context.Background(), redirect.ID, nil); err != nil || ex.Status != http.StatusFound {
		t.Errorf("replayed redirect: %d, %v (%s %s)", ex.Status, err, redirect.URL, ex.ResponseBody.Data)
	}
	l.wait(t)

	gone, _ := ReplayTo("http://127.0.0.1:1", nil)
	rec2 := New(&Options{Replay: gone})
	rec2.Middleware(echo).ServeHTTP(newDiscardWriter(), httptest.NewRequest("GET", "/", nil))
	if ex, err := rec2.Replay(context.Background(), 1, nil); err != nil || ex.Status != http.StatusBadGateway {
		t.Errorf("unreachable service: %d, %v", ex.Status, err)
	}
	for _, bad := range []string{"localhost:3000", "ftp://x", "http://", "::"} {
		if _, err := ReplayTo(bad, nil); err == nil {
			t.Errorf("ReplayTo(%q) succeeded", bad)
		}
	}
}

// sseReader reads the events of a live stream.
type sseReader struct {
	t  testing.TB
	br *bufio.Reader
}

func (r *sseReader) next() (string, string) {
	r.t.Helper()
	var event, data string
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("reading the live stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && event != "":
			return event, data
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		}
	}
}

// openEvents opens the live stream; it closes with the test.
func openEvents(t testing.TB, url string) *sseReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/api/events", nil)
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("live stream: %s %v", resp.Status, resp.Header)
	}
	return &sseReader{t: t, br: bufio.NewReader(resp.Body)}
}

func TestLiveEvents(t *testing.T) {
	t.Parallel()
	s := newSetup(t, &Options{MaxExchanges: 2})
	s.call(t, "GET", "/before", "", nil)
	live := openEvents(t, s.api.URL)
	event, data := live.next()
	var snap snapshotJSON
	json.Unmarshal([]byte(data), &snap)
	if event != "snapshot" || len(snap.Exchanges) != 1 || snap.Exchanges[0].URL != "/before" || !snap.Replay {
		t.Fatalf("first event %s %s", event, data)
	}

	// A new request arrives as it happens, and again once it has ended
	// (or once, if both changes came before the stream looked).
	do(t, s.c, "POST", s.front.URL+"/hook", "x", nil)
	for {
		event, data = live.next()
		var sum summaryJSON
		json.Unmarshal([]byte(data), &sum)
		if event != "exchange" || sum.URL != "/hook" {
			t.Fatalf("event %s %s, want the exchange /hook", event, data)
		}
		if sum.Done {
			if sum.Status != 201 || sum.RequestSize != 1 {
				t.Errorf("ended exchange %+v", sum)
			}
			break
		}
	}

	// A third exchange drops the first (MaxExchanges 2).
	do(t, s.c, "GET", s.front.URL+"/third", "", nil)
	sawEvict := false
	for !sawEvict {
		event, data = live.next()
		if event == "evict" {
			var ev evictJSON
			json.Unmarshal([]byte(data), &ev)
			if ev.FirstID != 2 {
				t.Errorf("evict %s, want first_id 2", data)
			}
			sawEvict = true
		}
	}

	// Clearing sends a new, empty snapshot.
	if status, _, _ := do(t, s.c, "DELETE", s.api.URL+"/api/exchanges", "", nil); status != http.StatusNoContent {
		t.Fatalf("DELETE: %d", status)
	}
	for {
		event, data = live.next()
		if event == "snapshot" {
			json.Unmarshal([]byte(data), &snap)
			if len(snap.Exchanges) != 0 || snap.FirstID != 4 {
				t.Errorf("after a clear: %s", data)
			}
			break
		}
	}
}

// The live streams are bounded.
func TestLiveStreamLimit(t *testing.T) {
	t.Parallel()
	s := newSetup(t, nil)
	for range maxStreams {
		openEvents(t, s.api.URL).next()
	}
	status, _, body := do(t, s.c, "GET", s.api.URL+"/api/events", "", nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "too_many_streams") {
		t.Errorf("stream %d: %d %s", maxStreams+1, status, body)
	}
}

// Only loopback names reach the page (DNS rebinding).
func TestHostCheck(t *testing.T) {
	t.Parallel()
	s := newSetup(t, &Options{AllowedHosts: []string{"inspector.internal"}})
	tests := []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:4040", true},
		{"127.0.0.1", true},
		{"127.1.2.3:4040", true},
		{"localhost:4040", true},
		{"LOCALHOST.", true},
		{"app.localhost:4040", true},
		{"[::1]:4040", true},
		{"inspector.internal:4040", true},
		{"evil.example", false},
		{"evil.example:4040", false},
		{"127.0.0.1.nip.io:4040", false},
		{"localhost.evil.example", false},
		{"10.0.0.1:4040", false},
		{"[::2]:4040", false},
	}
	for _, tt := range tests {
		for _, path := range []string{"/", "/api/exchanges"} {
			req, _ := http.NewRequest("GET", s.api.URL+path, nil)
			req.Host = tt.host
			resp, err := s.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ok := resp.StatusCode == 200; ok != tt.ok {
				t.Errorf("Host %q, GET %s: %d %s", tt.host, path, resp.StatusCode, body)
			}
			if !tt.ok && !strings.Contains(string(body), "forbidden_host") {
				t.Errorf("Host %q: body %s", tt.host, body)
			}
		}
	}
	// HTTP/1.0 may send none.
	if (&guard{}).allowedHost("") {
		t.Error("an empty Host is allowed")
	}
}

// Requests that change state must come from the page's own origin (CSRF).
func TestCrossOriginRefused(t *testing.T) {
	t.Parallel()
	s := newSetup(t, nil)
	orig := s.call(t, "POST", "/webhook", "x", nil)
	tests := []struct {
		name   string
		method string
		path   string
		header http.Header
		status int
	}{
		{"replay from another site", "POST", "/replay", http.Header{"Origin": {"http://evil.example"}}, 403},
		{"replay, Sec-Fetch-Site cross-site", "POST", "/replay", http.Header{"Sec-Fetch-Site": {"cross-site"}}, 403},
		{"replay, Sec-Fetch-Site same-site", "POST", "/replay", http.Header{"Sec-Fetch-Site": {"same-site"}}, 403},
		{"replay from another port", "POST", "/replay", http.Header{"Origin": {"http://127.0.0.1:1"}}, 403},
		{"clear from another site", "DELETE", "", http.Header{"Origin": {"http://evil.example"}}, 403},
		{"replay from the page", "POST", "/replay", http.Header{"Origin": {s.api.URL}, "Sec-Fetch-Site": {"same-origin"}}, 200},
		{"replay from the page, Origin only", "POST", "/replay", http.Header{"Origin": {s.api.URL}}, 200},
		{"replay from curl", "POST", "/replay", nil, 200},
	}
	for _, tt := range tests {
		url := s.api.URL + "/api/exchanges"
		if tt.path != "" {
			url = fmt.Sprintf("%s/%d%s", url, orig.ID, tt.path)
		}
		status, _, body := do(t, s.c, tt.method, url, "", tt.header)
		if status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, status, body, tt.status)
		}
		if status == 403 && !strings.Contains(body, "cross_origin") {
			t.Errorf("%s: body %s", tt.name, body)
		}
		if status == 200 {
			s.local.wait(t)
		}
	}
}

// The page and its assets are served with a policy that loads nothing from
// elsewhere, and reference nothing elsewhere.
func TestPageAndAssets(t *testing.T) {
	t.Parallel()
	s := newSetup(t, nil)
	status, hdr, body := do(t, s.c, "GET", s.api.URL+"/", "", nil)
	if status != 200 || hdr.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(body, `<script src="assets/app.js"`) {
		t.Fatalf("page: %d %v", status, hdr)
	}
	csp := hdr.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if hdr.Get("X-Frame-Options") != "DENY" {
		t.Errorf("X-Frame-Options %q", hdr.Get("X-Frame-Options"))
	}
	for asset, ct := range map[string]string{"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"} {
		status, hdr, _ := do(t, s.c, "GET", s.api.URL+"/assets/"+asset, "", nil)
		if status != 200 || hdr.Get("Content-Type") != ct {
			t.Errorf("%s: %d %s", asset, status, hdr.Get("Content-Type"))
		}
	}
	for _, missing := range []string{"/assets/index.html", "/assets/nope.js", "/nope"} {
		if status, _, _ := do(t, s.c, "GET", s.api.URL+missing, "", nil); status != 404 {
			t.Errorf("GET %s: %d, want 404", missing, status)
		}
	}
	// No CDN, no external font: nothing in the page points off the host.
	fs.WalkDir(ui, "ui", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := ui.ReadFile(path)
		for _, ref := range []string{"http://", "https://", "//cdn", "@import", "url("} {
			if bytes.Contains(b, []byte(ref)) {
				t.Errorf("%s refers to %q", path, ref)
			}
		}
		return nil
	})
}

// Mounted under a prefix, the page and API work as they are: their paths
// are relative.
func TestMountedUnderAPrefix(t *testing.T) {
	t.Parallel()
	s := newSetup(t, nil)
	s.call(t, "GET", "/ok", "", nil)
	mux := http.NewServeMux()
	mux.Handle("/inspect/", http.StripPrefix("/inspect", s.rec.Handler()))
	srv := serve(t, mux)
	if status, _, body := do(t, s.c, "GET", srv.URL+"/inspect/", "", nil); status != 200 || !strings.Contains(body, "assets/app.js") {
		t.Errorf("page under a prefix: %d", status)
	}
	if status, _, body := do(t, s.c, "GET", srv.URL+"/inspect/api/exchanges", "", nil); status != 200 || !strings.Contains(body, `"/ok"`) {
		t.Errorf("API under a prefix: %d %s", status, body)
	}
}
