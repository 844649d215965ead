package websocket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// acceptServer serves handle on every accepted connection, offering the
// "echo" subprotocol.
func acceptServer(t *testing.T, handle func(*Conn)) string {
	t.Helper()
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Node", "n1")
		c, err := Accept(w, r, []string{"echo"})
		if err != nil {
			var ue *UpgradeError
			if errors.As(err, &ue) {
				http.Error(w, ue.Reason, ue.Status)
			}
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer c.CloseNow()
		handle(c)
	}))
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return srv.URL
}

// echo answers every message with itself.
func echo(c *Conn) {
	for {
		op, msg, err := c.ReadMessage(16 << 20)
		if err != nil {
			return
		}
		if err := c.WriteMessage(op, msg); err != nil {
			return
		}
	}
}

// TestAcceptEchoes runs the server against a raw client, which masks
// frames and checks the server's with a loop of its own: masked frames in,
// unmasked frames out, of every length class and on both the joined and
// the vectored write path, the subprotocol and headers set before Accept
// in the answer, and the client's ping answered.
func TestAcceptEchoes(t *testing.T) {
	url := acceptServer(t, echo)
	conn, br, resp := rawUpgrade(t, url, nil, "other", "echo")
	if p := resp.Header.Values("Sec-Websocket-Protocol"); len(p) != 1 || p[0] != "echo" {
		t.Fatalf("subprotocols selected %q, want echo", p)
	}
	if resp.Header.Get("X-Node") != "n1" {
		t.Errorf("header set before Accept not sent: %v", resp.Header)
	}
	peer := newRawPeer(t, conn, br, true)
	for _, size := range []int{0, 1, 125, 126, smallFrame, smallFrame + 1, 65535, 65536, 3*writeChunk + 5} {
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(i*31 + i>>9)
		}
		op := byte(OpBinary)
		if size%2 == 1 {
			op = OpText
			msg = bytes.Repeat([]byte("x"), size)
		}
		peer.send(send(wsFrame{op: op, fin: true, payload: msg}))
		f, ok := peer.next()
		if !ok || f.op != op || !bytes.Equal(f.payload, msg) {
			t.Fatalf("size %d: got %s (%v), want the echo", size, describe(f), peer.end)
		}
	}
	peer.send(send(ping("after the echoes")))
	if f, ok := peer.next(); !ok || f.op != OpPong || string(f.payload) != "after the echoes" {
		t.Fatalf("got %s (%v), want the pong", describe(f), peer.end)
	}
}

func TestAcceptWithoutCommonSubprotocol(t *testing.T) {
	got := make(chan string, 1)
	url := acceptServer(t, func(c *Conn) { got <- c.Subprotocol() })
	c := dial(t, url, "other")
	if p := <-got; p != "" || c.Subprotocol() != "" {
		t.Fatalf("server selected %q, client saw %q; want none", p, c.Subprotocol())
	}
}

// TestStreamUnmasksAcrossReads reads masked messages through the server's
// stream with buffers of odd sizes, so that reads end at every phase of the
// masking key and inside frames.
func TestStreamUnmasksAcrossReads(t *testing.T) {
	sums := make(chan [32]byte, 1) // closed without a sum if the read fails
	const total = 4 << 20
	url := acceptServer(t, func(c *Conn) {
		defer close(sums)
		h := sha256.New()
		s := c.NetConn()
		buf := make([]byte, 4093)
		n := 0
		for i := 0; n < total; i++ {
			m, err := s.Read(buf[:1+i%len(buf)])
			if err != nil {
				t.Error(err)
				return
			}
			h.Write(buf[:m])
			n += m
		}
		sums <- [32]byte(h.Sum(nil))
	})
	conn, br, _ := rawUpgrade(t, url, nil)
	data := sendRandom(newRawPeer(t, conn, br, true), 1, total, 300_000)
	if got, ok := <-sums; !ok || got != sha256.Sum256(data) {
		t.Fatalf("the server read different bytes (read to the end: %v)", ok)
	}
}

// sendRandom sends total random bytes (from seed) in binary messages of
// random sizes up to maxMessage, each with a key of its own, and returns
// them.
func sendRandom(p *rawPeer, seed uint64, total, maxMessage int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	data := make([]byte, total)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(maxMessage))
		p.send(send(wsFrame{op: OpBinary, fin: true, payload: rest[:n]}))
		rest = rest[n:]
	}
	return data
}

// TestStreamBothWays runs the two ends of this package against each other:
// frames of several parts, large and small, each way at once.
func TestStreamBothWays(t *testing.T) {
	const total = 8 << 20
	data := make([]byte, total)
	fill := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(fill.Uint32())
	}
	// send writes data in frames of two parts and random sizes; each
	// sender has its own source of sizes.
	send := func(s *Stream, seed uint64) error {
		rng := rand.New(rand.NewPCG(seed, 0))
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(1<<20))
			k := n / 3
			if err := s.WriteParts([][]byte{rest[:k], rest[k:n]}); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return nil
	}
	check := func(r io.Reader) error {
		h := sha256.New()
		if _, err := io.CopyN(h, r, total); err != nil {
			return err
		}
		if [32]byte(h.Sum(nil)) != sha256.Sum256(data) {
			return errors.New("bytes differ")
		}
		return nil
	}
	serverDone := make(chan error, 2)
	url := acceptServer(t, func(c *Conn) {
		s := c.NetConn().(*Stream)
		sent := make(chan error, 1)
		go func() { sent <- send(s, 1) }()
		serverDone <- check(s)
		// The connection closes when this returns: not before the data
		// has gone out.
		serverDone <- <-sent
	})
	c := dial(t, url)
	s := c.NetConn().(*Stream)
	clientSent := make(chan error, 1)
	go func() { clientSent <- send(s, 2) }()
	if err := check(s); err != nil {
		t.Fatalf("client read: %v", err)
	}
	for range 2 {
		if err := <-serverDone; err != nil {
			t.Fatalf("server: %v", err)
		}
	}
	if err := <-clientSent; err != nil {
		t.Fatal(err)
	}
}

func TestAcceptRefusals(t *testing.T) {
	var mu sync.Mutex
	var last error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := Accept(w, r, nil)
		mu.Lock()
		last = err
		mu.Unlock()
		var ue *UpgradeError
		if errors.As(err, &ue) {
			w.WriteHeader(ue.Status)
		}
	}))
	defer srv.Close()
	up := http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	with := func(k, v string) http.Header {
		h := up.Clone()
		if v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		method string
		header http.Header
		status int
		resp   string // a header the refusal must carry
	}{
		{"plain GET", "GET", nil, 426, "Upgrade"},
		{"no upgrade token", "GET", with("Upgrade", "h2c"), 426, "Upgrade"},
		{"POST", "POST", up, 405, "Allow"},
		{"version 8", "GET", with("Sec-Websocket-Version", "8"), 426, "Sec-Websocket-Version"},
		{"no key", "GET", with("Sec-Websocket-Key", ""), 400, ""},
		{"short key", "GET", with("Sec-Websocket-Key", "c2hvcnQ="), 400, ""},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL, nil)
		req.Header = tc.header
		if req.Header == nil {
			req.Header = http.Header{}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mu.Lock()
		var ue *UpgradeError
		if !errors.As(last, &ue) || ue.Status != tc.status || resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, err %v; want %d", tc.name, resp.StatusCode, last, tc.status)
		}
		mu.Unlock()
		if tc.resp != "" && resp.Header.Get(tc.resp) == "" {
			t.Errorf("%s: refusal without %s header", tc.name, tc.resp)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

// rawUpgrade opens a TCP connection, sends an upgrade request that offers
// subprotocols followed by extra bytes in the same write, and reads the 101
// response.
func rawUpgrade(t *testing.T, url string, extra []byte, subprotocols ...string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	if len(subprotocols) > 0 {
		req += "Sec-WebSocket-Protocol: " + strings.Join(subprotocols, ", ") + "\r\n"
	}
	req += "\r\n"
	if _, err := conn.Write(append([]byte(req), extra...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("upgrade answer %d %v", resp.StatusCode, resp.Header)
	}
	return conn, br, resp
}

// readFrame reads one unmasked frame (as a server sends them).
func readFrame(t *testing.T, br *bufio.Reader) (byte, []byte) {
	t.Helper()
	var b [2]byte
	if _, err := io.ReadFull(br, b[:]); err != nil {
		t.Fatal(err)
	}
	if b[1]&0x80 != 0 || b[1]&0x7F > 125 {
		t.Fatalf("unexpected frame header % x", b)
	}
	p := make([]byte, b[1]&0x7F)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatal(err)
	}
	return b[0] & 0x0F, p
}

// TestFramesBehindTheRequest sends a masked frame in the same packet as the
// upgrade request: the server must read it from what the HTTP server had
// already buffered.
func TestFramesBehindTheRequest(t *testing.T) {
	url := acceptServer(t, echo)
	frame := []byte{0x81, 0x83, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'y' ^ 3}
	_, br, _ := rawUpgrade(t, url, frame)
	if op, p := readFrame(t, br); op != OpText || string(p) != "hey" {
		t.Fatalf("echo: op %d %q", op, p)
	}
}

// TestUnmaskedClientFrameIsRefused: a server must close with 1002 on an
// unmasked frame (RFC 6455 section 5.1).
func TestUnmaskedClientFrameIsRefused(t *testing.T) {
	errs := make(chan error, 1)
	url := acceptServer(t, func(c *Conn) {
		_, _, err := c.ReadMessage(1 << 10)
		errs <- err
	})
	_, br, _ := rawUpgrade(t, url, []byte{0x81, 0x02, 'h', 'i'})
	op, p := readFrame(t, br)
	if op != OpClose || len(p) < 2 || binary.BigEndian.Uint16(p) != StatusProtocolError {
		t.Fatalf("answer: op %d % x, want close 1002", op, p)
	}
	if err := <-errs; !errors.Is(err, ErrProtocol) {
		t.Fatalf("server read: %v, want ErrProtocol", err)
	}
}

// TestCloseAndDrainDeliversTheLastMessage: a server that refuses a client
// sends a message and a close, and the client reads both, with the close's
// code and reason; CloseAndDrain returns once the client has answered.
func TestCloseAndDrainDeliversTheLastMessage(t *testing.T) {
	done := make(chan error, 1)
	url := acceptServer(t, func(c *Conn) {
		c.WriteMessage(OpText, []byte(`{"type":"error"}`))
		done <- c.CloseAndDrain(StatusPolicyViolation, "go away", 5*time.Second)
	})
	c := dial(t, url)
	op, msg, err := c.ReadMessage(1 << 10)
	if err != nil || op != OpText || string(msg) != `{"type":"error"}` {
		t.Fatalf("message %d %q %v", op, msg, err)
	}
	_, _, err = c.ReadMessage(1 << 10)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != StatusPolicyViolation || ce.Reason != "go away" {
		t.Fatalf("read after the message: %v, want close 1008", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestAcceptWithoutHijack: a ResponseWriter that cannot hand its connection
// over (a recorder here, HTTP/2 in a server) is reported, and left
// unanswered for the caller.
func TestAcceptWithoutHijack(t *testing.T) {
	req := httptest.NewRequest("GET", "/", nil)
	req.Header = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	rec := httptest.NewRecorder()
	if _, err := Accept(rec, req, nil); !errors.Is(err, ErrNotHijackable) {
		t.Fatalf("err %v, want ErrNotHijackable", err)
	}
	if rec.Body.Len() != 0 || rec.Flushed {
		t.Fatalf("Accept answered the request: %d %q", rec.Code, rec.Body)
	}
}

// TestTextMessageInStreamIsUnsupportedData: a binary stream (mux mode)
// that receives a text message closes with 1003, as protocol/spec.md says.
func TestTextMessageInStreamIsUnsupportedData(t *testing.T) {
	errs := make(chan error, 1)
	url := acceptServer(t, func(c *Conn) {
		_, err := c.NetConn().Read(make([]byte, 10))
		errs <- err
	})
	c := dial(t, url)
	if err := c.WriteMessage(OpText, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !errors.Is(err, ErrProtocol) {
		t.Fatalf("stream read: %v, want ErrProtocol", err)
	}
	var ce *CloseError
	if _, _, err := c.ReadMessage(1 << 10); !errors.As(err, &ce) || ce.Code != StatusUnsupportedData {
		t.Fatalf("client read: %v, want close 1003", err)
	}
}

// TestAcceptOverTLS runs the server over TLS, where frames cannot go out in
// one vectored write and are joined instead, a chunk at a time for large
// ones; the client is this package's, so masking and unmasking meet too.
func TestAcceptOverTLS(t *testing.T) {
	var wg sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		if c.vectored {
			t.Error("a TLS connection taken for one that writes vectors")
		}
		wg.Add(1)
		defer wg.Done()
		defer c.CloseNow()
		s := c.NetConn().(*Stream)
		buf := make([]byte, 3*writeChunk+5)
		if _, err := io.ReadFull(s, buf); err != nil {
			t.Error(err)
			return
		}
		// Back as one frame of two parts, over writeChunk.
		if err := s.WriteParts([][]byte{buf[:7], buf[7:]}); err != nil {
			t.Error(err)
		}
		echo(c)
	}))
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	tr := srv.Client().Transport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := Dial(ctx, &http.Client{Transport: tr}, "wss"+strings.TrimPrefix(srv.URL, "https"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })

	big := make([]byte, 3*writeChunk+5)
	for i := range big {
		big[i] = byte(i*13 + i>>10)
	}
	s := c.NetConn().(*Stream)
	if err := s.WriteParts([][]byte{big[:1000], big[1000:]}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(big))
	if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("large frame back over TLS: equal %v, %v", bytes.Equal(got, big), err)
	}
	for _, size := range []int{5, smallFrame + 1, 100_000} {
		msg := big[:size]
		if err := c.WriteMessage(OpBinary, msg); err != nil {
			t.Fatal(err)
		}
		if _, back, err := c.ReadMessage(1 << 20); err != nil || !bytes.Equal(back, msg) {
			t.Fatalf("size %d: equal %v, %v", size, bytes.Equal(back, msg), err)
		}
	}
}

// TestInvalidCloseFramesAreProtocolErrors: a close frame with a code that
// must not be sent (RFC 6455 section 7.4) or a reason that is not UTF-8 is
// answered with 1002, not echoed.
func TestInvalidCloseFramesAreProtocolErrors(t *testing.T) {
	for _, payload := range [][]byte{
		{0x03, 0xED},             // 1005: no status, never on the wire
		{0x03, 0xEE},             // 1006: abnormal closure, never on the wire
		{0x00, 0x05},             // 5: below the defined range
		{0x03, 0xE8, 0xff, 0xfe}, // 1000 with a reason that is not UTF-8
	} {
		errs := make(chan error, 1)
		url := acceptServer(t, func(c *Conn) {
			_, _, err := c.ReadMessage(1 << 10)
			errs <- err
		})
		frame := []byte{0x88, 0x80 | byte(len(payload)), 0, 0, 0, 0}
		_, br, _ := rawUpgrade(t, url, append(frame, payload...))
		op, p := readFrame(t, br)
		if op != OpClose || len(p) < 2 || binary.BigEndian.Uint16(p) != StatusProtocolError {
			t.Fatalf("close % x: answer op %d % x, want close 1002", payload, op, p)
		}
		if err := <-errs; !errors.Is(err, ErrProtocol) {
			t.Fatalf("close % x: server read %v, want ErrProtocol", payload, err)
		}
	}
}

// TestAcceptSelectsNoExtension: the server speaks no extension, so it
// selects none, even one the handler put in the response headers, and a
// frame that would need one (RSV1, compression) fails the connection.
func TestAcceptSelectsNoExtension(t *testing.T) {
	errs := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Sec-WebSocket-Extensions", "permessage-deflate")
		c, err := Accept(w, r, nil)
		if err != nil {
			errs <- err
			return
		}
		defer c.CloseNow()
		_, _, err = c.ReadMessage(1 << 10)
		errs <- err
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || len(resp.Header.Values("Sec-WebSocket-Extensions")) != 0 {
		t.Fatalf("answer %d %v, want 101 without extensions", resp.StatusCode, resp.Header)
	}
	peer := newRawPeer(t, conn, br, true)
	peer.send(send(text("compressed?").withRSV(4)))
	if f, ok := peer.next(); !ok || f.op != OpClose || binary.BigEndian.Uint16(f.payload) != StatusProtocolError {
		t.Fatalf("got %s (%v), want close 1002", describe(f), peer.end)
	}
	if err := <-errs; !errors.Is(err, ErrProtocol) {
		t.Fatalf("server read: %v, want ErrProtocol", err)
	}
}
