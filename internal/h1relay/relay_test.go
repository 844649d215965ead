package h1relay

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

// TestMain fails the run when a test leaves a goroutine behind: a request
// body's copy that no exchange waited for, a splice half still running,
// an idle sweep's timer or an upstream connection nobody closed.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// guard bounds every wait of these tests, so that a relay that hangs
// fails its test instead of the whole run; nothing is timed by it.
const guard = 20 * time.Second

// testBuffers lends the buffers of large copies, as the Forwarder's pool
// does.
type testBuffers struct{ p sync.Pool }

func (b *testBuffers) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *testBuffers) Put(p []byte) { b.p.Put(&p) }

// client is the downstream side of a connection that a Relay serves: a
// raw HTTP/1.1 client, as net/http's output arrives on the agent.
type client struct {
	net.Conn
	br   *bufio.Reader
	done chan error // Serve's result
}

// serveConn serves one loopback connection with r, passing pc to Serve,
// and returns its client end. The test's end closes the client and
// waits for Serve.
func serveConn(t *testing.T, r *Relay, pc PeerCloser) *client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, r, pc, cc, sc)
}

// servePipe is serveConn over net.Pipe: a relay that closes the
// connection with a request body unread cannot reset it, as TCP would,
// before the client has read the answer.
func servePipe(t *testing.T, r *Relay, pc PeerCloser) *client {
	t.Helper()
	cc, sc := net.Pipe()
	return serve(t, r, pc, cc, sc)
}

func serve(t *testing.T, r *Relay, pc PeerCloser, cc, sc net.Conn) *client {
	t.Helper()
	cc.SetDeadline(time.Now().Add(guard))
	c := &client{Conn: cc, br: bufio.NewReader(cc), done: make(chan error, 1)}
	go func() { c.done <- r.Serve(sc, pc) }()
	t.Cleanup(func() {
		cc.Close()
		c.wait(t)
	})
	return c
}

// wait returns Serve's result, failing the test if it does not return.
func (c *client) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err // for the next wait
		return err
	case <-time.After(guard):
		t.Fatal("Serve did not return")
		return nil
	}
}

// roundTrip writes a raw request and reads its response, body included.
func (c *client) roundTrip(t *testing.T, raw string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write request: %v", err)
	}
	return c.read(t, raw)
}

// read reads the response to the request raw (for its method).
func (c *client) read(t *testing.T, raw string) (*http.Response, string) {
	t.Helper()
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response to %q: %v", method, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %d: %v", resp.StatusCode, err)
	}
	return resp, string(body)
}

// wantEOF checks that the relay closed the client's connection and that
// nothing more came on it.
func (c *client) wantEOF(t *testing.T) {
	t.Helper()
	if b, err := c.br.ReadByte(); err != io.EOF {
		t.Errorf("client connection: read %q, %v; want EOF", b, err)
	}
}

// httpUpstream starts h as the upstream and returns a Relay to it and the
// count of connections it accepted.
func httpUpstream(t *testing.T, h http.Handler) (*Relay, *atomic.Int32) {
	t.Helper()
	var accepted atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			accepted.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return newRelay(t, srv.Listener.Addr().String()), &accepted
}

// newRelay returns a Relay dialing addr over TCP, closed with the test.
func newRelay(t *testing.T, addr string) *Relay {
	r := &Relay{
		Dial: func(ctx context.Context) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		},
		Buffers: &testBuffers{},
	}
	t.Cleanup(r.Close)
	return r
}

// rawUpstream is an upstream written byte by byte, for what net/http
// will not send: it runs serve on each connection it accepts (over TCP,
// or over net.Pipe when pipe is set, whose close the other end sees at
// once).
type rawUpstream struct {
	accepted atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newRawUpstream(t *testing.T, pipe bool, serve func(c net.Conn, br *bufio.Reader)) (*Relay, *rawUpstream) {
	t.Helper()
	u := &rawUpstream{}
	handle := func(c net.Conn) {
		u.accepted.Add(1)
		u.mu.Lock()
		u.conns = append(u.conns, c)
		u.mu.Unlock()
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer c.Close()
			serve(c, bufio.NewReader(c))
		}()
	}
	t.Cleanup(func() {
		u.mu.Lock()
		for _, c := range u.conns {
			c.Close()
		}
		u.mu.Unlock()
		u.wg.Wait()
	})
	r := &Relay{Buffers: &testBuffers{}}
	t.Cleanup(r.Close)
	if pipe {
		r.Dial = func(context.Context) (net.Conn, error) {
			a, b := net.Pipe()
			handle(b)
			return a, nil
		}
		return r, u
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	addr := ln.Addr().String()
	r.Dial = func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, "tcp", addr) }
	return r, u
}

// readHeadRaw reads a message head as it came, through its blank line.
func readHeadRaw(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\r\n" || line == "\n" {
			return b.String(), nil
		}
	}
}

// script answers the requests of a connection in turn with the raw
// responses given, reading each request's body first. After the last it
// closes the connection when closed is nil; otherwise it waits for the
// relay to close it, and then closes closed.
func script(closed chan<- struct{}, responses ...string) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, br *bufio.Reader) {
		for _, resp := range responses {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
		if closed == nil {
			return
		}
		if _, err := br.ReadByte(); err != nil {
			close(closed)
		}
	}
}

// waitClosed waits for ch, failing the test when it is not closed.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(guard):
		t.Fatalf("%s did not happen", what)
	}
}
