package h1relay

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

const nextResponse = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"

// Each response reaches the client byte for byte, and the relay finds its
// end from its head: a length, chunks, the connection's close, or no body
// whatever the head claims (HEAD, 204, 304). A response that keeps the
// connection lets a second request follow on the same upstream
// connection; one that does not ends both connections.
func TestResponseFraming(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, method, response string
		keep                   bool // the connection carries a second exchange
		hangUp                 bool // the upstream closes the connection after its answer
	}{
		{"content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true, false},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", true, false},
		{"chunked over a length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", true, false},
		{"close-delimited", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", false, true},
		{"HTTP/1.0 close-delimited", "GET", "HTTP/1.0 200 OK\r\n\r\nuntil the end", false, true},
		{"connection close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false, false},
		{"HTTP/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, false},
		{"HTTP/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", true, false},
		{"HEAD with a length", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true, false},
		{"HEAD chunked", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, false},
		{"204 with a length", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", true, false},
		{"304 chunked", "GET", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", true, false},
		{"empty body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true, false},
		{"interim answers", "GET", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			closed := make(chan struct{})
			responses := []string{tc.response}
			if tc.keep {
				responses = append(responses, nextResponse)
			}
			serve := script(closed, responses...)
			if tc.hangUp {
				serve = script(nil, responses...)
				close(closed)
			}
			r, up := newRawUpstream(t, false, serve)
			c := serveConn(t, r, nil)

			io.WriteString(c, tc.method+" /a HTTP/1.1\r\nHost: x\r\n\r\n")
			if tc.keep {
				got := make([]byte, len(tc.response))
				if _, err := io.ReadFull(c.br, got); err != nil || string(got) != tc.response {
					t.Fatalf("client got %q, %v; want %q", got, err, tc.response)
				}
				io.WriteString(c, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
				got = make([]byte, len(nextResponse))
				if _, err := io.ReadFull(c.br, got); err != nil || string(got) != nextResponse {
					t.Fatalf("second exchange: client got %q, %v", got, err)
				}
				if n := up.accepted.Load(); n != 1 {
					t.Errorf("two exchanges opened %d upstream connections, want 1", n)
				}
				return
			}
			got, err := io.ReadAll(c.br)
			if err != nil || string(got) != tc.response {
				t.Fatalf("client got %q, %v; want %q then the connection's end", got, err, tc.response)
			}
			if err := c.wait(t); err != nil {
				t.Errorf("Serve: %v", err)
			}
			waitClosed(t, closed, "the upstream connection's close")
		})
	}
}

// Requests on one connection, of several methods and bodies, go over one
// upstream connection, with net/http at both ends.
func TestKeepAliveReusesUpstream(t *testing.T) {
	t.Parallel()
	r, accepted := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		fmt.Fprintf(w, "%s %s %s", req.Method, req.URL.RequestURI(), body)
	}))
	c := serveConn(t, r, nil)
	for i, tc := range []struct{ request, want string }{
		{"GET /1?q=a%20b HTTP/1.1\r\nHost: x\r\n\r\n", "GET /1?q=a%20b "},
		{"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "POST /2 hello"},
		{"HEAD /3 HTTP/1.1\r\nHost: x\r\n\r\n", ""},
		{"PUT /4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "PUT /4 abc"},
		{"DELETE /5 HTTP/1.1\r\nHost: x\r\n\r\n", "DELETE /5 "},
	} {
		resp, body := c.roundTrip(t, tc.request)
		if resp.StatusCode != 200 || body != tc.want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, tc.want)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("5 exchanges on one connection opened %d upstream connections, want 1", n)
	}
}

// Done hears of each exchange once, as it ends, with its method, target,
// final status (not an interim one) and a duration.
func TestDone(t *testing.T) {
	t.Parallel()
	r, _ := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body) // with Expect: 100-continue, sends the 100
		w.WriteHeader(http.StatusCreated)
	}))
	type done struct {
		method, target string
		status         int
		d              time.Duration
	}
	var mu sync.Mutex
	var got []done
	r.Done = func(method, target string, status int, d time.Duration) {
		mu.Lock()
		got = append(got, done{method, target, status, d})
		mu.Unlock()
	}
	c := serveConn(t, r, nil)
	c.roundTrip(t, "GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n")
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
	if resp, _ := c.read(t, "POST"); resp.StatusCode != http.StatusContinue {
		t.Fatalf("got %d, want 100 Continue", resp.StatusCode)
	}
	io.WriteString(c, "ok")
	c.read(t, "POST")
	c.Close()
	c.wait(t)

	mu.Lock()
	defer mu.Unlock()
	want := []done{{"GET", "/a?b=c", 201, 0}, {"POST", "/up", 201, 0}}
	if len(got) != len(want) {
		t.Fatalf("Done called %d times, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].method != want[i].method || got[i].target != want[i].target || got[i].status != want[i].status || got[i].d <= 0 {
			t.Errorf("Done %d: %+v, want %+v with a duration", i, got[i], want[i])
		}
	}
}

// A request that closes its connection (Connection: close, or HTTP/1.0
// without keep-alive) ends both connections after its answer; requests
// sent back to back, before any answer, are answered in turn.
func TestRequestFraming(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, request string }{
		{"connection close", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			closed := make(chan struct{})
			r, _ := newRawUpstream(t, false, script(closed, nextResponse))
			c := serveConn(t, r, nil)
			if _, body := c.roundTrip(t, tc.request); body != "next" {
				t.Fatalf("got %q", body)
			}
			c.wantEOF(t)
			waitClosed(t, closed, "the upstream connection's close")
		})
	}
	t.Run("pipelined", func(t *testing.T) {
		t.Parallel()
		r, up := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			body, _ := io.ReadAll(req.Body)
			fmt.Fprintf(w, "%s %s", req.URL.Path, body)
		}))
		c := serveConn(t, r, nil)
		io.WriteString(c, "POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nonePOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwoGET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
		for _, want := range []string{"/1 one", "/2 two", "/3 "} {
			if _, body := c.read(t, "POST"); body != want {
				t.Fatalf("got %q, want %q", body, want)
			}
		}
		if n := up.Load(); n != 1 {
			t.Errorf("%d upstream connections, want 1", n)
		}
	})
}
