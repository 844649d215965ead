package websocket

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// dial opens a WebSocket with Dial to url (the http:// URL of a test
// server), offering subprotocols, and closes it when the test ends.
func dial(t *testing.T, url string, subprotocols ...string) *Conn {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := Dial(ctx, &http.Client{Transport: tr}, "ws"+strings.TrimPrefix(url, "http"), nil, subprotocols)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// TestEcho runs the client against this package's server: messages of
// every length class, whole and in frames of MaxFrame bytes, come back
// whole, with the subprotocol the server selected.
func TestEcho(t *testing.T) {
	url := acceptServer(t, echo)
	for _, maxFrame := range []int{0, 32 << 10, 7} {
		c := dial(t, url, "other", "echo")
		if c.Subprotocol() != "echo" {
			t.Fatalf("subprotocol %q", c.Subprotocol())
		}
		c.MaxFrame = maxFrame
		for _, size := range []int{0, 1, 125, 126, 65535, 65536, 200_000} {
			msg := bytes.Repeat([]byte{'a', 'b', 'c'}, size/3+1)[:size]
			op := byte(OpBinary)
			if size%2 == 0 {
				op = OpText
			}
			if size > 1000 && maxFrame == 7 {
				continue // a thousand frames prove nothing more
			}
			if err := c.WriteMessage(op, msg); err != nil {
				t.Fatal(err)
			}
			gotOp, got, err := c.ReadMessage(1 << 20)
			if err != nil || gotOp != op || !bytes.Equal(got, msg) {
				t.Fatalf("maxFrame %d size %d: op %d err %v, equal %v", maxFrame, size, gotOp, err, bytes.Equal(got, msg))
			}
		}
	}
}

// TestMaxFrameFragments: a client with MaxFrame sends a message as frames
// of at most that many bytes, the first with the message's opcode, the
// others continuations, only the last with FIN.
func TestMaxFrameFragments(t *testing.T) {
	c, peer := rawServer(t)
	c.MaxFrame = 7
	msg := []byte("sixteen bytes!!!")
	if err := c.WriteMessage(OpText, msg); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for i, want := range []int{7, 7, 2} {
		f, ok := <-peer.frames
		op := byte(OpContinuation)
		if i == 0 {
			op = OpText
		}
		if !ok || f.op != op || len(f.payload) != want || f.fin != (i == 2) {
			t.Fatalf("frame %d: %s (%v), want %d bytes, op %d", i, describe(f), peer.end, want, op)
		}
		got = append(got, f.payload...)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("fragments %q, want %q", got, msg)
	}
}

// TestTwoPartFramesMaskAcrossTheBoundary: WriteParts sends its parts as
// one frame, masked as one payload; the raw server unmasks with a loop of
// its own.
func TestTwoPartFramesMaskAcrossTheBoundary(t *testing.T) {
	c, peer := rawServer(t)
	// Frames over writeChunk go out in several writes; the key phase must
	// carry over both the part boundary and the write boundaries.
	big := make([]byte, 3*writeChunk+7)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		msg   []byte
		split int
	}{
		{[]byte("0123456789abcdefghijklmnopqrstuvwxyz"), 0},
		{[]byte("0123456789abcdefghijklmnopqrstuvwxyz"), 1},
		{[]byte("0123456789abcdefghijklmnopqrstuvwxyz"), 2},
		{[]byte("0123456789abcdefghijklmnopqrstuvwxyz"), 3},
		{[]byte("0123456789abcdefghijklmnopqrstuvwxyz"), 5},
		{[]byte("0123456789abcdefghijklmnopqrstuvwxyz"), 12},
		{[]byte("0123456789abcdefghijklmnopqrstuvwxyz"), 13},
		{big, 12},
		{big, writeChunk - 3},
		{big, 2*writeChunk + 1},
	} {
		msg, split := tc.msg, tc.split
		if err := c.NetConn().(*Stream).WriteParts([][]byte{msg[:split], msg[split:]}); err != nil {
			t.Fatal(err)
		}
		f, ok := <-peer.frames
		if !ok || f.op != OpBinary || !f.fin || !bytes.Equal(f.payload, msg) {
			t.Fatalf("size %d split %d: got %s (%v), want the parts as one frame", len(msg), split, describe(f), peer.end)
		}
	}
}

func TestStreamFrames(t *testing.T) {
	c, peer := rawServer(t)
	s := c.NetConn()
	hdr := []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5} // data frame, length 5
	if err := s.(*Stream).WriteParts([][]byte{hdr, []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	// The header and body were one frame.
	if f, ok := <-peer.frames; !ok || f.op != OpBinary || !f.fin || !bytes.Equal(f.payload, append(hdr, "hello"...)) {
		t.Fatalf("got %s (%v)", describe(f), peer.end)
	}
	// A Write is a frame of its own.
	wu := []byte{0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9}
	if _, err := s.Write(wu); err != nil {
		t.Fatal(err)
	}
	if f, ok := <-peer.frames; !ok || f.op != OpBinary || !f.fin || !bytes.Equal(f.payload, wu) {
		t.Fatalf("window update: %s (%v)", describe(f), peer.end)
	}
	// Reading the stream crosses message boundaries.
	peer.send(send(binMsg("abc"), binMsg("def")))
	buf := make([]byte, 6)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "abcdef" {
		t.Fatalf("stream read %q %v", buf, err)
	}
}

// TestPingIsAnsweredAndCloseEndsTheStream: the client answers the
// server's ping while it reads, and a going-away close ends its stream
// with io.EOF, the close echoed.
func TestPingIsAnsweredAndCloseEndsTheStream(t *testing.T) {
	c, peer := rawServer(t)
	// The server's ping arrives before its message; ReadMessage answers it.
	peer.send(send(ping("are you there"), text("pinged")))
	if _, got, err := c.ReadMessage(1 << 10); err != nil || string(got) != "pinged" {
		t.Fatalf("got %q %v", got, err)
	}
	if f, ok := peer.next(); !ok || f.op != OpPong || string(f.payload) != "are you there" {
		t.Fatalf("got %s (%v), want the pong", describe(f), peer.end)
	}
	peer.send(send(closeWith(StatusGoingAway, "bye")))
	buf := make([]byte, 10)
	if _, err := c.NetConn().Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the server's going-away close: %v, want EOF", err)
	}
	if f, ok := peer.next(); !ok || f.op != OpClose || len(f.payload) < 2 || binary.BigEndian.Uint16(f.payload) != StatusGoingAway {
		t.Fatalf("got %s (%v), want the close echoed", describe(f), peer.end)
	}
}

// TestReadLimit: a message over ReadMessage's limit fails the read with
// ErrMessageTooBig and closes the connection with 1009.
func TestReadLimit(t *testing.T) {
	serverErr := make(chan error, 1)
	url := acceptServer(t, func(c *Conn) { serverErr <- echoUntilError(c) })
	c := dial(t, url)
	c.WriteMessage(OpText, make([]byte, 2000))
	if _, _, err := c.ReadMessage(1000); !errors.Is(err, ErrMessageTooBig) {
		t.Fatalf("err %v, want ErrMessageTooBig", err)
	}
	var ce *CloseError
	if err := <-serverErr; !errors.As(err, &ce) || ce.Code != StatusMessageTooBig {
		t.Fatalf("the server read %v, want close 1009", err)
	}
}

func TestDialRefusals(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/nope" {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		// Claims an upgrade with a wrong accept key.
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Sec-WebSocket-Accept", "wrong")
		w.WriteHeader(http.StatusSwitchingProtocols)
	}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	ws := "ws" + strings.TrimPrefix(srv.URL, "http")

	_, resp, err := Dial(context.Background(), client, ws+"/nope", nil, nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("401: %v %v", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "unauthorized") {
		t.Errorf("body %q", body)
	}
	if _, _, err := Dial(context.Background(), client, ws+"/badkey", nil, nil); err == nil {
		t.Fatal("bad accept key accepted")
	}
	if _, _, err := Dial(context.Background(), client, "ftp://x", nil, nil); err == nil {
		t.Fatal("ftp scheme accepted")
	}
}

func TestMaskCopy(t *testing.T) {
	key := uint32(0x8c04b201)
	src := make([]byte, 70000)
	for i := range src {
		src[i] = byte(i*13 + i>>8)
	}
	dst := make([]byte, len(src)+16)
	// Every length around the vector loop's 64-byte blocks, a large one,
	// and misaligned source and destination.
	lengths := []int{65536 + 67}
	for n := range 300 {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		for _, off := range []int{0, 1, 3, 7} {
			in, out := src[off:off+n], dst[off+2:off+2+n]
			maskCopy(out, in, key)
			for i := range in {
				if want := in[i] ^ byte(key>>(8*(i%4))); out[i] != want {
					t.Fatalf("length %d offset %d byte %d: %#x, want %#x", n, off, i, out[i], want)
				}
			}
			// In place, as the server unmasks: masking twice restores.
			maskCopy(out, out, key)
			if !bytes.Equal(out, in) {
				t.Fatalf("length %d offset %d: unmasking in place did not restore the input", n, off)
			}
		}
	}
}

func BenchmarkMaskCopy(b *testing.B) {
	// The agent masks a 16 MiB body a 256 KiB chunk at a time.
	src := make([]byte, 16<<20)
	dst := make([]byte, writeChunk)
	b.SetBytes(writeChunk)
	off := 0
	for b.Loop() {
		maskCopy(dst, src[off:off+writeChunk], 0x12345678)
		off = (off + writeChunk) % len(src)
	}
}

// readOnly is a peer's stream made of fixed bytes, for the fuzzer.
type readOnly struct{ io.Reader }

func (readOnly) Write(p []byte) (int, error) { return len(p), nil }
func (readOnly) Close() error                { return nil }

func FuzzReadFrames(f *testing.F) {
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{0x02, 0x01, 'a', 0x80, 0x01, 'b'})
	f.Add([]byte{0x89, 0x00, 0x82, 0x7E, 0x00, 0x01, 'x'})
	f.Add([]byte{0x88, 0x02, 0x03, 0xE8})
	f.Add([]byte{0x82, 0x7F, 0xFF, 0, 0, 0, 0, 0, 0, 1})
	// Masked frames, as a server reads them.
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1})
	f.Add([]byte{0x89, 0x80, 9, 9, 9, 9, 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, server := range []bool{false, true} {
			rw := readOnly{bytes.NewReader(data)}
			c := newConn(rw, rw, "", server)
			for i := 0; i < 64; i++ {
				if _, msg, err := c.ReadMessage(1 << 16); err != nil {
					break
				} else if len(msg) > 1<<16 {
					t.Fatalf("message of %d bytes over the limit", len(msg))
				}
			}
			rw2 := readOnly{bytes.NewReader(data)}
			c2 := newConn(rw2, rw2, "", server)
			io.Copy(io.Discard, io.LimitReader(c2.NetConn(), 1<<20))
		}
	})
}

// TestCloseReasonIsCutAtARuneBoundary: a reason too long for a close frame
// is cut so that it stays UTF-8, which the peer checks (this package's
// own client included: it used to fail the connection instead).
func TestCloseReasonIsCutAtARuneBoundary(t *testing.T) {
	for _, tc := range []struct{ reason, sent string }{
		{strings.Repeat("x", 123), strings.Repeat("x", 123)},
		{strings.Repeat("x", 124), strings.Repeat("x", 123)},
		{strings.Repeat("é", 70), strings.Repeat("é", 61)}, // byte 123 inside a rune
		{strings.Repeat("€", 50), strings.Repeat("€", 41)}, // byte 123 starts one
		{"a" + strings.Repeat("😀", 40), "a" + strings.Repeat("😀", 30)},
		{"bad \xff reason", "bad \uFFFD reason"},
	} {
		c, peerConn := pipeServer(t, nil)
		peer := newRawPeer(t, peerConn, bufio.NewReader(peerConn), true)
		c.Close(StatusGoingAway, tc.reason, 0)
		f, ok := peer.next()
		if !ok || f.op != OpClose || len(f.payload) > maxControlPayload || binary.BigEndian.Uint16(f.payload) != StatusGoingAway {
			t.Fatalf("reason %q: got %s (%v)", tc.reason, describe(f), peer.end)
		}
		if got := string(f.payload[2:]); got != tc.sent {
			t.Errorf("reason %q: sent %q, want %q", tc.reason, got, tc.sent)
		}
	}

	// End to end: the client sees the server's close, not a broken frame.
	url := acceptServer(t, func(c *Conn) { c.CloseAndDrain(StatusGoingAway, strings.Repeat("é", 70), 5*time.Second) })
	c := dial(t, url)
	var ce *CloseError
	if _, _, err := c.ReadMessage(1 << 10); !errors.As(err, &ce) || ce.Code != StatusGoingAway || ce.Reason != strings.Repeat("é", 61) {
		t.Fatalf("client read: %v, want the server's close", err)
	}
}

// TestDialRefusesWhatItDidNotOffer: a client that offers no extension must
// fail a handshake whose answer selects one, and likewise a subprotocol it
// did not offer (RFC 6455 section 4.1).
func TestDialRefusesWhatItDidNotOffer(t *testing.T) {
	offered := make(chan []string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		offered <- r.Header.Values("Sec-WebSocket-Extensions")
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n", acceptKey(r.Header.Get("Sec-WebSocket-Key")))
		for _, h := range r.URL.Query()["answer"] {
			brw.WriteString(h + "\r\n")
		}
		brw.WriteString("\r\n")
		brw.Flush()
	}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	for _, tc := range []struct {
		name   string
		answer []string
		ok     bool
	}{
		{"nothing selected", nil, true},
		{"the offered subprotocol", []string{"Sec-WebSocket-Protocol: echo"}, true},
		{"an extension", []string{"Sec-WebSocket-Extensions: permessage-deflate"}, false},
		{"an empty extension list", []string{"Sec-WebSocket-Extensions: x", "Sec-WebSocket-Extensions: "}, false},
		{"a subprotocol not offered", []string{"Sec-WebSocket-Protocol: other"}, false},
		{"two subprotocols", []string{"Sec-WebSocket-Protocol: echo", "Sec-WebSocket-Protocol: echo"}, false},
	} {
		q := url.Values{"answer": tc.answer}
		// The caller's header offers compression; Dial must not send it.
		hdr := http.Header{"Sec-WebSocket-Extensions": {"permessage-deflate"}}
		c, _, err := Dial(context.Background(), &http.Client{Transport: tr}, "ws"+strings.TrimPrefix(srv.URL, "http")+"/?"+q.Encode(), hdr, []string{"echo"})
		if ext := <-offered; len(ext) != 0 {
			t.Errorf("%s: the client offered %q", tc.name, ext)
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: Dial: %v, want ok %v", tc.name, err, tc.ok)
		}
		if c != nil {
			c.CloseNow()
		}
	}
}

// FuzzCheckUTF8 cuts text into fragments at arbitrary points, as a peer
// may: the fragments are accepted exactly when the whole is valid UTF-8,
// and a fragment of valid text is never refused early.
func FuzzCheckUTF8(f *testing.F) {
	f.Add([]byte("héllo wörld €😀"), uint64(0x0102030405))
	f.Add([]byte(invalidAt12), uint64(7))
	f.Add([]byte(utf8Part1+utf8Part2+utf8Part3), uint64(12))
	f.Add([]byte("\xf4\x8f\xbf\xbf\xed\x9f\xbf"), uint64(1))
	f.Fuzz(func(t *testing.T, data []byte, cuts uint64) {
		var msg []byte
		checked := 0
		for rest := data; ; {
			n := len(rest)
			if cuts > 0 {
				n = min(n, int(cuts%7))
				cuts /= 7
			}
			msg, rest = append(msg, rest[:n]...), rest[n:]
			final := len(rest) == 0
			var ok bool
			if checked, ok = checkUTF8(msg, checked, final); !ok {
				if utf8.Valid(data) {
					t.Fatalf("valid % x refused after % x", data, msg)
				}
				return
			}
			if final {
				if !utf8.Valid(data) {
					t.Fatalf("invalid % x accepted", data)
				}
				return
			}
		}
	})
}

// A data frame over MaxReadFrame fails the connection with 1009, as API
// Gateway's 32 KiB frame limit does; frames up to it are read.
func TestMaxReadFrame(t *testing.T) {
	t.Parallel()
	client, server := pipeConns(t)
	server.MaxReadFrame = 16
	go func() {
		client.WriteMessage(OpBinary, []byte("sixteen bytes!!!"))
		client.WriteMessage(OpBinary, []byte("seventeen bytes!!"))
	}()
	if _, msg, err := server.ReadMessage(1 << 10); err != nil || len(msg) != 16 {
		t.Fatalf("a frame of the limit: %q, %v", msg, err)
	}
	// net.Pipe has no buffer: the server's close frame waits for the
	// client's read.
	serverErr := make(chan error, 1)
	go func() {
		_, _, err := server.ReadMessage(1 << 10)
		serverErr <- err
	}()
	var ce *CloseError
	if _, _, err := client.ReadMessage(1 << 10); !errors.As(err, &ce) || ce.Code != StatusMessageTooBig {
		t.Fatalf("the peer got %v, want close 1009", err)
	}
	if err := <-serverErr; !errors.Is(err, ErrFrameTooBig) {
		t.Fatalf("a frame over the limit: %v, want ErrFrameTooBig", err)
	}
}

// pipeConns returns the two ends of a WebSocket over net.Pipe, closed when
// the test ends.
func pipeConns(t *testing.T) (client, server *Conn) {
	t.Helper()
	a, b := net.Pipe()
	client, server = newConn(a, a, "", false), newConn(b, b, "", true)
	t.Cleanup(func() {
		client.CloseNow()
		server.CloseNow()
	})
	return client, server
}
