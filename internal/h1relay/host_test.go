package h1relay

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
)

// Host, when set, replaces the request's Host line where it stands, or
// adds one after the request line when there is none; every other byte of
// the head, and the body, go as they came. Without Host the head is not
// touched. Heads of different lengths follow each other on one
// connection.
func TestHostReplacement(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, host, request, want string
	}{
		{"replaced", "local:8080",
			"GET /a HTTP/1.1\r\nX-A: 1\r\nHost: public.example\r\nX-B: 2\r\n\r\n",
			"GET /a HTTP/1.1\r\nX-A: 1\r\nHost: local:8080\r\nX-B: 2\r\n\r\n"},
		{"lower-case name, bare LF", "local:8080",
			"GET /a HTTP/1.1\nhost:public.example\nX-B: 2\n\n",
			"GET /a HTTP/1.1\nHost: local:8080\nX-B: 2\n\n"},
		{"first line", "l",
			"GET /a HTTP/1.1\r\nHost: a-much-longer-public-host.example\r\n\r\n",
			"GET /a HTTP/1.1\r\nHost: l\r\n\r\n"},
		{"added", "local:8080",
			"GET /b HTTP/1.1\r\nX-A: 1\r\n\r\n",
			"GET /b HTTP/1.1\r\nHost: local:8080\r\nX-A: 1\r\n\r\n"},
		{"with a body", "local:8080",
			"POST /c HTTP/1.1\r\nHost: public.example\r\nContent-Length: 5\r\n\r\nhello",
			"POST /c HTTP/1.1\r\nHost: local:8080\r\nContent-Length: 5\r\n\r\nhello"},
		{"kept", "",
			"GET /d HTTP/1.1\r\nHost: public.example\r\nX-A: 1\r\n\r\n",
			"GET /d HTTP/1.1\r\nHost: public.example\r\nX-A: 1\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			heads := make(chan string, 4)
			r, _ := newRawUpstream(t, false, recordHeads(heads))
			r.Host = tc.host
			c := serveConn(t, r, nil)
			// The same request twice, after a longer one.
			long := "GET /" + strings.Repeat("l", 300) + " HTTP/1.1\r\nHost: public.example\r\n\r\n"
			for i, req := range []string{long, tc.request, tc.request} {
				c.roundTrip(t, req)
				got := <-heads
				if i > 0 && got != tc.want {
					t.Errorf("request %d: upstream got %q, want %q", i, got, tc.want)
				}
			}
		})
	}
}

// recordHeads is an upstream that sends each request it reads, head and
// body as they came, to heads, and answers 204.
func recordHeads(heads chan<- string) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, br *bufio.Reader) {
		for {
			head, err := readHeadRaw(br)
			if err != nil {
				return
			}
			n := 0
			for line := range strings.SplitSeq(head, "\n") {
				if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
					n, _ = strconv.Atoi(strings.TrimSpace(v))
				}
			}
			body := make([]byte, n)
			io.ReadFull(br, body)
			heads <- head + string(body)
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	}
}
