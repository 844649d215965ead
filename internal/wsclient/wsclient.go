// Package wsclient is the agent's WebSocket client (RFC 6455): the opening
// handshake over an http.Client, and framing tuned for a tunnel.
//
// The agent is a WebSocket client, so every frame it sends is masked. A
// general-purpose library masks through a small write buffer and so issues
// one write per few kilobytes; on a tunnel's bulk path that makes the
// system calls, not the copies, the cost. Conn builds each frame (header,
// then payload masked in place) in one buffer and sends it with one write.
// It also writes a yamux frame's header and body as one WebSocket frame, and
// can split messages into frames of a maximum size (API Gateway's 32 KiB).
//
// Conn serves one reader and any number of writers at a time.
package wsclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Opcodes (RFC 6455 section 5.2).
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// Close status codes used by the tunnel (RFC 6455 section 7.4.1).
const (
	StatusNormalClosure   = 1000
	StatusGoingAway       = 1001
	StatusProtocolError   = 1002
	StatusUnsupportedData = 1003
	StatusNoStatus        = 1005
	StatusPolicyViolation = 1008
	StatusMessageTooBig   = 1009
	StatusInternalError   = 1011
	StatusServiceRestart  = 1012
)

// largeBuffers holds frame buffers for payloads over smallFrame bytes.
var largeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, writeChunk); return &b }}

const (
	smallFrame        = 16 << 10
	writeChunk        = 256 << 10 // most bytes of a frame sent in one write
	maxControlPayload = 125
	readBufferSize    = 64 << 10
	acceptGUID        = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
)

// CloseError is returned by reads once the server has closed the
// connection with a close frame.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("websocket closed by peer: status %d %q", e.Code, e.Reason)
}

// ErrProtocol marks a frame that breaks RFC 6455; the connection is closed
// with StatusProtocolError.
var ErrProtocol = errors.New("websocket: protocol error")

// ErrMessageTooBig is returned by ReadMessage for a message over its limit.
var ErrMessageTooBig = errors.New("websocket: message too big")

// Conn is a client WebSocket connection.
type Conn struct {
	rwc         io.ReadWriteCloser
	br          *bufio.Reader
	subprotocol string

	// MaxFrame, if positive, caps the payload of each frame written; longer
	// messages are fragmented. Set it before the first write.
	MaxFrame int

	wmu       sync.Mutex
	wbuf      []byte
	closeSent bool

	// Read state, owned by the single reader.
	remaining int64 // payload bytes left in the current data frame
	inMessage bool  // a fragmented data message is in progress
	ctrl      [maxControlPayload]byte

	closeOnce sync.Once
	peerClose chan struct{} // closed when the server's close frame is read, or reading ends
	peerOnce  sync.Once
}

// Dial opens a WebSocket to rawURL (ws:// or wss://) with client, sending
// header and offering subprotocols. ctx bounds the handshake only. On a
// non-101 answer it returns the response with at most 1 KiB of its body
// buffered, for the caller to read the server's reason.
func Dial(ctx context.Context, client *http.Client, rawURL string, header http.Header, subprotocols []string) (*Conn, *http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return nil, nil, fmt.Errorf("websocket: unsupported scheme %q", u.Scheme)
	}
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", key)
	if len(subprotocols) > 0 {
		req.Header.Set("Sec-WebSocket-Protocol", strings.Join(subprotocols, ", "))
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("websocket dial: %w", err)
	}
	fail := func(err error) (*Conn, *http.Response, error) {
		var body []byte
		if resp.StatusCode != http.StatusSwitchingProtocols {
			// Keep the start of the server's explanation, without waiting
			// on a server that sends no more.
			t := time.AfterFunc(3*time.Second, func() { resp.Body.Close() })
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
			t.Stop()
		}
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil, resp, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fail(fmt.Errorf("websocket dial: server answered %s", resp.Status))
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || !headerHasToken(resp.Header, "Connection", "upgrade") {
		return fail(errors.New("websocket dial: server did not upgrade to websocket"))
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
		return fail(errors.New("websocket dial: bad Sec-WebSocket-Accept"))
	}
	proto := resp.Header.Get("Sec-WebSocket-Protocol")
	if proto != "" && !contains(subprotocols, proto) {
		return fail(fmt.Errorf("websocket dial: server chose subprotocol %q, which was not offered", proto))
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		return fail(fmt.Errorf("websocket dial: response body is not writable (%T)", resp.Body))
	}
	return newConn(rwc, proto), resp, nil
}

func newConn(rwc io.ReadWriteCloser, subprotocol string) *Conn {
	return &Conn{
		rwc:         rwc,
		br:          bufio.NewReaderSize(rwc, readBufferSize),
		subprotocol: subprotocol,
		peerClose:   make(chan struct{}),
	}
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Subprotocol returns the subprotocol the server selected, or "".
func (c *Conn) Subprotocol() string { return c.subprotocol }

// WriteMessage sends p as one message of type op (OpText or OpBinary),
// fragmented into frames of at most MaxFrame bytes if MaxFrame is set.
func (c *Conn) WriteMessage(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	first := true
	for {
		chunk := p
		if c.MaxFrame > 0 && len(chunk) > c.MaxFrame {
			chunk = chunk[:c.MaxFrame]
		}
		p = p[len(chunk):]
		code := byte(OpContinuation)
		if first {
			code = op
		}
		if err := c.writeFrameLocked(code, len(p) == 0, chunk); err != nil {
			return err
		}
		if len(p) == 0 {
			return nil
		}
		first = false
	}
}

// writeFrameLocked writes one masked frame whose payload is the parts back
// to back. The header and the payload, masked as it is copied, go through
// one buffer of at most writeChunk bytes: a frame up to that size is one
// write, and a larger one (up to a yamux window) is written a chunk at a
// time, so that buffers stay small whatever the frame size. Chunks of
// 64 KiB were slower; 256 KiB and whole frames measured the same.
func (c *Conn) writeFrameLocked(op byte, fin bool, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	// Small frames use the connection's own buffer; large ones borrow a
	// pooled one, so that a bulk burst neither pins a large buffer to an
	// idle connection nor allocates one per frame.
	buf := c.wbuf[:0]
	var pooled *[]byte
	if n > smallFrame {
		pooled = largeBuffers.Get().(*[]byte)
		buf = (*pooled)[:0]
	}
	b0 := op
	if fin {
		b0 |= 0x80
	}
	switch {
	case n <= 125:
		buf = append(buf, b0, 0x80|byte(n))
	case n <= 0xFFFF:
		buf = append(buf, b0, 0x80|126, byte(n>>8), byte(n))
	default:
		buf = append(buf, b0, 0x80|127)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	key := mathrand.Uint32()
	buf = binary.LittleEndian.AppendUint32(buf, key)
	var err error
	off := 0 // payload bytes masked so far; the key phase follows it
parts:
	for _, p := range parts {
		for len(p) > 0 {
			m := min(len(p), max(writeChunk-len(buf), 0))
			if m == 0 {
				if _, err = c.rwc.Write(buf); err != nil {
					break parts
				}
				buf = buf[:0]
				continue
			}
			start := len(buf)
			buf = slices.Grow(buf, m)[:start+m]
			maskCopy(buf[start:], p[:m], bits.RotateLeft32(key, -8*(off&3)))
			off += m
			p = p[m:]
		}
	}
	if err == nil && len(buf) > 0 {
		_, err = c.rwc.Write(buf)
	}
	if pooled != nil {
		*pooled = buf[:0]
		largeBuffers.Put(pooled)
	} else {
		c.wbuf = buf[:0]
	}
	return err
}

// maskCopyGeneric copies src to dst XORed with the masking key (RFC 6455
// section 5.3): one pass instead of a copy and a mask, 32 bytes an
// iteration. key holds the four key bytes in little-endian order, src[0]
// taking the lowest. maskCopy is this function, or on amd64 a vector loop
// in front of it.
func maskCopyGeneric(dst, src []byte, key uint32) {
	dst = dst[:len(src)]
	k := uint64(key) | uint64(key)<<32
	le := binary.LittleEndian
	for len(src) >= 32 {
		s, d := src[:32:32], dst[:32:32]
		le.PutUint64(d[0:], le.Uint64(s[0:])^k)
		le.PutUint64(d[8:], le.Uint64(s[8:])^k)
		le.PutUint64(d[16:], le.Uint64(s[16:])^k)
		le.PutUint64(d[24:], le.Uint64(s[24:])^k)
		src, dst = src[32:], dst[32:]
	}
	for len(src) >= 8 {
		le.PutUint64(dst, le.Uint64(src)^k)
		src, dst = src[8:], dst[8:]
	}
	for i := range src {
		dst[i] = src[i] ^ byte(key>>(8*(i&3)))
	}
}

// ReadMessage reads the next data message of at most limit bytes. Pings
// are answered on the way. Over the limit, it closes the connection with
// StatusMessageTooBig and returns ErrMessageTooBig.
func (c *Conn) ReadMessage(limit int) (byte, []byte, error) {
	var msg []byte
	var op byte
	for {
		h, err := c.nextDataFrame()
		if err != nil {
			return 0, nil, err
		}
		if op == 0 {
			op = h.op
		}
		if int64(len(msg))+h.length > int64(limit) {
			c.Close(StatusMessageTooBig, "message too big", 0)
			return 0, nil, ErrMessageTooBig
		}
		start := len(msg)
		msg = append(msg, make([]byte, h.length)...)
		if _, err := io.ReadFull(c.br, msg[start:]); err != nil {
			return 0, nil, err
		}
		c.remaining = 0
		if h.fin {
			c.inMessage = false
			return op, msg, nil
		}
	}
}

type frameHeader struct {
	fin    bool
	op     byte
	length int64
}

// nextDataFrame reads frame headers, handling control frames, until a data
// frame; its payload is then next in br, and remaining is its length.
func (c *Conn) nextDataFrame() (frameHeader, error) {
	for {
		h, err := c.readHeader()
		if err != nil {
			return h, err
		}
		switch h.op {
		case OpText, OpBinary:
			if c.inMessage {
				return h, c.protocolError("new message inside a fragmented one")
			}
			c.inMessage = !h.fin
		case OpContinuation:
			if !c.inMessage {
				return h, c.protocolError("continuation frame without a message")
			}
			c.inMessage = !h.fin
		case OpPing, OpPong, OpClose:
			if err := c.handleControl(h); err != nil {
				return h, err
			}
			continue
		default:
			return h, c.protocolError(fmt.Sprintf("unknown opcode %#x", h.op))
		}
		c.remaining = h.length
		return h, nil
	}
}

// readHeader reads and checks one frame header.
func (c *Conn) readHeader() (frameHeader, error) {
	var b [2]byte
	if _, err := io.ReadFull(c.br, b[:]); err != nil {
		return frameHeader{}, c.readErr(err)
	}
	h := frameHeader{fin: b[0]&0x80 != 0, op: b[0] & 0x0F}
	if b[0]&0x70 != 0 {
		return h, c.protocolError("reserved bits set")
	}
	if b[1]&0x80 != 0 {
		return h, c.protocolError("masked frame from the server")
	}
	switch l := b[1] & 0x7F; l {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			return h, c.readErr(err)
		}
		h.length = int64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			return h, c.readErr(err)
		}
		v := binary.BigEndian.Uint64(ext[:])
		if v>>63 != 0 {
			return h, c.protocolError("frame length overflows")
		}
		h.length = int64(v)
	default:
		h.length = int64(l)
	}
	if h.op >= OpClose && (h.length > maxControlPayload || !h.fin) {
		return h, c.protocolError("invalid control frame")
	}
	return h, nil
}

// handleControl answers pings and processes the server's close frame.
func (c *Conn) handleControl(h frameHeader) error {
	p := c.ctrl[:h.length]
	if _, err := io.ReadFull(c.br, p); err != nil {
		return c.readErr(err)
	}
	switch h.op {
	case OpPing:
		c.wmu.Lock()
		defer c.wmu.Unlock()
		if c.closeSent {
			return nil
		}
		return c.writeFrameLocked(OpPong, true, p)
	case OpPong:
		return nil
	}
	ce := &CloseError{Code: StatusNoStatus}
	if len(p) >= 2 {
		ce.Code = int(binary.BigEndian.Uint16(p))
		ce.Reason = string(p[2:])
	} else if len(p) == 1 {
		return c.protocolError("close frame with a one-byte payload")
	}
	c.peerOnce.Do(func() { close(c.peerClose) })
	// Echo the close (RFC 6455 section 5.5.1) unless we started it.
	c.wmu.Lock()
	if !c.closeSent {
		c.closeSent = true
		var echo [2]byte
		binary.BigEndian.PutUint16(echo[:], uint16(ce.Code))
		if ce.Code == StatusNoStatus {
			c.writeFrameLocked(OpClose, true)
		} else {
			c.writeFrameLocked(OpClose, true, echo[:])
		}
	}
	c.wmu.Unlock()
	c.CloseNow()
	return ce
}

func (c *Conn) protocolError(what string) error {
	c.Close(StatusProtocolError, what, 0)
	return fmt.Errorf("%w: %s", ErrProtocol, what)
}

// readErr records that reading has ended, so Close does not wait for a
// close frame that can no longer come, and normalizes err.
func (c *Conn) readErr(err error) error {
	c.peerOnce.Do(func() { close(c.peerClose) })
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Close sends a close frame with code and reason, waits up to wait for the
// server's close frame (read by whoever is reading), then closes the
// connection. With wait zero it does not wait.
func (c *Conn) Close(code int, reason string, wait time.Duration) error {
	c.wmu.Lock()
	if !c.closeSent {
		c.closeSent = true
		p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
		if len(p)+len(reason) > maxControlPayload {
			reason = reason[:maxControlPayload-2]
		}
		p = append(p, reason...)
		c.writeFrameLocked(OpClose, true, p)
	}
	c.wmu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-c.peerClose:
		case <-t.C:
		}
		t.Stop()
	}
	return c.CloseNow()
}

// CloseNow closes the underlying connection without a close handshake.
func (c *Conn) CloseNow() error {
	var err error
	c.closeOnce.Do(func() { err = c.rwc.Close() })
	return err
}

// NetConn returns a net.Conn whose reads return the payload of binary
// messages, in order, and whose writes each send one binary frame. It is
// the byte stream a yamux session runs over; see Stream.
func (c *Conn) NetConn() net.Conn { return &Stream{c: c} }

// Stream adapts a Conn to the byte stream yamux expects. The session sends
// through WriteParts, a frame's header and body (or several frames) in one
// WebSocket frame.
type Stream struct {
	c *Conn
}

// Read reads payload bytes of binary messages.
func (s *Stream) Read(p []byte) (int, error) {
	c := s.c
	for c.remaining == 0 {
		h, err := c.nextDataFrame()
		if err != nil {
			var ce *CloseError
			if errors.As(err, &ce) && (ce.Code == StatusNormalClosure || ce.Code == StatusGoingAway) {
				return 0, io.EOF
			}
			return 0, err
		}
		if h.op == OpText {
			return 0, c.protocolError("text message in a binary stream")
		}
	}
	if int64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.br.Read(p)
	c.remaining -= int64(n)
	if err != nil {
		return n, c.readErr(err)
	}
	return n, nil
}

// Write sends p as one binary frame.
func (s *Stream) Write(p []byte) (int, error) {
	if err := s.c.WriteMessage(OpBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteParts sends parts back to back as one binary frame, masked as they
// are copied into it: the yamux session writes a frame's header and body,
// or several queued frames, with one call.
func (s *Stream) WriteParts(parts [][]byte) error {
	c := s.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	return c.writeFrameLocked(OpBinary, true, parts...)
}

// Close closes the connection at once; see mux.Conn for why there is no
// handshake here.
func (s *Stream) Close() error { return s.c.CloseNow() }

// LocalAddr and RemoteAddr return a placeholder: the HTTP transport does
// not expose the underlying connection's addresses.
func (s *Stream) LocalAddr() net.Addr  { return wsAddr{} }
func (s *Stream) RemoteAddr() net.Addr { return wsAddr{} }

// Deadlines are not supported; yamux does not use them on its connection.
func (s *Stream) SetDeadline(time.Time) error      { return nil }
func (s *Stream) SetReadDeadline(time.Time) error  { return nil }
func (s *Stream) SetWriteDeadline(time.Time) error { return nil }

type wsAddr struct{}

func (wsAddr) Network() string { return "websocket" }
func (wsAddr) String() string  { return "websocket" }
