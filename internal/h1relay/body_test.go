package h1relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// transportTo returns an HTTP client whose every connection is one r
// serves, closed with the test.
func transportTo(t *testing.T, r *Relay) *http.Client {
	t.Helper()
	var wg sync.WaitGroup
	tr := &http.Transport{
		DisableCompression:    true,
		ExpectContinueTimeout: time.Minute, // a 100 that does not pass is a failure
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			a, b := net.Pipe()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.Serve(b, nil)
			}()
			return a, nil
		},
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		wg.Wait()
	})
	return &http.Client{Transport: tr, Timeout: guard}
}

// A request body of MiBs streams upstream while a response of MiBs, the
// same bytes, streams back from an upstream that echoes as it reads: the
// relay copies both ways at once, or neither side could finish.
func TestLargeBodiesStreamBothWays(t *testing.T) {
	t.Parallel()
	r, _ := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		io.Copy(w, req.Body)
	}))
	c := transportTo(t, r)
	const size = 16 << 20
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7 / 13)
	}
	for _, chunked := range []bool{false, true} {
		var body io.Reader = bytes.NewReader(payload)
		if chunked {
			body = io.MultiReader(body) // no length known: chunked
		}
		resp, err := c.Post("http://upstream/echo", "application/octet-stream", body)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || n != size || !bytes.Equal(h.Sum(nil), sha(payload)) {
			t.Fatalf("chunked=%v: echoed %d bytes (%v), want the %d sent", chunked, n, err, size)
		}
	}
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// Trailers of a chunked body arrive both ways: the upstream reads the
// request's, and the client the response's.
func TestTrailersBothWays(t *testing.T) {
	t.Parallel()
	r, _ := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		w.Header().Set("Trailer", "X-Echo-Trailer")
		w.Write(body)
		w.(http.Flusher).Flush() // chunked, whatever the length
		w.Header().Set("X-Echo-Trailer", req.Trailer.Get("X-Sum"))
	}))
	c := transportTo(t, r)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://upstream/t", pr)
	req.Trailer = http.Header{"X-Sum": nil}
	go func() {
		io.WriteString(pw, "part one, ")
		io.WriteString(pw, "part two")
		req.Trailer.Set("X-Sum", "two parts")
		pw.Close()
	}()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "part one, part two" {
		t.Fatalf("body %q, %v", body, err)
	}
	if got := resp.Trailer.Get("X-Echo-Trailer"); got != "two parts" {
		t.Errorf("response trailer %q, want the request's trailer echoed, %q", got, "two parts")
	}
}

// Server-sent events reach the client one by one: the upstream writes the
// next only once the client has had the last.
func TestEventsAreNotHeldBack(t *testing.T) {
	t.Parallel()
	ack := make(chan struct{})
	r, _ := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 5 {
			io.WriteString(w, "data: event "+string(rune('0'+i))+"\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-ack:
			case <-req.Context().Done():
				return
			}
		}
	}))
	c := serveConn(t, r, nil)
	io.WriteString(c, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	for i := range 5 {
		want := "data: event " + string(rune('0'+i)) + "\n\n"
		if _, err := io.ReadFull(resp.Body, buf[:len(want)]); err != nil || string(buf[:len(want)]) != want {
			t.Fatalf("event %d: %q, %v; want %q before the next is written", i, buf[:len(want)], err, want)
		}
		ack <- struct{}{}
	}
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Errorf("after the events: %q, %v", rest, err)
	}
}

// Expect: 100-continue: the upstream's 100 reaches the client, which then
// sends the body; an upstream that answers 401 or 417 without the body
// gets no body, and both connections close, since where the unsent body
// would have ended is unknown.
func TestExpectContinue(t *testing.T) {
	t.Parallel()
	r, _ := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/private":
			w.WriteHeader(http.StatusUnauthorized)
		case "/expect":
			w.WriteHeader(http.StatusExpectationFailed)
		default:
			body, _ := io.ReadAll(req.Body)
			io.WriteString(w, "got "+string(body))
		}
	}))
	c := serveConn(t, r, nil)
	io.WriteString(c, "PUT /ok HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	if resp, _ := c.read(t, "PUT"); resp.StatusCode != http.StatusContinue {
		t.Fatalf("got %d, want 100 Continue", resp.StatusCode)
	}
	io.WriteString(c, "hello")
	if resp, body := c.read(t, "PUT"); resp.StatusCode != 200 || body != "got hello" {
		t.Fatalf("after the 100: %d %q", resp.StatusCode, body)
	}

	for _, path := range []string{"/private", "/expect"} {
		c := serveConn(t, r, nil)
		io.WriteString(c, "PUT "+path+" HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		resp, _ := c.read(t, "PUT")
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusExpectationFailed {
			t.Fatalf("%s: got %d, want the upstream's final answer", path, resp.StatusCode)
		}
		c.wantEOF(t)
		if err := c.wait(t); err != nil {
			t.Errorf("%s: Serve: %v", path, err)
		}
	}
}

// An upstream that answers before reading a large body, and then reads
// nothing more, does not hold the exchange: its answer reaches the
// client, and both connections close.
func TestEarlyAnswerWithoutReadingBody(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	r, _ := newRawUpstream(t, false, func(c net.Conn, br *bufio.Reader) {
		readHeadRaw(br)
		io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo big!")
		<-stop // reads nothing more
	})
	t.Cleanup(func() { close(stop) })
	c := servePipe(t, r, nil)
	const size = 64 << 20 // more than any socket buffers
	sent := make(chan error, 1)
	go func() {
		io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n")
		_, err := c.Write(make([]byte, size))
		sent <- err
	}()
	resp, body := c.read(t, "POST")
	if resp.StatusCode != http.StatusRequestEntityTooLarge || body != "too big!" {
		t.Fatalf("got %d %q, want the upstream's early 413", resp.StatusCode, body)
	}
	if err := c.wait(t); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := <-sent; err == nil {
		t.Error("the whole body was taken, by an upstream that read none of it")
	}
}

// An upstream that answers in full while the last bytes of a body the
// relay has read wait to be written to it, and never reads them, does not
// hold the exchange: the answer reaches the client, and the client's
// connection carries the next request.
func TestAnswerBeforeBodyTaken(t *testing.T) {
	t.Parallel()
	headRead := make(chan struct{})
	answer := make(chan struct{})
	stop := make(chan struct{})
	var conns atomic.Int32
	r, _ := newRawUpstream(t, true, func(c net.Conn, br *bufio.Reader) {
		if conns.Add(1) > 1 {
			script(make(chan struct{}), nextResponse)(c, br)
			return
		}
		readHeadRaw(br)
		close(headRead)
		<-answer
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
		<-stop // reads nothing more
	})
	t.Cleanup(func() { close(stop) })
	c := servePipe(t, r, nil)
	io.WriteString(c, "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
	<-headRead
	io.WriteString(c, "0123456789") // returns once the relay has read it
	close(answer)
	if resp, body := c.read(t, "POST"); resp.StatusCode != 200 || body != "done" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if resp, body := c.roundTrip(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || body != "next" {
		t.Fatalf("next request: %d %q", resp.StatusCode, body)
	}
}

// holdingConn is an upstream connection whose write that completes the
// first want bytes does not return until the relay sets a write deadline
// or closes the connection: the copy of a request body is held between
// its last write and the mark that it is done, while the upstream, which
// has the whole body, answers.
type holdingConn struct {
	net.Conn
	want    int
	written int
	held    chan struct{}
	once    sync.Once
}

func (c *holdingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.written += n; c.written >= c.want && c.want > 0 {
		c.want = 0
		<-c.held
	}
	return n, err
}

func (c *holdingConn) release() { c.once.Do(func() { close(c.held) }) }

func (c *holdingConn) SetWriteDeadline(t time.Time) error {
	c.release()
	return c.Conn.SetWriteDeadline(t)
}

func (c *holdingConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// An answer that ends while the copy of the request's body has written
// its last bytes but not yet marked itself done ends the exchange as any
// other: both connections carry the next request.
func TestAnswerWhileBodyCopyEnds(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	r, accepted := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == "POST" {
			arrived <- struct{}{}
		}
		n, _ := io.Copy(io.Discard, req.Body)
		io.WriteString(w, "got "+strconv.FormatInt(n, 10))
	}))
	const size = 64 << 10
	head := "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
	dial := r.Dial
	r.Dial = func(ctx context.Context) (net.Conn, error) {
		c, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		return &holdingConn{Conn: c, want: len(head) + size, held: make(chan struct{})}, nil
	}
	c := serveConn(t, r, nil)
	io.WriteString(c, head)
	waitClosed(t, arrived, "the POST's arrival") // the body is not sent with the head
	go c.Write(make([]byte, size))
	if resp, body := c.read(t, "POST"); resp.StatusCode != 200 || body != "got 65536" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if resp, body := c.roundTrip(t, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || body != "got 0" {
		t.Fatalf("next request: %d %q", resp.StatusCode, body)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d upstream connections, want the first kept", n)
	}
}
