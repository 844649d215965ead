package inspector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// payload returns n reproducible bytes.
func payload(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// checkAccounting fails the test if the Recorder's byte count is not the
// sum of its entries' costs, or is over its bound, or an entry holds more
// than it is counted for.
func checkAccounting(t testing.TB, r *Recorder) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var sum int64
	for _, e := range r.log {
		sum += e.cost
		held := int64(cap(e.ex.RequestBody.Data) + cap(e.ex.ResponseBody.Data))
		for _, f := range e.ex.Frames {
			held += int64(cap(f.Payload))
		}
		for _, ev := range e.ex.Events {
			held += int64(len(ev.Data))
		}
		if held > e.cost {
			t.Errorf("exchange %d holds %d bytes of bodies, frames and events but counts for %d", e.ex.ID, held, e.cost)
		}
	}
	if sum != r.bytes {
		t.Errorf("bytes = %d, but the entries' costs add up to %d", r.bytes, sum)
	}
	if r.bytes > r.opts.MaxBytes {
		t.Errorf("bytes = %d, over MaxBytes %d", r.bytes, r.opts.MaxBytes)
	}
	if len(r.log) > r.opts.MaxExchanges {
		t.Errorf("%d exchanges kept, over MaxExchanges %d", len(r.log), r.opts.MaxExchanges)
	}
}

// writeInChunks answers with body, written size bytes at a time.
func writeInChunks(body []byte, size int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/octet-stream")
		for p := body; len(p) > 0; {
			n := min(size, len(p))
			w.Write(p[:n])
			p = p[n:]
		}
	})
}

func TestBodyCapsAndCounting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		maxBody          int
		reqLen, respLen  int
		wantReq, wantRes int // bytes kept
	}{
		{"empty", 0, 0, 0, 0, 0},
		{"small", 0, 10, 20, 10, 20},
		{"exactly the default cap", 0, 64 << 10, 64 << 10, 64 << 10, 64 << 10},
		{"one over the default cap", 0, 64<<10 + 1, 64<<10 + 1, 64 << 10, 64 << 10},
		{"a megabyte", 0, 1 << 20, 1 << 20, 64 << 10, 64 << 10},
		{"custom cap", 1000, 5000, 999, 1000, 999},
		{"keep none", -1, 5000, 5000, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := New(&Options{MaxBodyBytes: tt.maxBody})
			reqBody, respBody := payload(tt.reqLen, 1), payload(tt.respLen, 2)
			h := rec.Middleware(writeInChunks(respBody, 1000))
			h.ServeHTTP(newDiscardWriter(), httptest.NewRequest("POST", "/upload", bytes.NewReader(reqBody)))

			ex := next(t, rec)
			for _, c := range []struct {
				what string
				got  Body
				sent []byte
				keep int
			}{{"request", ex.RequestBody, reqBody, tt.wantReq}, {"response", ex.ResponseBody, respBody, tt.wantRes}} {
				if c.got.Size != int64(len(c.sent)) {
					t.Errorf("%s body: Size = %d, want %d", c.what, c.got.Size, len(c.sent))
				}
				if !bytes.Equal(c.got.Data, c.sent[:c.keep]) {
					t.Errorf("%s body: kept %d bytes, want the first %d of what was sent", c.what, len(c.got.Data), c.keep)
				}
				if c.got.Truncated() != (c.keep < len(c.sent)) {
					t.Errorf("%s body: Truncated() = %v with %d of %d kept", c.what, c.got.Truncated(), c.keep, len(c.sent))
				}
				if !c.got.Complete {
					t.Errorf("%s body: not Complete", c.what)
				}
			}
			checkAccounting(t, rec)
		})
	}
}

func TestMasking(t *testing.T) {
	t.Parallel()
	rec := New(&Options{MaskHeaders: []string{"x-api-key"}})
	var seen http.Header
	h := rec.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		w.Header().Add("Set-Cookie", "sid=s3cret-session; Path=/; HttpOnly")
		w.Header().Add("Set-Cookie", "theme=dark")
		w.Header().Set("X-Api-Key", "s3cret-response-key")
		w.Header().Set("X-Plain", "visible")
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer s3cret-token")
	req.Header.Set("Proxy-Authorization", "s3cret-proxy")
	req.Header.Set("Cookie", "a=s3cret-a; b=s3cret-b")
	req.Header.Set("X-Api-Key", "s3cret-key")
	req.Header.Set("X-Plain", "visible")
	h.ServeHTTP(newDiscardWriter(), req)
	ex := next(t, rec)

	tests := []struct {
		h    http.Header
		name string
		want []string
	}{
		{ex.RequestHeader, "Authorization", []string{"Bearer [masked]"}},
		{ex.RequestHeader, "Proxy-Authorization", []string{"[masked]"}},
		{ex.RequestHeader, "Cookie", []string{"a=[masked]; b=[masked]"}},
		{ex.RequestHeader, "X-Api-Key", []string{"[masked]"}},
		{ex.RequestHeader, "X-Plain", []string{"visible"}},
		{ex.ResponseHeader, "Set-Cookie", []string{"sid=[masked]; Path=/; HttpOnly", "theme=[masked]"}},
		{ex.ResponseHeader, "X-Api-Key", []string{"[masked]"}},
		{ex.ResponseHeader, "X-Plain", []string{"visible"}},
	}
	for _, tt := range tests {
		if got := tt.h.Values(tt.name); fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s = %q, want %q", tt.name, got, tt.want)
		}
	}
	// The handler saw the real values: only the copy is masked.
	if seen.Get("Authorization") != "Bearer s3cret-token" || seen.Get("X-Api-Key") != "s3cret-key" {
		t.Errorf("the handler saw masked headers: %v", seen)
	}
	// No secret anywhere the Recorder shows it.
	api := serve(t, rec.Handler())
	for _, path := range []string{"/api/exchanges", fmt.Sprintf("/api/exchanges/%d", ex.ID)} {
		_, _, body := do(t, client(t), "GET", api.URL+path, "", nil)
		if strings.Contains(body, "s3cret") {
			t.Errorf("GET %s shows a secret: %s", path, body)
		}
	}
	if s := fmt.Sprintf("%#v", rec.Exchanges()); strings.Contains(s, "s3cret") {
		t.Errorf("Exchanges holds a secret: %s", s)
	}
}

func TestMaskValue(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"Authorization", "Basic dXNlcjpwYXNz", "Basic [masked]"},
		{"Authorization", "  Bearer   tok ", "Bearer [masked]"},
		{"Authorization", "token-alone", "[masked]"},
		{"Authorization", "", "[masked]"},
		{"Cookie", "a=1", "a=[masked]"},
		{"Cookie", "a=1;b=2; c", "a=[masked]; b=[masked]; [masked]"},
		{"Set-Cookie", "id=xyz; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Secure", "id=[masked]; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Secure"},
		{"Set-Cookie", "novalue", "[masked]"},
		{"X-Custom", "anything", "[masked]"},
	}
	for _, tt := range tests {
		if got := maskValue(tt.name, tt.in); got != tt.want {
			t.Errorf("maskValue(%q, %q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestEvictionByCount(t *testing.T) {
	t.Parallel()
	rec := New(&Options{MaxExchanges: 50})
	h := rec.Middleware(echo)
	for i := range 1000 {
		h.ServeHTTP(newDiscardWriter(), httptest.NewRequest("GET", fmt.Sprintf("/%d", i), nil))
	}
	st := rec.Stats()
	if st.Exchanges != 50 || st.Dropped != 950 {
		t.Fatalf("Stats = %+v, want 50 kept and 950 dropped", st)
	}
	exs := rec.Exchanges()
	for i, ex := range exs {
		if want := uint64(951 + i); ex.ID != want || ex.URL != fmt.Sprintf("/%d", want-1) {
			t.Fatalf("exchange %d: ID %d URL %s, want ID %d (the newest 50, oldest first)", i, ex.ID, ex.URL, want)
		}
	}
	checkAccounting(t, rec)
}

// heapLive returns the bytes of live heap objects after a collection.
func heapLive() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Heavy traffic (256 MiB of bodies) through a Recorder bounded to 2 MiB:
// its count never passes the bound, and the heap it holds afterwards is
// within the bound too.
func TestEvictionByBytesUnderHeavyTraffic(t *testing.T) {
	// Not parallel: it measures the heap.
	const (
		maxBytes = 2 << 20
		workers  = 8
		each     = 128
		bodySize = 128 << 10
	)
	before := heapLive()
	rec := New(&Options{MaxBytes: maxBytes, MaxExchanges: 1 << 20})
	body := payload(bodySize, 3)
	h := rec.Middleware(writeInChunks(body, 16<<10))
	var over atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				req := httptest.NewRequest("POST", fmt.Sprintf("/w%d/%d", w, i), bytes.NewReader(body))
				req.Header.Set("X-Padding", strings.Repeat("p", 2000))
				h.ServeHTTP(newDiscardWriter(), req)
				if b := rec.Stats().Bytes; b > maxBytes {
					over.Store(b)
				}
			}
		})
	}
	wg.Wait()
	if b := over.Load(); b != 0 {
		t.Errorf("the count reached %d bytes, over MaxBytes %d", b, maxBytes)
	}
	st := rec.Stats()
	if st.Exchanges == 0 || st.Dropped == 0 || st.Exchanges+int(st.Dropped) != workers*each {
		t.Errorf("Stats = %+v: want some kept, some dropped, %d in all", st, workers*each)
	}
	checkAccounting(t, rec)
	after := heapLive()
	grown := int64(after) - int64(before)
	t.Logf("%d exchanges of %d KiB each way: %d kept, counted %d bytes; live heap grew %d bytes", workers*each, bodySize>>10, st.Exchanges, st.Bytes, grown)
	if grown > maxBytes+(1<<20) {
		t.Errorf("live heap grew %d bytes with a Recorder bounded to %d", grown, maxBytes)
	}
	runtime.KeepAlive(rec)
}

// An exchange in progress that is dropped goes on, counted but not kept,
// and the count stays exact.
func TestEvictionOfExchangeInProgress(t *testing.T) {
	t.Parallel()
	rec := New(&Options{MaxExchanges: 2})
	release := make(chan struct{})
	started := make(chan struct{})
	slow := rec.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		w.Write(payload(100<<10, 4))
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		slow.ServeHTTP(newDiscardWriter(), httptest.NewRequest("GET", "/slow", nil))
	}()
	<-started
	fast := rec.Middleware(echo)
	for range 2 {
		fast.ServeHTTP(newDiscardWriter(), httptest.NewRequest("GET", "/fast", nil))
	}
	close(release)
	<-done
	for _, ex := range rec.Exchanges() {
		if ex.URL == "/slow" {
			t.Errorf("the dropped exchange is back: %+v", ex)
		}
	}
	checkAccounting(t, rec)
	rec.Clear()
	if st := rec.Stats(); st.Bytes != 0 || st.Exchanges != 0 {
		t.Errorf("after Clear, Stats = %+v", st)
	}
}

func TestNextIsAQueue(t *testing.T) {
	t.Parallel()
	rec := New(nil)
	h := rec.Middleware(echo)
	for i := range 3 {
		h.ServeHTTP(newDiscardWriter(), httptest.NewRequest("POST", fmt.Sprintf("/hook/%d", i), strings.NewReader("x")))
	}
	// Those that ended before the call come first, in order.
	for i := range 3 {
		if ex := next(t, rec); ex.URL != fmt.Sprintf("/hook/%d", i) {
			t.Fatalf("Next = %s, want /hook/%d", ex.URL, i)
		}
	}
	// None left: Next waits until ctx ends, with a timeout error.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := rec.Next(ctx)
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Next with nothing to return: %v, want a timeout wrapping context.DeadlineExceeded", err)
	}
	// One that ends while Next waits.
	got := make(chan Exchange, 1)
	go func() { got <- next(t, rec) }()
	h.ServeHTTP(newDiscardWriter(), httptest.NewRequest("POST", "/hook/late", strings.NewReader("x")))
	if ex := <-got; ex.URL != "/hook/late" || string(ex.RequestBody.Data) != "x" || !ex.Done {
		t.Fatalf("Next = %+v, want the late delivery", ex)
	}
}

// An exchange is visible while in progress, and Next returns it only once
// it has ended.
func TestInProgress(t *testing.T) {
	t.Parallel()
	rec := New(nil)
	headerSent, release := make(chan struct{}), make(chan struct{})
	h := rec.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		close(headerSent)
		<-release
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(newDiscardWriter(), httptest.NewRequest("GET", "/pending", nil))
	}()
	<-headerSent
	exs := rec.Exchanges()
	if len(exs) != 1 || exs[0].Done || exs[0].Status != http.StatusAccepted {
		t.Fatalf("in progress: %+v, want one exchange with status 202, not done", exs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if ex, err := rec.Next(ctx); err == nil {
		t.Fatalf("Next returned an exchange in progress: %+v", ex)
	}
	close(release)
	<-done
	if ex := next(t, rec); !ex.Done || ex.URL != "/pending" {
		t.Fatalf("Next = %+v", ex)
	}
}

// fakeClock is a clock that a test moves.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func newFakeClock(start time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(start.UnixNano())
	return c
}

func TestTimings(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	rec := New(nil)
	rec.now = clock.now
	h := rec.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clock.advance(5 * time.Millisecond)
		w.WriteHeader(http.StatusOK)
		clock.advance(15 * time.Millisecond)
		w.Write([]byte("done"))
	}))
	h.ServeHTTP(newDiscardWriter(), httptest.NewRequest("GET", "/", nil))
	ex := next(t, rec)
	if !ex.Start.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) || ex.HeaderTime != 5*time.Millisecond || ex.Duration != 20*time.Millisecond {
		t.Errorf("Start %v, HeaderTime %v, Duration %v; want 03:04:05, 5ms, 20ms", ex.Start, ex.HeaderTime, ex.Duration)
	}
}

// A request body the handler does not read is recorded (HTTP/1, as the
// server would discard it), unless the handler asked for full duplex.
func TestUnreadRequestBody(t *testing.T) {
	t.Parallel()
	for _, fullDuplex := range []bool{false, true} {
		t.Run(fmt.Sprint("fullDuplex=", fullDuplex), func(t *testing.T) {
			t.Parallel()
			rec := New(nil)
			srv := serve(t, rec.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if fullDuplex {
					if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
						t.Errorf("EnableFullDuplex: %v", err)
					}
					// net/http panics reading the next request after an
					// unread full-duplex body (golang/go#68560), unless
					// the body is closed.
					defer r.Body.Close()
				}
				w.WriteHeader(http.StatusAccepted)
			})))
			status, _, _ := do(t, client(t), "POST", srv.URL+"/hook", `{"event":"push"}`, nil)
			ex := next(t, rec)
			if status != http.StatusAccepted || ex.Status != http.StatusAccepted {
				t.Fatalf("status %d, recorded %d", status, ex.Status)
			}
			if fullDuplex {
				if ex.RequestBody.Size != 0 || ex.RequestBody.Complete {
					t.Errorf("full duplex: the Middleware read the body: %+v", ex.RequestBody)
				}
				return
			}
			if string(ex.RequestBody.Data) != `{"event":"push"}` || !ex.RequestBody.Complete {
				t.Errorf("request body = %q (complete %v), want the unread body", ex.RequestBody.Data, ex.RequestBody.Complete)
			}
		})
	}
}

func TestClear(t *testing.T) {
	t.Parallel()
	rec := New(nil)
	h := rec.Middleware(echo)
	h.ServeHTTP(newDiscardWriter(), httptest.NewRequest("GET", "/a", nil))
	rec.Clear()
	h.ServeHTTP(newDiscardWriter(), httptest.NewRequest("GET", "/b", nil))
	exs := rec.Exchanges()
	if len(exs) != 1 || exs[0].ID != 2 || exs[0].URL != "/b" {
		t.Fatalf("after Clear: %+v, want only /b with ID 2", exs)
	}
	if _, ok := rec.Get(1); ok {
		t.Error("Get found a cleared exchange")
	}
	checkAccounting(t, rec)
}

// What the Recorder returns is the caller's: changing it changes nothing
// kept.
func TestCopiesAreOwned(t *testing.T) {
	t.Parallel()
	rec := New(nil)
	rec.Middleware(echo).ServeHTTP(newDiscardWriter(), httptest.NewRequest("POST", "/", strings.NewReader("abc")))
	ex, _ := rec.Get(1)
	ex.RequestBody.Data[0] = 'X'
	ex.RequestHeader.Set("X-New", "1")
	again, _ := rec.Get(1)
	if string(again.RequestBody.Data) != "abc" || again.RequestHeader.Get("X-New") != "" {
		t.Errorf("a change to a copy reached the record: %q %v", again.RequestBody.Data, again.RequestHeader)
	}
}

func TestPanicEndsTheExchange(t *testing.T) {
	t.Parallel()
	rec := New(nil)
	srv := serve(t, rec.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	})))
	if _, err := client(t).Get(srv.URL + "/panic"); err == nil {
		t.Fatal("the request succeeded")
	}
	ex := next(t, rec)
	if !ex.Done || ex.Status != 0 || ex.ResponseBody.Complete {
		t.Errorf("after a panic: Done %v, Status %d, response complete %v; want true, 0, false", ex.Done, ex.Status, ex.ResponseBody.Complete)
	}
}

// The Content-Type net/http sniffs for a handler that set none is the one
// recorded.
func TestSniffedContentType(t *testing.T) {
	t.Parallel()
	rec := New(nil)
	srv := serve(t, rec.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<!doctype html><p>hi"))
	})))
	_, hdr, _ := do(t, client(t), "GET", srv.URL, "", nil)
	ex := next(t, rec)
	if got, want := ex.ResponseHeader.Get("Content-Type"), hdr.Get("Content-Type"); got != want {
		t.Errorf("recorded Content-Type %q, sent %q", got, want)
	}
}
