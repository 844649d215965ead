package websocket

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// wantTimeout fails unless err is a deadline's: a net.Error whose Timeout
// is true, wrapping os.ErrDeadlineExceeded.
func wantTimeout(t *testing.T, what string, err error) {
	t.Helper()
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: %v, want a timeout", what, err)
	}
}

// streamPair returns the two ends of a WebSocket over loopback TCP, both
// this package's: the server's stream (Accept) and the client's (Dial).
func streamPair(t *testing.T) (server, client *Stream) {
	t.Helper()
	conns := make(chan *Conn, 1)
	release := make(chan struct{})
	url := acceptServer(t, func(c *Conn) {
		conns <- c
		<-release
	})
	t.Cleanup(func() { close(release) })
	c := dial(t, url)
	return (<-conns).NetConn().(*Stream), c.NetConn().(*Stream)
}

// TestStreamReadDeadline: a read blocked in the WebSocket layer ends at the
// deadline, on both ends, and reading goes on once the deadline is moved.
func TestStreamReadDeadline(t *testing.T) {
	server, client := streamPair(t)
	for _, tc := range []struct {
		name     string
		from, to *Stream
	}{{"server", client, server}, {"client", server, client}} {
		if err := tc.to.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		buf := make([]byte, 16)
		_, err := tc.to.Read(buf)
		wantTimeout(t, tc.name+" read", err)
		tc.to.SetReadDeadline(time.Time{})
		if _, err := tc.from.Write([]byte("after")); err != nil {
			t.Fatal(err)
		}
		if n, err := io.ReadFull(tc.to, buf[:5]); err != nil || string(buf[:n]) != "after" {
			t.Fatalf("%s: read after the deadline moved: %q, %v", tc.name, buf[:n], err)
		}
	}
}

// TestStreamWriteDeadline: a write blocked on a peer that does not read
// ends at the deadline, on both ends; the connection then writes no more.
func TestStreamWriteDeadline(t *testing.T) {
	server, client := streamPair(t)
	chunk := make([]byte, 1<<20)
	for _, tc := range []struct {
		name string
		s    *Stream
	}{{"server", server}, {"client", client}} {
		if err := tc.s.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var err error
		for i := 0; err == nil && i < 1024; i++ {
			_, err = tc.s.Write(chunk)
		}
		wantTimeout(t, tc.name+" write", err)
		tc.s.SetWriteDeadline(time.Time{})
		// The peer may be inside a frame cut short: nothing may follow.
		if _, again := tc.s.Write([]byte("x")); again != err {
			t.Fatalf("%s: write after the timeout: %v, want %v again", tc.name, again, err)
		}
	}
}

// TestStreamSetDeadline sets both deadlines at once.
func TestStreamSetDeadline(t *testing.T) {
	server, client := streamPair(t)
	for _, s := range []*Stream{server, client} {
		if err := s.SetDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		_, err := s.Read(make([]byte, 1))
		wantTimeout(t, "read", err)
		_, err = s.Write([]byte("x"))
		wantTimeout(t, "write", err)
	}
}

// TestDeadlinesUnsupported: a connection without deadlines says so instead
// of pretending.
func TestDeadlinesUnsupported(t *testing.T) {
	rw := readOnly{strings.NewReader("")}
	s := newConn(rw, rw, "", false).NetConn()
	for name, set := range map[string]func(time.Time) error{
		"SetDeadline": s.SetDeadline, "SetReadDeadline": s.SetReadDeadline, "SetWriteDeadline": s.SetWriteDeadline,
	} {
		if err := set(time.Now()); !errors.Is(err, ErrDeadlineUnsupported) {
			t.Errorf("%s: %v, want ErrDeadlineUnsupported", name, err)
		}
	}
}

// stallingReader returns data in two parts with a deadline's error between
// them, as a connection does when a deadline passes mid-frame.
type stallingReader struct {
	parts [][]byte
	stall bool // the next read fails at the deadline
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if r.stall {
		r.stall = false
		return 0, os.ErrDeadlineExceeded
	}
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.parts[0])
	if r.parts[0] = r.parts[0][n:]; len(r.parts[0]) == 0 {
		r.parts = r.parts[1:]
		r.stall = len(r.parts) > 0
	}
	return n, nil
}

// recordWrites takes every write, for the pongs sent.
type recordWrites struct{ bytes.Buffer }

func (*recordWrites) Close() error { return nil }

// TestReadResumesAfterADeadline stops the stream at every byte of a ping
// and of data frames around it: a read that fails at the deadline must
// lose nothing, so that the next read goes on where it stopped, through
// Stream.Read and through ReadMessage.
func TestReadResumesAfterADeadline(t *testing.T) {
	peer := &rawPeer{client: true, rng: newTestRand()}
	var wire []byte
	for _, f := range []wsFrame{
		binMsg(strings.Repeat("a", 130)).more(), ping("pi"), cont("bc"),
		text("hé").more(), cont("llo"),
	} {
		b, _ := peer.encode(f)
		wire = append(wire, b...)
	}
	pongLen := 4 // an unmasked pong with "pi"
	for cut := 1; cut < len(wire); cut++ {
		r := &stallingReader{parts: [][]byte{wire[:cut:cut], wire[cut:]}}
		w := &recordWrites{}
		c := newConn(w, r, "", true)
		timeouts := 0
		var got []byte
		buf := make([]byte, 7)
		for len(got) < 132 {
			n, err := c.NetConn().Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				wantTimeout(t, "stream read", err)
				timeouts++
			}
		}
		var msg []byte
		for msg == nil {
			op, m, err := c.ReadMessage(1 << 10)
			if err != nil {
				wantTimeout(t, "ReadMessage", err)
				timeouts++
				continue
			}
			if op != OpText {
				t.Fatalf("cut %d: opcode %d", cut, op)
			}
			msg = m
		}
		if string(got) != strings.Repeat("a", 130)+"bc" || string(msg) != "héllo" || timeouts != 1 {
			t.Fatalf("cut %d: read %q and %q with %d timeouts", cut, got, msg, timeouts)
		}
		if w.Len() != pongLen || !bytes.HasSuffix(w.Bytes(), []byte("pi")) {
			t.Fatalf("cut %d: wrote % x, want one pong", cut, w.Bytes())
		}
	}
}
