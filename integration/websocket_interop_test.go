package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coderws "github.com/coder/websocket"

	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// The tunnel's WebSocket (internal/websocket: Dial for the agent, Accept
// for the gateway) against coder/websocket, another implementation: each
// of ours meets the other one's opposite end, and a WebSocket app built on
// coder/websocket works through a tunnel. The package's own tests run its
// two ends against each other and against raw frames; these show that
// what they agree on is RFC 6455 and not a shared mistake.

// testContext bounds a test's WebSocket calls.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wsServer serves h on loopback and returns its http:// URL. The handlers
// of hijacked connections, which the httptest server does not track, are
// waited for when the test ends.
func wsServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		h(w, r)
	}))
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return srv.URL
}

func wsURL(url string) string { return "ws" + strings.TrimPrefix(url, "http") }

// coderEcho is a WebSocket app on coder/websocket: it echoes messages, and
// on "ping me" pings the client and reports the outcome, on "close me"
// closes with StatusGoingAway and "bye".
func coderEcho(opts *coderws.AcceptOptions) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := coderws.Accept(w, r, opts)
		if err != nil {
			return
		}
		var pings sync.WaitGroup
		defer pings.Wait()
		defer c.CloseNow()
		c.SetReadLimit(16 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			switch string(msg) {
			case "ping me":
				// The pong is read by this loop, so ping from another
				// goroutine.
				pings.Go(func() {
					ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
					defer cancel()
					outcome := "ok"
					if err := c.Ping(ctx); err != nil {
						outcome = err.Error()
					}
					c.Write(ctx, coderws.MessageText, []byte("pinged: "+outcome))
				})
			case "close me":
				c.Close(coderws.StatusGoingAway, "bye")
				return
			default:
				if err := c.Write(r.Context(), typ, msg); err != nil {
					return
				}
			}
		}
	}
}

// dialOurs opens a WebSocket to url with this module's Dial, offering
// subprotocols, and closes it when the test ends.
func dialOurs(t *testing.T, url string, subprotocols ...string) *websocket.Conn {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, _, err := websocket.Dial(testContext(t), &http.Client{Transport: tr}, wsURL(url), nil, subprotocols)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// acceptOurs serves handle on every connection this module's Accept takes,
// offering the "echo" subprotocol, with a header set before Accept.
func acceptOurs(t *testing.T, handle func(*websocket.Conn)) string {
	t.Helper()
	return wsServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Node", "n1")
		c, err := websocket.Accept(w, r, []string{"echo"})
		if err != nil {
			var ue *websocket.UpgradeError
			if errors.As(err, &ue) {
				http.Error(w, ue.Reason, ue.Status)
			}
			return
		}
		defer c.CloseNow()
		handle(c)
	})
}

// echoOurs answers every message with itself.
func echoOurs(c *websocket.Conn) {
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

// dialCoder opens a WebSocket to url with coder/websocket, offering
// subprotocols, and closes it when the test ends.
func dialCoder(t *testing.T, url string, subprotocols ...string) (*coderws.Conn, *http.Response) {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, resp, err := coderws.Dial(testContext(t), wsURL(url), &coderws.DialOptions{
		Subprotocols: subprotocols, HTTPClient: &http.Client{Transport: tr},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(16 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c, resp
}

// TestInteropDialAgainstCoderServer runs the agent's client against
// coder/websocket's server.
func TestInteropDialAgainstCoderServer(t *testing.T) {
	t.Parallel()
	url := wsServer(t, coderEcho(&coderws.AcceptOptions{Subprotocols: []string{"echo"}}))

	// Messages of every length class, whole and fragmented at MaxFrame,
	// come back whole; the server selects the subprotocol offered.
	t.Run("echo", func(t *testing.T) {
		for _, maxFrame := range []int{0, 32 << 10, 7} {
			c := dialOurs(t, url, "other", "echo")
			if c.Subprotocol() != "echo" {
				t.Fatalf("subprotocol %q", c.Subprotocol())
			}
			c.MaxFrame = maxFrame
			for _, size := range []int{0, 1, 125, 126, 65535, 65536, 200_000} {
				if size > 1000 && maxFrame == 7 {
					continue // a thousand frames prove nothing more
				}
				msg := bytes.Repeat([]byte{'a', 'b', 'c'}, size/3+1)[:size]
				op := byte(websocket.OpBinary)
				if size%2 == 0 {
					op = websocket.OpText
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
	})

	// A frame written in two parts is masked as one payload, across the
	// parts and across the writes of a frame over 256 KiB.
	t.Run("two-part frames", func(t *testing.T) {
		c := dialOurs(t, url)
		big := make([]byte, 3<<18+7)
		for i := range big {
			big[i] = byte(i * 7)
		}
		small := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
		for _, tc := range []struct {
			msg   []byte
			split int
		}{{small, 0}, {small, 1}, {small, 2}, {small, 3}, {small, 5}, {small, 13}, {big, 12}, {big, 1<<18 - 3}, {big, 2<<18 + 1}} {
			if err := c.NetConn().(*websocket.Stream).WriteParts([][]byte{tc.msg[:tc.split], tc.msg[tc.split:]}); err != nil {
				t.Fatal(err)
			}
			if _, got, err := c.ReadMessage(1 << 20); err != nil || !bytes.Equal(got, tc.msg) {
				t.Fatalf("size %d split %d: %d bytes back, %v", len(tc.msg), tc.split, len(got), err)
			}
		}
	})

	// The client answers the server's ping while it reads; the server's
	// going-away close ends the client's stream with io.EOF.
	t.Run("ping and close", func(t *testing.T) {
		c := dialOurs(t, url)
		if err := c.WriteMessage(websocket.OpText, []byte("ping me")); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.ReadMessage(1 << 10); err != nil || string(got) != "pinged: ok" {
			t.Fatalf("got %q %v", got, err)
		}
		if err := c.WriteMessage(websocket.OpText, []byte("close me")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.NetConn().Read(make([]byte, 10)); !errors.Is(err, io.EOF) {
			t.Fatalf("read after the server's going-away close: %v, want EOF", err)
		}
	})
}

// TestInteropAcceptEchoesCoderClient runs the gateway's server against
// coder/websocket's client: masked frames in, unmasked frames out, of every
// length class and on both the joined and the vectored write path.
func TestInteropAcceptEchoesCoderClient(t *testing.T) {
	t.Parallel()
	url := acceptOurs(t, echoOurs)
	c, resp := dialCoder(t, url, "other", "echo")
	if c.Subprotocol() != "echo" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	if resp.Header.Get("X-Node") != "n1" {
		t.Errorf("header set before Accept not sent: %v", resp.Header)
	}
	ctx := testContext(t)
	// 16 KiB is where the server stops joining a frame's parts and, on
	// TCP, writes them vectored.
	for _, size := range []int{0, 1, 125, 126, 16 << 10, 16<<10 + 1, 65535, 65536, 3<<18 + 5} {
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(i*31 + i>>9)
		}
		typ := coderws.MessageBinary
		if size%2 == 1 {
			typ = coderws.MessageText
			msg = bytes.Repeat([]byte("x"), size)
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			t.Fatal(err)
		}
		gotTyp, got, err := c.Read(ctx)
		if err != nil || gotTyp != typ || !bytes.Equal(got, msg) {
			t.Fatalf("size %d: type %v err %v, equal %v", size, gotTyp, err, bytes.Equal(got, msg))
		}
	}
	// The server answers the client's ping. coder/websocket sees the
	// pong only while a read runs; that read ends when the test does.
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		c.Read(ctx)
	}()
	t.Cleanup(func() { c.CloseNow(); <-readDone })
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

// TestInteropAcceptWithoutCommonSubprotocol: with no subprotocol in
// common, the server selects none and coder/websocket's client accepts
// that.
func TestInteropAcceptWithoutCommonSubprotocol(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	url := acceptOurs(t, func(c *websocket.Conn) { got <- c.Subprotocol() })
	c, _ := dialCoder(t, url, "other")
	if p := <-got; p != "" || c.Subprotocol() != "" {
		t.Fatalf("server selected %q, client saw %q; want none", p, c.Subprotocol())
	}
}

// TestInteropAcceptRefusesCoderClient: the gateway's ways of refusing an
// agent reach a client of another implementation with their status.
func TestInteropAcceptRefusesCoderClient(t *testing.T) {
	t.Parallel()

	// A last message, then a close with code and reason; CloseAndDrain
	// returns once the client has answered.
	t.Run("close and drain", func(t *testing.T) {
		t.Parallel()
		done := make(chan error, 1)
		url := acceptOurs(t, func(c *websocket.Conn) {
			c.WriteMessage(websocket.OpText, []byte(`{"type":"error"}`))
			done <- c.CloseAndDrain(websocket.StatusPolicyViolation, "go away", 5*time.Second)
		})
		c, _ := dialCoder(t, url)
		ctx := testContext(t)
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != `{"type":"error"}` {
			t.Fatalf("message %q %v", msg, err)
		}
		_, _, err := c.Read(ctx)
		var ce coderws.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "go away" {
			t.Fatalf("read after the message: %v, want close 1008", err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})

	// A text message where the stream takes binary ones is unsupported
	// data: close 1003.
	t.Run("text in a stream", func(t *testing.T) {
		t.Parallel()
		errs := make(chan error, 1)
		url := acceptOurs(t, func(c *websocket.Conn) {
			_, err := c.NetConn().Read(make([]byte, 10))
			errs <- err
		})
		c, _ := dialCoder(t, url)
		ctx := testContext(t)
		if err := c.Write(ctx, coderws.MessageText, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		if err := <-errs; !errors.Is(err, websocket.ErrProtocol) {
			t.Fatalf("stream read: %v, want ErrProtocol", err)
		}
		if _, _, err := c.Read(ctx); coderws.CloseStatus(err) != websocket.StatusUnsupportedData {
			t.Fatalf("client read: %v, want close 1003", err)
		}
	})
}

// bulk is what each end of TestInteropBulkBothWays sends.
var bulk = sync.OnceValue(func() []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	return data
})

// sendStream sends data through one of this module's streams as frames of
// two parts and random sizes up to 1 MiB, as a yamux session writes them.
func sendStream(s *websocket.Stream, data []byte, seed uint64) error {
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

// checkStream reads len(want) bytes from one of this module's streams with
// buffers of odd sizes, so that reads end at every phase of a masking key
// and inside frames, and compares them with want.
func checkStream(s *websocket.Stream, want []byte) error {
	h := sha256.New()
	buf := make([]byte, 4093)
	for i, n := 0, 0; n < len(want); i++ {
		m, err := s.Read(buf[:min(1+i%len(buf), len(want)-n)])
		if err != nil {
			return err
		}
		h.Write(buf[:m])
		n += m
	}
	if [32]byte(h.Sum(nil)) != sha256.Sum256(want) {
		return errors.New("bytes differ")
	}
	return nil
}

// sendCoder sends data through a coder/websocket connection in binary
// messages of random sizes up to 300 KB.
func sendCoder(ctx context.Context, c *coderws.Conn, data []byte, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0))
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(300_000))
		if err := c.Write(ctx, coderws.MessageBinary, rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// checkCoder reads binary messages from a coder/websocket connection until
// it has len(want) bytes, and compares them with want.
func checkCoder(ctx context.Context, c *coderws.Conn, want []byte) error {
	h := sha256.New()
	for n := 0; n < len(want); {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if typ != coderws.MessageBinary {
			return fmt.Errorf("a %v message", typ)
		}
		h.Write(msg)
		n += len(msg)
	}
	if [32]byte(h.Sum(nil)) != sha256.Sum256(want) {
		return errors.New("bytes differ")
	}
	return nil
}

// both runs send and check at once, and returns their errors, check's
// first.
func both(send, check func() error) (checkErr, sendErr error) {
	sent := make(chan error, 1)
	go func() { sent <- send() }()
	checkErr = check()
	return checkErr, <-sent
}

// TestInteropBulkBothWays sends a bulk transfer each way at once, between
// each of this module's ends and coder/websocket's opposite one.
func TestInteropBulkBothWays(t *testing.T) {
	t.Parallel()
	data := bulk()
	deadline := time.Now().Add(30 * time.Second) // failure only

	t.Run("Dial to coder's server", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		serverErrs := make(chan error, 2)
		url := wsServer(t, func(w http.ResponseWriter, r *http.Request) {
			c, err := coderws.Accept(w, r, nil)
			if err != nil {
				serverErrs <- err
				serverErrs <- err
				return
			}
			defer c.CloseNow()
			c.SetReadLimit(16 << 20)
			checkErr, sendErr := both(func() error { return sendCoder(ctx, c, data, 1) }, func() error { return checkCoder(ctx, c, data) })
			serverErrs <- checkErr
			serverErrs <- sendErr
		})
		s := dialOurs(t, url).NetConn().(*websocket.Stream)
		s.SetDeadline(deadline)
		checkErr, sendErr := both(func() error { return sendStream(s, data, 2) }, func() error { return checkStream(s, data) })
		if checkErr != nil || sendErr != nil {
			t.Fatalf("client: read %v, write %v", checkErr, sendErr)
		}
		for range 2 {
			if err := <-serverErrs; err != nil {
				t.Fatalf("server: %v", err)
			}
		}
	})

	t.Run("coder's client to Accept", func(t *testing.T) {
		t.Parallel()
		serverErrs := make(chan error, 2)
		url := acceptOurs(t, func(c *websocket.Conn) {
			s := c.NetConn().(*websocket.Stream)
			s.SetDeadline(deadline)
			checkErr, sendErr := both(func() error { return sendStream(s, data, 1) }, func() error { return checkStream(s, data) })
			serverErrs <- checkErr
			serverErrs <- sendErr
		})
		c, _ := dialCoder(t, url)
		ctx := testContext(t)
		checkErr, sendErr := both(func() error { return sendCoder(ctx, c, data, 2) }, func() error { return checkCoder(ctx, c, data) })
		if checkErr != nil || sendErr != nil {
			t.Fatalf("client: read %v, write %v", checkErr, sendErr)
		}
		for range 2 {
			if err := <-serverErrs; err != nil {
				t.Fatalf("server: %v", err)
			}
		}
	})
}

// TestWebSocketAppThroughTunnel runs a WebSocket app built on
// coder/websocket through a tunnel: its server is the agent's handler, its
// client dials the tunnel's public URL. The handshake, with its
// subprotocol and, when both ends ask for it, compression, messages of
// every size, a ping from the app and its close with code and reason all
// cross the tunnel, which knows nothing of WebSocket.
func TestWebSocketAppThroughTunnel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mode coderws.CompressionMode
	}{
		{"uncompressed", coderws.CompressionDisabled},
		{"compressed", coderws.CompressionContextTakeover},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gw, _ := gateway(t, nil)
			ln := listen(t, gw)
			appDone := make(chan struct{})
			app := coderEcho(&coderws.AcceptOptions{Subprotocols: []string{"chat.v1"}, CompressionMode: tc.mode})
			tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/chat" {
					http.NotFound(w, r)
					return
				}
				defer close(appDone)
				app(w, r)
			}))

			ctx := testContext(t)
			c, resp, err := coderws.Dial(ctx, wsURL(ln.URL())+"/chat", &coderws.DialOptions{
				HTTPClient: newClient(t), Subprotocols: []string{"chat.v2", "chat.v1"}, CompressionMode: tc.mode,
			})
			if err != nil {
				t.Fatalf("WebSocket dial through the tunnel: %v", err)
			}
			t.Cleanup(func() { c.CloseNow() })
			c.SetReadLimit(16 << 20)
			if c.Subprotocol() != "chat.v1" {
				t.Errorf("subprotocol %q through the tunnel, want chat.v1", c.Subprotocol())
			}
			compressed := strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
			if compressed != (tc.mode != coderws.CompressionDisabled) {
				t.Errorf("extensions %q through the tunnel, want compression %v", resp.Header.Get("Sec-WebSocket-Extensions"), tc.mode != coderws.CompressionDisabled)
			}

			random := make([]byte, 1<<20)
			rng := rand.New(rand.NewPCG(5, 6))
			for i := range random {
				random[i] = byte(rng.Uint32())
			}
			for i, m := range []struct {
				typ coderws.MessageType
				msg []byte
			}{
				{coderws.MessageText, []byte("hello")},
				{coderws.MessageText, bytes.Repeat([]byte("x"), 100<<10)},
				{coderws.MessageBinary, random},
				{coderws.MessageBinary, nil},
				{coderws.MessageText, []byte("bye")},
			} {
				if err := c.Write(ctx, m.typ, m.msg); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				typ, got, err := c.Read(ctx)
				if err != nil || typ != m.typ || !bytes.Equal(got, m.msg) {
					t.Fatalf("echo %d: %v, %d bytes, err %v; want %v, %d bytes", i, typ, len(got), err, m.typ, len(m.msg))
				}
			}

			// The app pings while the client reads; the client's pong
			// crosses back.
			if err := c.Write(ctx, coderws.MessageText, []byte("ping me")); err != nil {
				t.Fatal(err)
			}
			if _, got, err := c.Read(ctx); err != nil || string(got) != "pinged: ok" {
				t.Fatalf("got %q %v, want the app's ping answered", got, err)
			}

			// The app's close reaches the client with its code and reason,
			// and the app's handler ends with it.
			if err := c.Write(ctx, coderws.MessageText, []byte("close me")); err != nil {
				t.Fatal(err)
			}
			_, _, err = c.Read(ctx)
			var ce coderws.CloseError
			if !errors.As(err, &ce) || ce.Code != coderws.StatusGoingAway || ce.Reason != "bye" {
				t.Fatalf("read after the app's close: %v, want 1001 bye", err)
			}
			select {
			case <-appDone:
			case <-ctx.Done():
				t.Fatal("the app's handler did not return after its close")
			}
		})
	}
}
