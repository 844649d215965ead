package inspector

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// parseEvents feeds stream to a parser in pieces of size n (0: whole) and
// returns the events recorded.
func parseEvents(t testing.TB, stream string, n, limit int) ([]Event, int64) {
	t.Helper()
	rec := New(&Options{MaxBodyBytes: limit})
	rec.now = func() time.Time { return time.Time{} }
	e := &entry{eventBudget: int64(rec.opts.MaxBodyBytes)}
	rec.mu.Lock()
	rec.addLocked(e, 0)
	rec.mu.Unlock()
	p := &sseParser{rec: rec, e: e, limit: rec.opts.MaxBodyBytes}
	if n == 0 {
		n = len(stream) + 1
	}
	for s := stream; len(s) > 0; {
		k := min(n, len(s))
		p.feed([]byte(s[:k]))
		s = s[k:]
	}
	ex, _ := rec.Get(e.ex.ID)
	return ex.Events, ex.EventCount
}

func TestSSEParser(t *testing.T) {
	t.Parallel()
	type ev struct{ typ, id, data string }
	tests := []struct {
		name   string
		stream string
		want   []ev
	}{
		{"one event", "data: hello\n\n", []ev{{"", "", "hello"}}},
		{"no space after the colon", "data:hello\n\n", []ev{{"", "", "hello"}}},
		{"two spaces keep one", "data:  hello\n\n", []ev{{"", "", " hello"}}},
		{"multi-line data", "data: a\ndata: b\n\n", []ev{{"", "", "a\nb"}}},
		{"type and id", "event: tick\nid: 7\ndata: x\n\n", []ev{{"tick", "7", "x"}}},
		{"id carries over, type does not", "event: a\nid: 1\ndata: x\n\ndata: y\n\n", []ev{{"a", "1", "x"}, {"", "1", "y"}}},
		{"CRLF", "data: a\r\n\r\ndata: b\r\n\r\n", []ev{{"", "", "a"}, {"", "", "b"}}},
		{"CR alone", "data: a\r\rdata: b\r\r", []ev{{"", "", "a"}, {"", "", "b"}}},
		{"comments and retry are skipped", ": ping\nretry: 1000\ndata: x\n\n", []ev{{"", "", "x"}}},
		{"no data, no event", "event: nothing\n\n: just a comment\n\n", nil},
		{"empty data is an event", "data\n\n", []ev{{"", "", ""}}},
		{"unfinished event is not dispatched", "data: a\n\ndata: b\n", []ev{{"", "", "a"}}},
		{"id with NUL is ignored", "id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\n", []ev{{"", "1", "a"}, {"", "1", "b"}}},
		{"unknown field", "foo: bar\ndata: a\n\n", []ev{{"", "", "a"}}},
	}
	for _, tt := range tests {
		// Every way of cutting the stream gives the same events.
		for n := range len(tt.stream) + 1 {
			got, count := parseEvents(t, tt.stream, n, 0)
			var gotEv []ev
			for _, e := range got {
				gotEv = append(gotEv, ev{e.Type, e.ID, e.Data})
			}
			if fmt.Sprint(gotEv) != fmt.Sprint(tt.want) || count != int64(len(tt.want)) {
				t.Errorf("%s, fed %d bytes at a time: %q (count %d), want %q", tt.name, n, gotEv, count, tt.want)
				break
			}
		}
	}
}

// Events beyond the budget are counted, not kept; one that does not fit
// is cut; a line without end holds no more than the limit.
func TestSSEBudget(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "data: %s\n\n", strings.Repeat(string(rune('a'+i%26)), 150))
	}
	events, count := parseEvents(t, b.String(), 7, 1000)
	if count != 100 {
		t.Errorf("EventCount = %d, want 100", count)
	}
	var cost int
	for _, e := range events {
		cost += eventOverhead + len(e.Data)
	}
	if cost > 1000 || len(events) == 0 || !events[len(events)-1].Truncated {
		t.Errorf("%d events kept for %d bytes of budget 1000; last truncated: %v", len(events), cost, len(events) > 0 && events[len(events)-1].Truncated)
	}

	long := "data: " + strings.Repeat("x", 10000) + "\n\n"
	events, _ = parseEvents(t, long, 100, 1000)
	if len(events) != 1 || len(events[0].Data) > 1000 || !events[0].Truncated {
		t.Errorf("a long line: %d events, data of %d bytes", len(events), len(events[0].Data))
	}
}

// A stream recorded through the Middleware is of kind sse, with its events
// and its raw body.
func TestSSEThroughTheMiddleware(t *testing.T) {
	t.Parallel()
	rec := New(nil)
	h := rec.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		for _, chunk := range []string{"event: up", "date\ndata: {\"n\":1}\n", "\n", "data: {\"n\":2}\n\n"} {
			w.Write([]byte(chunk))
			w.(http.Flusher).Flush()
		}
	}))
	h.ServeHTTP(newDiscardWriter(), httptest.NewRequest("GET", "/stream", nil))
	ex := next(t, rec)
	if ex.Kind != KindSSE || len(ex.Events) != 2 || ex.Events[0].Type != "update" || ex.Events[0].Data != `{"n":1}` || ex.Events[1].Data != `{"n":2}` {
		t.Errorf("Kind %s, events %+v", ex.Kind, ex.Events)
	}
	if !strings.HasPrefix(string(ex.ResponseBody.Data), "event: update\n") {
		t.Errorf("raw body %q", ex.ResponseBody.Data)
	}
}
