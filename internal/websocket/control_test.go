package websocket

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// signalWrites reports on writing that a write has started; it then blocks
// as the connection under it does.
type signalWrites struct {
	net.Conn
	writing chan<- struct{}
}

func (s *signalWrites) Write(p []byte) (int, error) {
	select {
	case s.writing <- struct{}{}:
	default:
	}
	return s.Conn.Write(p)
}

// readResult is what a ReadMessage in another goroutine returned.
type readResult struct {
	op  byte
	msg []byte
	err error
}

func readAsync(c *Conn) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		op, msg, err := c.ReadMessage(1 << 10)
		ch <- readResult{op, msg, err}
	}()
	return ch
}

func waitRead(t *testing.T, ch <-chan readResult, what string) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: ReadMessage did not return", what)
		return readResult{}
	}
}

// pipeServer is a server Conn over one end of a pipe; the other end is the
// client's, unread until the test reads it.
func pipeServer(t *testing.T, wrap func(net.Conn) io.ReadWriteCloser) (*Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	b.SetDeadline(time.Now().Add(10 * time.Second)) // failure only
	var rwc io.ReadWriteCloser = a
	if wrap != nil {
		rwc = wrap(a)
	}
	return newConn(rwc, a, "", true), b
}

// TestReaderDoesNotWaitForABlockedWriter: with a writer blocked on a peer
// that does not read, pings must not stop the reader; the writer answers
// the latest of them once its write is done, and only that one (RFC 6455
// section 5.5.3).
func TestReaderDoesNotWaitForABlockedWriter(t *testing.T) {
	writing := make(chan struct{}, 1)
	c, peerConn := pipeServer(t, func(a net.Conn) io.ReadWriteCloser { return &signalWrites{a, writing} })
	wrote := make(chan error, 1)
	go func() { wrote <- c.WriteMessage(OpBinary, []byte("blocked")) }()
	<-writing // the writer holds the write lock, and the peer reads nothing

	read := readAsync(c)
	peer := &rawPeer{conn: peerConn, client: true, rng: newTestRand()}
	peer.send(send(ping("first"), ping("latest"), text("after the pings")))
	if r := waitRead(t, read, "pings behind a blocked writer"); r.err != nil || string(r.msg) != "after the pings" {
		t.Fatalf("read %q, %v", r.msg, r.err)
	}

	// The peer reads at last: the writer's frame, then one pong.
	frames := newRawPeer(t, peerConn, bufio.NewReader(peerConn), true)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	read = readAsync(c)
	for _, want := range []wsFrame{binMsg("blocked"), pong("latest")} {
		if got, ok := frames.next(); !ok || got.op != want.op || string(got.payload) != string(want.payload) {
			t.Fatalf("got %s (%v), want %s", describe(got), frames.end, describe(want))
		}
	}
	// Nothing more until the close: no pong for the first ping.
	frames.send(send(closeWith(StatusNormalClosure, "")))
	if got, ok := frames.next(); !ok || got.op != OpClose {
		t.Fatalf("got %s (%v), want the close", describe(got), frames.end)
	}
	var ce *CloseError
	if r := waitRead(t, read, "close"); !errors.As(r.err, &ce) {
		t.Fatalf("read after the close: %v", r.err)
	}
}

// TestPingWithoutWriterIsAnswered: with no write in progress the reader
// answers at once.
func TestPingWithoutWriterIsAnswered(t *testing.T) {
	c, peerConn := pipeServer(t, nil)
	peer := newRawPeer(t, peerConn, bufio.NewReader(peerConn), true)
	read := readAsync(c)
	for _, p := range []string{"", "one", string(make([]byte, maxControlPayload))} {
		peer.send(send(ping(p)))
		if got, ok := peer.next(); !ok || got.op != OpPong || string(got.payload) != p {
			t.Fatalf("got %s (%v), want the pong for %q", describe(got), peer.end, p)
		}
	}
	peer.send(send(text("done")))
	if r := waitRead(t, read, "message after pings"); r.err != nil || string(r.msg) != "done" {
		t.Fatalf("read %q, %v", r.msg, r.err)
	}
}

// TestPongToAPeerThatDoesNotReadIsBounded: the reader writes the pong
// itself when no writer holds the lock, and gives up after its bound when
// the peer reads nothing: the connection is then closed.
func TestPongToAPeerThatDoesNotReadIsBounded(t *testing.T) {
	c, peerConn := pipeServer(t, nil)
	c.ctl.timeout = 50 * time.Millisecond
	read := readAsync(c)
	peer := &rawPeer{conn: peerConn, client: true, rng: newTestRand()}
	peer.send(send(ping("nobody reads this")))
	r := waitRead(t, read, "pong to a peer that does not read")
	var ne net.Error
	if !errors.Is(r.err, os.ErrDeadlineExceeded) || !errors.As(r.err, &ne) || !ne.Timeout() {
		t.Fatalf("read: %v, want a timeout", r.err)
	}
	if _, err := io.ReadAll(peerConn); err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
}

// recordWriteDeadlines records the write deadlines set on a connection.
type recordWriteDeadlines struct {
	net.Conn
	mu  sync.Mutex
	set []time.Time
}

func (r *recordWriteDeadlines) SetWriteDeadline(t time.Time) error {
	r.mu.Lock()
	r.set = append(r.set, t)
	r.mu.Unlock()
	return r.Conn.SetWriteDeadline(t)
}

// TestPongRestoresTheWriteDeadline: the bound on the reader's pong must
// not replace the write deadline set through Stream.
func TestPongRestoresTheWriteDeadline(t *testing.T) {
	rec := &recordWriteDeadlines{}
	c, peerConn := pipeServer(t, func(a net.Conn) io.ReadWriteCloser { rec.Conn = a; return rec })
	user := time.Now().Add(time.Hour)
	if err := c.NetConn().SetWriteDeadline(user); err != nil {
		t.Fatal(err)
	}
	peer := newRawPeer(t, peerConn, bufio.NewReader(peerConn), true)
	read := readAsync(c)
	// The second pong shows that the reader is done with the first.
	for _, p := range []string{"1", "2"} {
		peer.send(send(ping(p)))
		if got, ok := peer.next(); !ok || got.op != OpPong {
			t.Fatalf("got %s (%v), want a pong", describe(got), peer.end)
		}
	}
	rec.mu.Lock()
	set := append([]time.Time(nil), rec.set...)
	rec.mu.Unlock()
	if len(set) < 3 || !set[0].Equal(user) || !set[1].Before(user) || !set[2].Equal(user) {
		t.Fatalf("write deadlines set %v, want the user's, the bound, the user's again", set)
	}
	peer.send(send(closeWith(StatusNormalClosure, "")))
	waitRead(t, read, "close")
}
