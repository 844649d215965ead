package tunnel_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// A public client that stops reading a response is given up on after the
// stall timeout: the gateway ends the response and closes the connection,
// freeing what it held for it, although the agent's handler would write
// forever.
func TestStalledReaderIsCut(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, StallTimeout: 200 * time.Millisecond})
	ln := listen(t, gw)
	stalled := make(chan struct{})
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	u, _ := url.Parse(gw.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /"+ln.ID()+"/endless HTTP/1.1\r\nHost: x\r\n\r\n")
	// Read nothing until the gateway has had time to notice the stall...
	time.AfterFunc(time.Second, func() { close(stalled) })
	<-stalled
	// ... then read: a cut response ends with the connection, where an
	// uncut one would go on for ever.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the response to a client that stopped reading is still going after %d bytes", n)
	}
}

// Keep-alive connections that stay idle past IdleTimeout are closed.
func TestIdlePublicConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, IdleTimeout: 200 * time.Millisecond})
	ln := listen(t, gw)
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	u, _ := url.Parse(gw.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /"+ln.ID()+"/ HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle keep-alive connection: read %v, want EOF when the gateway closes it", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("closed after %v of idleness, want about the 200ms IdleTimeout", d)
	}
}
