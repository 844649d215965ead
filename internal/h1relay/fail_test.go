package h1relay

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// failures records Fail's calls and answers as the Forwarder's does: a
// status of its own, a header, and a body naming the method.
type failures struct {
	mu   sync.Mutex
	errs []error
	reqs []*http.Request
}

func (f *failures) fail(w http.ResponseWriter, r *http.Request, err error) {
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.reqs = append(f.reqs, r)
	f.mu.Unlock()
	w.Header().Set("X-Failure", "upstream")
	w.WriteHeader(http.StatusBadGateway)
	io.WriteString(w, "no answer to "+r.Method+" "+r.URL.Path)
}

func (f *failures) calls() ([]error, []*http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...), append([]*http.Request(nil), f.reqs...)
}

// An upstream that cannot be dialed makes Fail answer: its status, header
// and body reach the client, with the request's method, path, Host and
// Accept in r. A request without a body leaves the connection open for
// the next; one with a body, whose end the relay did not read, gets
// Connection: close and the connection ends. Done hears the status sent.
func TestDialFailure(t *testing.T) {
	t.Parallel()
	refused := errors.New("connection refused")
	f := &failures{}
	var statuses []int
	var mu sync.Mutex
	r := &Relay{
		Dial: func(context.Context) (net.Conn, error) { return nil, refused },
		Fail: f.fail,
		Done: func(_, _ string, status int, _ time.Duration) {
			mu.Lock()
			statuses = append(statuses, status)
			mu.Unlock()
		},
	}
	t.Cleanup(r.Close)
	c := serveConn(t, r, nil)
	for range 2 {
		resp, body := c.roundTrip(t, "GET /a/b?c=d HTTP/1.1\r\nHost: public.example\r\nAccept: text/html\r\n\r\n")
		if resp.StatusCode != 502 || body != "no answer to GET /a/b" || resp.Header.Get("X-Failure") != "upstream" || resp.Close {
			t.Fatalf("GET: %d %q %v close=%v, want Fail's 502, kept open", resp.StatusCode, body, resp.Header, resp.Close)
		}
	}
	resp, body := c.roundTrip(t, "HEAD /h HTTP/1.1\r\nHost: public.example\r\n\r\n")
	if resp.StatusCode != 502 || body != "" {
		t.Fatalf("HEAD: %d %q, want 502 without a body", resp.StatusCode, body)
	}
	io.WriteString(c, "POST /p HTTP/1.1\r\nHost: public.example\r\nContent-Length: 100000\r\n\r\n")
	resp, body = c.read(t, "POST")
	if resp.StatusCode != 502 || body != "no answer to POST /p" || !resp.Close {
		t.Fatalf("POST: %d %q close=%v, want 502 with Connection: close", resp.StatusCode, body, resp.Close)
	}
	c.wantEOF(t)
	if err := c.wait(t); !errors.Is(err, refused) {
		t.Errorf("Serve: %v, want the dial's error", err)
	}
	errs, reqs := f.calls()
	if len(errs) != 4 || !errors.Is(errs[0], refused) {
		t.Fatalf("Fail called %d times (%v), want 4 with the dial's error", len(errs), errs)
	}
	if q := reqs[0]; q.Method != "GET" || q.URL.Path != "/a/b" || q.URL.RawQuery != "c=d" || q.Host != "public.example" || q.Header.Get("Accept") != "text/html" {
		t.Errorf("Fail's request: %s %v host %q accept %q", q.Method, q.URL, q.Host, q.Header.Get("Accept"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(statuses) != 4 || statuses[0] != 502 || statuses[3] != 502 {
		t.Errorf("Done's statuses %v, want 502 four times", statuses)
	}
}

// Without Fail, the client gets a plain 502.
func TestDefaultFail(t *testing.T) {
	t.Parallel()
	r := &Relay{Dial: func(context.Context) (net.Conn, error) { return nil, errors.New("down") }}
	t.Cleanup(r.Close)
	c := serveConn(t, r, nil)
	if resp, body := c.roundTrip(t, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 502 || !strings.Contains(body, "bad gateway") {
		t.Errorf("got %d %q, want 502 bad gateway", resp.StatusCode, body)
	}
}

// What an upstream sends that is not an HTTP/1.1 response head makes Fail
// answer, and the upstream connection is dropped; a body whose framing
// breaks once its head has been relayed ends the client's connection, so
// that the client sees a response cut short, not a whole one.
func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	long := "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("a", 2000) + "\r\nContent-Length: 0\r\n\r\n"
	for _, tc := range []struct {
		name, response string
		failed         bool // Fail answers; otherwise the client's connection ends
	}{
		{"closes before answering", "", true},
		{"cut head", "HTTP/1.1 200 OK\r\nContent-Le", true},
		{"malformed status line", "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", true},
		{"not HTTP", "SSH-2.0-OpenSSH_9.6\r\n\r\n", true},
		{"HTTP/2 preface", "HTTP/2 200\r\n\r\n", true},
		{"head too large", long, true},
		{"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", true},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", true},
		{"folded header", "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n", true},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false},
		{"chunk without its CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n", false},
		{"body cut short", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", false},
		{"chunks cut short", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, up := newRawUpstream(t, false, func(c net.Conn, br *bufio.Reader) {
				readHeadRaw(br)
				io.WriteString(c, tc.response) // then closes
			})
			f := &failures{}
			r.Fail = f.fail
			r.MaxHeaderBytes = 1024
			c := serveConn(t, r, nil)
			io.WriteString(c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
			if !tc.failed {
				resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
				if err == nil {
					_, err = io.ReadAll(resp.Body)
				}
				if err == nil {
					t.Fatal("the client read a whole response")
				}
				if c.wait(t) == nil {
					t.Error("Serve returned no error")
				}
				if errs, _ := f.calls(); len(errs) != 0 {
					t.Errorf("Fail called after the head was relayed: %v", errs)
				}
				return
			}
			resp, body := c.read(t, "GET")
			if resp.StatusCode != 502 || body != "no answer to GET /x" {
				t.Fatalf("got %d %q, want Fail's answer", resp.StatusCode, body)
			}
			if errs, _ := f.calls(); len(errs) != 1 || errs[0] == nil {
				t.Errorf("Fail's errors %v, want one", errs)
			}
			// The connection carries the next request, on a new upstream
			// connection.
			c.roundTrip(t, "GET /y HTTP/1.1\r\nHost: x\r\n\r\n")
			if n := up.accepted.Load(); n != 2 {
				t.Errorf("%d upstream connections, want a new one after the failure", n)
			}
		})
	}
}

// A request head the relay cannot take is answered by the relay itself,
// which closes the connection and dials nothing: 431 for one over
// MaxHeaderBytes, 400 for one it cannot frame.
func TestBadRequestHeads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, request string
		status        int
	}{
		{"too large", "GET / HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("c", 2000) + "\r\n\r\n", 431},
		{"too large request line", "GET /" + strings.Repeat("p", 20000) + " HTTP/1.1\r\nHost: x\r\n\r\n", 431},
		{"conflicting lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"unknown coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
		{"bad version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 400},
		{"no target", "GET HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dials := 0
			r := &Relay{MaxHeaderBytes: 16 << 10, Dial: func(context.Context) (net.Conn, error) {
				dials++
				return nil, errors.New("dialed")
			}}
			if tc.status == 431 {
				r.MaxHeaderBytes = 1024
			}
			t.Cleanup(r.Close)
			c := servePipe(t, r, nil) // the relay leaves the request unread
			go io.WriteString(c, tc.request)
			resp, _ := c.read(t, "GET")
			if resp.StatusCode != tc.status || !resp.Close {
				t.Errorf("got %d close=%v, want %d and Connection: close", resp.StatusCode, resp.Close, tc.status)
			}
			c.wantEOF(t)
			if err := c.wait(t); err == nil {
				t.Error("Serve returned no error")
			}
			if dials != 0 {
				t.Errorf("the upstream was dialed %d times", dials)
			}
		})
	}
}

// A request body that breaks (chunked framing the relay cannot parse) or
// ends before its length (the client stopped sending) ends the exchange
// and both connections: the upstream, which would wait for the rest of
// the body, is not left holding the exchange.
func TestBrokenRequestBody(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, request string }{
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n"},
		{"chunk without its CRLF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n"},
		{"cut short", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello"},
		{"chunks cut short", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := newHoldingUpstream(t) // reads the body, which never ends
			r := newRelay(t, u.addr)
			c := serveConn(t, r, nil)
			io.WriteString(c, tc.request)
			if cut := strings.Contains(tc.name, "cut short"); cut {
				c.Conn.(*net.TCPConn).CloseWrite() // the body's end, to the relay
			}
			if resp, err := http.ReadResponse(c.br, &http.Request{Method: "POST"}); err == nil && resp.StatusCode < 400 {
				t.Errorf("got %d for a broken body", resp.StatusCode)
			}
			if err := c.wait(t); err == nil {
				t.Error("Serve returned no error")
			}
			waitClosed(t, u.closes, "the upstream connection's close")
		})
	}
}
