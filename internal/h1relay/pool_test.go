package h1relay

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// hangsUpAfterOne is an upstream whose first connection answers one
// request and then closes, without saying so in its answer, as a server
// does whose idle timeout is shorter than the relay's; gone is closed
// once it has. Later connections answer every request with "fresh" and
// the method.
func hangsUpAfterOne(gone chan struct{}) func(net.Conn, *bufio.Reader) {
	var n atomic.Int32
	return func(c net.Conn, br *bufio.Reader) {
		if n.Add(1) == 1 {
			script(nil, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")(c, br)
			c.Close()
			close(gone)
			return
		}
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			resp := "fresh " + req.Method + " " + string(body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(resp))+"\r\n\r\n"+resp)
		}
	}
}

// A GET sent on a pooled connection that the upstream closed while it was
// idle is sent again, once, on a new connection, and succeeds, on the
// same client connection as the exchange before it; over TCP, where the
// failure is the answer's absence, and over a pipe, where it is the
// request's write.
func TestRetryOnConnectionClosedWhileIdle(t *testing.T) {
	t.Parallel()
	for _, pipe := range []bool{false, true} {
		name := map[bool]string{false: "tcp", true: "pipe"}[pipe]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			gone := make(chan struct{})
			r, up := newRawUpstream(t, pipe, hangsUpAfterOne(gone))
			f := &failures{}
			r.Fail = f.fail
			ended := exchangesEnded(r)
			c := serveConn(t, r, nil)
			if _, body := c.roundTrip(t, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"); body != "first" {
				t.Fatalf("first exchange: %q", body)
			}
			waitClosed(t, ended, "the first exchange's end")
			waitClosed(t, gone, "the upstream's close")
			if resp, body := c.roundTrip(t, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 || body != "fresh GET " {
				errs, _ := f.calls()
				t.Fatalf("GET after the idle close: %d %q (Fail: %v), want it retried", resp.StatusCode, body, errs)
			}
			if n := up.accepted.Load(); n != 2 {
				t.Errorf("%d upstream connections, want 2", n)
			}
		})
	}
}

// A request with a body, which could not be sent twice, goes on a pooled
// connection idle for more than probeAfter only once a read that cannot
// wait has found it open: one the upstream closed is dropped for a new
// one, one still open is used.
func TestProbeBeforeSendingBody(t *testing.T) {
	t.Parallel()
	gone := make(chan struct{})
	r, up := newRawUpstream(t, true, hangsUpAfterOne(gone))
	ended := exchangesEnded(r)
	c := serveConn(t, r, nil)
	c.roundTrip(t, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitClosed(t, ended, "the first exchange's end")
	waitClosed(t, gone, "the upstream's close")
	ageIdle(t, r)
	post := "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
	if resp, body := c.roundTrip(t, post); resp.StatusCode != 200 || body != "fresh POST hello" {
		t.Fatalf("POST after the idle close: %d %q", resp.StatusCode, body)
	}
	if n := up.accepted.Load(); n != 2 {
		t.Fatalf("%d upstream connections, want 2", n)
	}
	// The new connection, open, idles past probeAfter and is used again.
	waitClosed(t, ended, "the POST's end")
	ageIdle(t, r)
	if _, body := c.roundTrip(t, post); body != "fresh POST hello" {
		t.Fatalf("second POST: %q", body)
	}
	if n := up.accepted.Load(); n != 2 {
		t.Errorf("%d upstream connections, want the open one reused", n)
	}
}

// exchangesEnded returns a channel that receives as each of r's exchanges
// ends: once its upstream connection is back in the pool.
func exchangesEnded(r *Relay) <-chan struct{} {
	ch := make(chan struct{}, 16)
	r.Done = func(string, string, int, time.Duration) { ch <- struct{}{} }
	return ch
}

// ageIdle makes r's idle connections look idle for longer than probeAfter.
func ageIdle(t *testing.T, r *Relay) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.idle) == 0 {
		t.Fatal("no idle connection")
	}
	for _, u := range r.idle {
		u.idleSince = u.idleSince.Add(-2 * probeAfter)
	}
}

// The sweep closes upstream connections idle for longer than IdleTimeout.
func TestIdleTimeoutSweep(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{})
	r, _ := newRawUpstream(t, true, script(closed, nextResponse))
	r.IdleTimeout = 10 * time.Millisecond
	c := serveConn(t, r, nil)
	c.roundTrip(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitClosed(t, closed, "the idle connection's close")
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.idle) != 0 || r.sweep != nil {
		t.Errorf("after the sweep: %d idle, sweep timer %v", len(r.idle), r.sweep != nil)
	}
}

// MaxIdle bounds the idle pool: of four connections that end their
// exchanges at once, two stay open and are used by the next requests, and
// two close.
func TestMaxIdle(t *testing.T) {
	t.Parallel()
	const n, maxIdle = 4, 2
	var arrived atomic.Int32
	all := make(chan struct{})
	closes := make(chan struct{}, n)
	var accepted atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/together" && arrived.Add(1) == n {
			close(all)
		}
		if req.URL.Path == "/together" {
			<-all
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			accepted.Add(1)
		case http.StateClosed:
			closes <- struct{}{}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	r := newRelay(t, srv.Listener.Addr().String())
	r.MaxIdle = maxIdle
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = serveConn(t, r, nil)
		io.WriteString(clients[i], "GET /together HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	for _, c := range clients {
		c.read(t, "GET")
	}
	for range n - maxIdle {
		waitClosed(t, closes, "the close of a connection the pool had no room for")
	}
	r.mu.Lock()
	idle := len(r.idle)
	r.mu.Unlock()
	if idle != maxIdle {
		t.Errorf("%d idle connections, want %d", idle, maxIdle)
	}
	for _, c := range clients[:maxIdle] {
		c.roundTrip(t, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	if got := accepted.Load(); got != n {
		t.Errorf("%d upstream connections, want the %d idle ones reused", got, maxIdle)
	}
}

// A request that is not idempotent is never sent twice, though it has no
// body: a bodiless POST that its pooled connection's upstream took and
// then closed without answering gets Fail's answer, not a second send on
// a new connection, which would repeat what the upstream may have done.
func TestNoSecondSendOfNonIdempotentRequest(t *testing.T) {
	t.Parallel()
	posts := make(chan string, 4)
	var conns atomic.Int32
	r, _ := newRawUpstream(t, true, func(c net.Conn, br *bufio.Reader) {
		n := conns.Add(1)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Method == "POST" {
				posts <- "POST on connection " + strconv.Itoa(int(n))
				if n == 1 {
					return // took it, and closed without answering
				}
			}
			io.WriteString(c, nextResponse)
		}
	})
	f := &failures{}
	r.Fail = f.fail
	ended := exchangesEnded(r)
	c := serveConn(t, r, nil)
	c.roundTrip(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitClosed(t, ended, "the GET's end")
	resp, _ := c.roundTrip(t, "POST /deploy HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	if resp.StatusCode != 502 {
		t.Errorf("POST whose connection closed: %d, want Fail's 502", resp.StatusCode)
	}
	if got := <-posts; got != "POST on connection 1" {
		t.Fatalf("first POST: %s", got)
	}
	if len(posts) != 0 {
		t.Errorf("the POST was sent again: %s", <-posts)
	}
}

// A bodiless POST on a connection idle for longer than probeAfter, which
// the upstream closed, goes on a new connection once the probe has found
// it closed.
func TestProbeBeforeNonIdempotentRequest(t *testing.T) {
	t.Parallel()
	gone := make(chan struct{})
	r, up := newRawUpstream(t, true, hangsUpAfterOne(gone))
	ended := exchangesEnded(r)
	c := serveConn(t, r, nil)
	c.roundTrip(t, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitClosed(t, ended, "the first exchange's end")
	waitClosed(t, gone, "the upstream's close")
	ageIdle(t, r)
	if resp, body := c.roundTrip(t, "POST /deploy HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"); resp.StatusCode != 200 || body != "fresh POST " {
		t.Fatalf("POST after the idle close: %d %q", resp.StatusCode, body)
	}
	if n := up.accepted.Load(); n != 2 {
		t.Errorf("%d upstream connections, want 2", n)
	}
}

// A server that answers 408 on an idle connection before it closes it
// (as some do at their idle timeout): a GET sent later on that connection
// would take the 408 for its answer. The probe before an old connection
// carries a request finds the stray answer, and the GET goes on a new
// connection.
func TestStrayAnswerOnIdleConnection(t *testing.T) {
	t.Parallel()
	sent := make(chan struct{})
	var n atomic.Int32
	r, up := newRawUpstream(t, false, func(c net.Conn, br *bufio.Reader) {
		if n.Add(1) == 1 {
			script(nil, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")(c, br)
			io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			close(sent)
			br.ReadByte() // until the relay closes it
			return
		}
		script(nil, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")(c, br)
	})
	ended := exchangesEnded(r)
	c := serveConn(t, r, nil)
	c.roundTrip(t, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitClosed(t, ended, "the first exchange's end")
	waitClosed(t, sent, "the stray 408")
	ageIdle(t, r)
	resp, body := c.roundTrip(t, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 200 || body != "second" {
		t.Fatalf("GET after the stray answer: %d %q, want 200 \"second\"", resp.StatusCode, body)
	}
	if got := up.accepted.Load(); got != 2 {
		t.Errorf("%d upstream connections, want 2", got)
	}
}
