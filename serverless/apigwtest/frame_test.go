package apigwtest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestFrameHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		h       frameHeader
		encoded int // header bytes
	}{
		{frameHeader{fin: true, opcode: opText, length: 0}, 2},
		{frameHeader{fin: true, opcode: opBinary, length: 125}, 2},
		{frameHeader{fin: false, opcode: opText, length: 126}, 4},
		{frameHeader{fin: true, opcode: opContinuation, length: 0xFFFF}, 4},
		{frameHeader{fin: true, opcode: opBinary, length: 0x10000}, 10},
		{frameHeader{fin: true, opcode: opPing, masked: true, key: [4]byte{1, 2, 3, 4}, length: 5}, 6},
		{frameHeader{fin: true, rsv: 0x4, opcode: opClose, masked: true, key: [4]byte{9, 9, 9, 9}, length: 40 << 10}, 8},
	}
	for _, tt := range tests {
		b := appendFrameHeader(nil, tt.h)
		if len(b) != tt.encoded {
			t.Errorf("%+v encodes to %d bytes, want %d", tt.h, len(b), tt.encoded)
		}
		got, err := readFrameHeader(bytes.NewReader(b))
		if err != nil || got != tt.h {
			t.Errorf("round trip of %+v: %+v, %v", tt.h, got, err)
		}
	}
}

func TestReadFrameHeaderErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"one byte", []byte{0x81}, io.ErrUnexpectedEOF},
		{"short 16-bit length", []byte{0x82, 126, 1}, io.ErrUnexpectedEOF},
		{"short mask", []byte{0x82, 0x80 | 3, 1, 2}, io.ErrUnexpectedEOF},
		{"64-bit length with top bit", []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1}, errFrameLength},
	}
	for _, tt := range tests {
		if _, err := readFrameHeader(bytes.NewReader(tt.in)); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

// FuzzReadFrameHeader checks that any input decodes without panic into a
// header that encodes and decodes to itself.
func FuzzReadFrameHeader(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4})
	f.Add([]byte{0x02, 126, 0x80, 0})
	f.Add([]byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := readFrameHeader(bytes.NewReader(in))
		if err != nil {
			return
		}
		if h.length < 0 || h.opcode > 0xF || h.rsv > 0x7 {
			t.Fatalf("decoded out-of-range header %+v", h)
		}
		again, err := readFrameHeader(bytes.NewReader(appendFrameHeader(nil, h)))
		if err != nil || again != h {
			t.Fatalf("re-encoding %+v gave %+v, %v", h, again, err)
		}
	})
}

func TestAppendMessage(t *testing.T) {
	t.Parallel()
	msg := bytes.Repeat([]byte("z"), 100)
	b := appendMessage(nil, opText, msg, 32)
	r := bytes.NewReader(b)
	var got []byte
	var frames []frameHeader
	for r.Len() > 0 {
		h, err := readFrameHeader(r)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, h)
		p := make([]byte, h.length)
		io.ReadFull(r, p)
		got = append(got, p...)
	}
	if !bytes.Equal(got, msg) {
		t.Errorf("payload %q", got)
	}
	if len(frames) != 4 || frames[0].opcode != opText || frames[0].masked {
		t.Fatalf("frames %+v", frames)
	}
	for i, h := range frames {
		if h.length > 32 || h.fin != (i == len(frames)-1) || (i > 0 && h.opcode != opContinuation) {
			t.Errorf("frame %d: %+v", i, h)
		}
	}
	if empty := appendMessage(nil, opText, nil, 32); !bytes.Equal(empty, []byte{0x81, 0}) {
		t.Errorf("empty message encodes to %x", empty)
	}
}

func TestClosePayload(t *testing.T) {
	t.Parallel()
	code, reason, err := parseClosePayload(closePayload(1009, "Message too big"))
	if err != nil || code != 1009 || reason != "Message too big" {
		t.Errorf("round trip: %d %q %v", code, reason, err)
	}
	if code, _, err := parseClosePayload(nil); err != nil || code != statusNoStatus {
		t.Errorf("empty payload: %d %v", code, err)
	}
	if len(closePayload(statusNoStatus, "x")) != 0 {
		t.Error("1005 must not be sent on the wire")
	}
	long := closePayload(1000, string(bytes.Repeat([]byte("r"), 200)))
	if len(long) > maxControlPayload {
		t.Errorf("close payload of %d bytes exceeds a control frame", len(long))
	}
	// A long reason of multi-byte runes is cut between runes: the peer
	// must be able to parse what it gets.
	for _, r := range []string{"é", "€", "😀"} {
		p := closePayload(1000, strings.Repeat(r, 100))
		if _, reason, err := parseClosePayload(p); err != nil || len(p) > maxControlPayload || !strings.HasPrefix(strings.Repeat(r, 100), reason) {
			t.Errorf("reason of %q cut to %q (%d bytes): %v", r, reason, len(p), err)
		}
	}
	for _, bad := range [][]byte{{3}, {0x03, 0xED}, {0x03, 0xE8, 0xff}, {0x0B, 0xB7}} { // 1 byte, 1005, bad UTF-8, 2999
		if _, _, err := parseClosePayload(bad); err == nil {
			t.Errorf("%x accepted", bad)
		}
	}
}

// rawConn is a minimal hand-written WebSocket client, for frames no
// library would send.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, e *Emulator) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", e.wsDomain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(waitFor))
	var key [16]byte
	rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	req := "GET / HTTP/1.1\r\nHost: " + e.wsDomain + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + k + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(k) {
		t.Fatalf("handshake: %d %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	return &rawConn{nc, br}
}

// write sends one frame, masked unless unmasked is set.
func (c *rawConn) write(t *testing.T, fin bool, rsv, opcode byte, payload []byte, unmasked bool) {
	t.Helper()
	h := frameHeader{fin: fin, rsv: rsv, opcode: opcode, masked: !unmasked, key: [4]byte{7, 1, 8, 2}, length: int64(len(payload))}
	p := bytes.Clone(payload)
	if h.masked {
		unmask(h.key, 0, p)
	}
	if _, err := c.Write(append(appendFrameHeader(nil, h), p...)); err != nil {
		t.Fatal(err)
	}
}

// echoClose answers the server's close frame, ignoring a failed write:
// the server may already have closed the connection.
func (c *rawConn) echoClose(payload []byte) {
	h := frameHeader{fin: true, opcode: opClose, masked: true, length: int64(len(payload))}
	c.Write(append(appendFrameHeader(nil, h), payload...))
}

// read returns the next frame from the server.
func (c *rawConn) read(t *testing.T) (frameHeader, []byte) {
	t.Helper()
	h, err := readFrameHeader(c.br)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	p := make([]byte, h.length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		t.Fatal(err)
	}
	return h, p
}

// TestProtocolViolations sends frames a client must not send and checks
// the close code.
func TestProtocolViolations(t *testing.T) {
	t.Parallel()
	invalidUTF8 := []byte{0xff, 0xfe}
	if utf8.Valid(invalidUTF8) {
		t.Fatal("test data is valid UTF-8")
	}
	tests := []struct {
		name string
		send func(t *testing.T, c *rawConn)
		code int
	}{
		{"unmasked frame", func(t *testing.T, c *rawConn) { c.write(t, true, 0, opText, []byte("x"), true) }, 1002},
		{"reserved bit", func(t *testing.T, c *rawConn) { c.write(t, true, 0x4, opText, []byte("x"), false) }, 1002},
		{"reserved opcode", func(t *testing.T, c *rawConn) { c.write(t, true, 0, 0x3, []byte("x"), false) }, 1002},
		{"continuation first", func(t *testing.T, c *rawConn) { c.write(t, true, 0, opContinuation, []byte("x"), false) }, 1002},
		{"new message inside another", func(t *testing.T, c *rawConn) {
			c.write(t, false, 0, opText, []byte("a"), false)
			c.write(t, true, 0, opText, []byte("b"), false)
		}, 1002},
		{"fragmented ping", func(t *testing.T, c *rawConn) { c.write(t, false, 0, opPing, nil, false) }, 1002},
		{"invalid UTF-8 text", func(t *testing.T, c *rawConn) { c.write(t, true, 0, opText, invalidUTF8, false) }, 1007},
		{"close with a reserved code", func(t *testing.T, c *rawConn) { c.write(t, true, 0, opClose, []byte{0x03, 0xEE}, false) }, 1002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			e := startEmulator(t, Config{WebSocket: rec.handle})
			c := dialRaw(t, e)
			tt.send(t, c)
			h, p := c.read(t)
			if h.opcode != opClose {
				t.Fatalf("got opcode %x, want close", h.opcode)
			}
			if code, _, _ := parseClosePayload(p); code != tt.code {
				t.Errorf("close code %d, want %d", code, tt.code)
			}
			c.echoClose(p)
			if disc := recv(t, rec.disconnect); disc.RequestContext.DisconnectStatusCode != int64(tt.code) {
				t.Errorf("disconnect status %d", disc.RequestContext.DisconnectStatusCode)
			}
			if s := e.Stats(); s.DefaultInvocations != 0 {
				t.Errorf("a bad message was invoked: %+v", s)
			}
		})
	}
}

// TestControlFrames checks pings between fragments, pong replies, and a
// client close without a status code.
func TestControlFrames(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	e := startEmulator(t, Config{WebSocket: rec.handle})
	c := dialRaw(t, e)
	c.write(t, false, 0, opText, []byte("hel"), false)
	c.write(t, true, 0, opPing, []byte("p1"), false)
	c.write(t, true, 0, opContinuation, []byte("lo"), false)
	if h, p := c.read(t); h.opcode != opPong || string(p) != "p1" || h.masked {
		t.Errorf("got %+v %q, want an unmasked pong p1", h, p)
	}
	if got := recv(t, rec.message).Body; got != "hello" {
		t.Errorf("message %q", got)
	}
	c.write(t, true, 0, opClose, nil, false)
	if h, p := c.read(t); h.opcode != opClose || len(p) != 0 {
		t.Errorf("close echo %+v %x, want an empty close", h, p)
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Errorf("after the close echo: %v, want EOF", err)
	}
	disc := recv(t, rec.disconnect).RequestContext
	if disc.DisconnectStatusCode != 1005 || *disc.DisconnectReason != "Client-side close frame status not set" {
		t.Errorf("disconnect %d %q", disc.DisconnectStatusCode, *disc.DisconnectReason)
	}
}

// TestAbnormalClosure checks that a dropped TCP connection counts as 1006
// and runs $disconnect.
func TestAbnormalClosure(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	e := startEmulator(t, Config{WebSocket: rec.handle})
	c := dialRaw(t, e)
	c.Close()
	if disc := recv(t, rec.disconnect); disc.RequestContext.DisconnectStatusCode != 1006 {
		t.Errorf("disconnect status %d, want 1006", disc.RequestContext.DisconnectStatusCode)
	}
	if s := e.Stats(); s.Closes[1006] != 1 {
		t.Errorf("closes %v", s.Closes)
	}
}

// TestUpgradeRequests checks answers to requests that are not upgrades.
func TestUpgradeRequests(t *testing.T) {
	t.Parallel()
	e := startEmulator(t, Config{WebSocketStage: "prod"})
	client := httpClient(t)
	tests := []struct {
		path   string
		header http.Header
		want   int
	}{
		{"/prod", nil, http.StatusUpgradeRequired},
		{"/other", nil, http.StatusForbidden},
		{"/prod", http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Version": {"8"}}, http.StatusUpgradeRequired},
		{"/prod", http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"short"}}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		resp, _ := doRequest(t, client, http.MethodGet, "http://"+e.wsDomain+tt.path, tt.header, nil)
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s %v: %d, want %d", tt.path, tt.header, resp.StatusCode, tt.want)
		}
	}
}
