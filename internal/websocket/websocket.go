// Package websocket is the tunnel's WebSocket (RFC 6455) for both ends: the
// agent's client (Dial) and the gateway's server (Accept), with framing
// tuned for a tunnel.
//
// A general-purpose library writes through a small buffer, so it issues one
// write per few kilobytes, and it masks and unmasks with portable loops; on
// a tunnel's bulk path those, not the copies, become the cost. Here every
// frame goes out in as few writes as it can:
//
//   - The client (which must mask) builds each frame, header and then the
//     payload masked as it is copied, in one buffer and sends it with one
//     write per 256 KiB.
//   - The server (which must not mask) sends a frame's header and payload
//     parts with one vectored write, without copying them, where the
//     connection supports it (TCP).
//
// A yamux frame's header and body, or several queued frames, go out as one
// WebSocket frame (Stream.WriteParts). The server unmasks what it reads in
// place, 64 bytes at a time on amd64. The client can split messages into
// frames of a maximum size (API Gateway's 32 KiB).
//
// Conn serves one reader and any number of writers at a time. The reader
// never waits for a writer: a control frame it must send while a write is
// in progress (a pong, or the close that ends the connection) goes out when
// that write is done.
package websocket

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	mathrand "math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
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
	// StatusInvalidFramePayloadData closes a connection that received a
	// text message that is not UTF-8.
	StatusInvalidFramePayloadData = 1007
	StatusPolicyViolation         = 1008
	StatusMessageTooBig           = 1009
	StatusInternalError           = 1011
	StatusServiceRestart          = 1012
)

// largeBuffers holds frame buffers for payloads over smallFrame bytes.
var largeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, writeChunk); return &b }}

const (
	smallFrame        = 16 << 10
	writeChunk        = 256 << 10 // most bytes of a frame sent in one write
	maxControlPayload = 125
	readBufferSize    = 64 << 10
	drainWait         = 2 * time.Second // CloseAndDrain after a message over the limit
	acceptGUID        = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
)

// CloseError is returned by reads once the peer has closed the connection
// with a close frame.
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

// ErrFrameTooBig is returned by reads for a data frame over MaxReadFrame.
var ErrFrameTooBig = errors.New("websocket: frame too big")

// ErrMessageTooBig is returned by ReadMessage for a message over its limit.
var ErrMessageTooBig = errors.New("websocket: message too big")

// ErrInvalidUTF8 is returned by ReadMessage for a text message that is not
// valid UTF-8 (RFC 6455 section 8.1); the connection is closed with
// StatusInvalidFramePayloadData.
var ErrInvalidUTF8 = errors.New("websocket: text message is not valid UTF-8")

// ErrDeadlineUnsupported is returned by Stream's deadline methods when the
// connection under the WebSocket has no deadlines.
var ErrDeadlineUnsupported = errors.New("websocket: the underlying connection does not support deadlines")

// Conn is a WebSocket connection, the client's end (Dial) or the server's
// (Accept).
type Conn struct {
	rwc         io.ReadWriteCloser
	br          *bufio.Reader
	subprotocol string
	server      bool
	// vectored: the connection takes a frame's parts in one system call
	// (net.Buffers), so the server does not join them.
	vectored bool
	// dl sets deadlines on the connection under rwc; nil if it has none.
	dl deadliner

	// MaxReadFrame, if positive, caps the payload of each data frame read:
	// a larger one fails the connection with StatusMessageTooBig, as API
	// Gateway does past 32 KiB. Set it before the first read.
	MaxReadFrame int

	// MaxFrame, if positive, caps the payload of each frame written; longer
	// messages are fragmented. Set it before the first write.
	MaxFrame int

	// Writers take wmu through lockWriter and unlockWriter.
	wmu       sync.Mutex
	wbuf      []byte
	hdr       [10]byte
	vec       [][]byte
	closeSent bool
	// werr is the first write error. The peer may then be inside a frame
	// that was cut short, so no frame can follow.
	werr error

	ctl control

	dmu sync.Mutex
	wdl time.Time // write deadline set through Stream, guarded by dmu

	// Read state, owned by the single reader.
	remaining int64  // payload bytes left in the current data frame
	rkey      uint32 // server: the current frame's mask key, at its phase
	inMessage bool   // a fragmented data message is in progress
	ctrl      [maxControlPayload]byte
	msg       partialMessage

	closeOnce sync.Once
	peerClose chan struct{} // closed when the peer's close frame is read, or reading ends
	peerOnce  sync.Once
}

// newConn returns a connection that writes to and closes rwc and reads
// from r (rwc itself, or rwc behind bytes the HTTP server had already
// buffered).
func newConn(rwc io.ReadWriteCloser, r io.Reader, subprotocol string, server bool) *Conn {
	c := &Conn{
		rwc:         rwc,
		br:          bufio.NewReaderSize(r, readBufferSize),
		subprotocol: subprotocol,
		server:      server,
		peerClose:   make(chan struct{}),
	}
	c.ctl.timeout = controlWriteTimeout
	if d, ok := rwc.(deadliner); ok {
		c.dl = d
	}
	switch rwc.(type) {
	case *net.TCPConn, *net.UnixConn:
		c.vectored = true
	}
	return c
}

// Subprotocol returns the subprotocol the server selected, or "".
func (c *Conn) Subprotocol() string { return c.subprotocol }

// WriteMessage sends p as one message of type op (OpText or OpBinary),
// fragmented into frames of at most MaxFrame bytes if MaxFrame is set.
func (c *Conn) WriteMessage(op byte, p []byte) error {
	c.lockWriter()
	defer c.unlockWriter()
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

// writeFrameLocked writes one frame whose payload is the parts back to
// back: masked by a client, vectored or joined by a server.
func (c *Conn) writeFrameLocked(op byte, fin bool, parts ...[]byte) error {
	if c.werr != nil {
		return c.werr
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	var err error
	if c.server && c.vectored && n > smallFrame {
		err = c.writeVectoredLocked(op, fin, n, parts)
	} else {
		err = c.writeJoinedLocked(op, fin, n, parts)
	}
	if err != nil {
		c.werr = err
	}
	return err
}

// appendHeader appends a frame header for a payload of n bytes; mask sets
// the mask bit (the key follows, appended by the caller).
func appendHeader(buf []byte, op byte, fin bool, n int, mask bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var m byte
	if mask {
		m = 0x80
	}
	switch {
	case n <= 125:
		return append(buf, b0, m|byte(n))
	case n <= 0xFFFF:
		return append(buf, b0, m|126, byte(n>>8), byte(n))
	default:
		buf = append(buf, b0, m|127)
		return binary.BigEndian.AppendUint64(buf, uint64(n))
	}
}

// writeVectoredLocked sends the header and the parts with one vectored
// write, without copying the parts.
func (c *Conn) writeVectoredLocked(op byte, fin bool, n int, parts [][]byte) error {
	c.vec = append(append(c.vec[:0], appendHeader(c.hdr[:0], op, fin, n, false)), parts...)
	bufs := net.Buffers(c.vec)
	_, err := bufs.WriteTo(c.rwc)
	clear(c.vec) // keep no reference to the caller's buffers
	return err
}

// writeJoinedLocked writes the header and the payload through one buffer of
// at most writeChunk bytes, masking the payload as it is copied if this is
// the client: a frame up to that size is one write, and a larger one (up to
// a yamux window) is written a chunk at a time, so that buffers stay small
// whatever the frame size. Chunks of 64 KiB were slower; 256 KiB and whole
// frames measured the same.
func (c *Conn) writeJoinedLocked(op byte, fin bool, n int, parts [][]byte) error {
	// Small frames use the connection's own buffer; large ones borrow a
	// pooled one, so that a bulk burst neither pins a large buffer to an
	// idle connection nor allocates one per frame.
	buf := c.wbuf[:0]
	var pooled *[]byte
	if n > smallFrame {
		pooled = largeBuffers.Get().(*[]byte)
		buf = (*pooled)[:0]
	}
	buf = appendHeader(buf, op, fin, n, !c.server)
	var key uint32
	if !c.server {
		key = mathrand.Uint32()
		buf = binary.LittleEndian.AppendUint32(buf, key)
	}
	var err error
	off := 0 // payload bytes copied so far; the key phase follows it
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
			if c.server {
				copy(buf[start:], p[:m])
			} else {
				maskCopy(buf[start:], p[:m], bits.RotateLeft32(key, -8*(off&3)))
			}
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
// taking the lowest. dst may be src itself (unmasking in place). maskCopy
// is this function, or on amd64 a vector loop in front of it.
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

// unmask unmasks p in place with the current frame's key and advances the
// key's phase past it. A client reads unmasked frames and does nothing.
func (c *Conn) unmask(p []byte) {
	if !c.server || len(p) == 0 {
		return
	}
	maskCopy(p, p, c.rkey)
	c.rkey = bits.RotateLeft32(c.rkey, -8*(len(p)&3))
}

// ReadMessage reads the next data message of at most limit bytes. Pings
// are answered on the way. Over the limit, it closes the connection with
// StatusMessageTooBig (see CloseAndDrain) and returns ErrMessageTooBig.
//
// A text message must be valid UTF-8: otherwise ReadMessage fails the
// connection with StatusInvalidFramePayloadData and returns ErrInvalidUTF8.
// Each fragment is checked as it arrives, so a fragmented message fails at
// its first invalid fragment, not at its end.
//
// A read that fails at a deadline (see Stream.SetReadDeadline) loses
// nothing: the next call goes on with the same message.
func (c *Conn) ReadMessage(limit int) (byte, []byte, error) {
	m := &c.msg
	for {
		if !m.inFrame {
			h, err := c.nextDataFrame()
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					*m = partialMessage{}
				}
				return 0, nil, err
			}
			if m.op == 0 {
				m.op = h.op
			}
			if int64(len(m.buf))+h.length > int64(limit) {
				*m = partialMessage{}
				c.CloseAndDrain(StatusMessageTooBig, "message too big", drainWait)
				return 0, nil, ErrMessageTooBig
			}
			m.buf = append(m.buf, make([]byte, h.length)...)
			m.fin = h.fin
			m.inFrame = true
		}
		start := len(m.buf) - int(c.remaining)
		n, err := io.ReadFull(c.br, m.buf[start:])
		c.unmask(m.buf[start : start+n])
		c.remaining -= int64(n)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				*m = partialMessage{}
			}
			return 0, nil, c.readErr(err)
		}
		m.inFrame = false
		if m.op == OpText {
			var ok bool
			if m.checked, ok = checkUTF8(m.buf, m.checked, m.fin); !ok {
				*m = partialMessage{}
				c.fail(StatusInvalidFramePayloadData, "text message is not valid UTF-8")
				return 0, nil, ErrInvalidUTF8
			}
		}
		if m.fin {
			op, msg := m.op, m.buf
			*m = partialMessage{}
			return op, msg, nil
		}
	}
}

// partialMessage is what ReadMessage has read of a message. It lives in
// the Conn so that a read that fails at a deadline can be resumed.
type partialMessage struct {
	op      byte
	buf     []byte // the payload so far, and room for the current frame's
	fin     bool   // the current frame ends the message
	inFrame bool   // the current frame's payload is still being read
	checked int    // text: buf[:checked] is valid UTF-8 up to a rune boundary
}

// checkUTF8 reports whether msg[from:] continues valid UTF-8, where
// msg[:from] is valid and ends on a rune boundary, and returns the new such
// boundary. Unless final, msg may end inside a rune that later bytes can
// still complete; bytes that no continuation can make valid fail at once.
func checkUTF8(msg []byte, from int, final bool) (int, bool) {
	end := len(msg)
	if !final {
		// utf8.FullRune is false only for a valid start of a rune that
		// needs more bytes.
		for i := end - 1; i >= from && i > end-utf8.UTFMax; i-- {
			if utf8.RuneStart(msg[i]) {
				if !utf8.FullRune(msg[i:]) {
					end = i
				}
				break
			}
		}
	}
	if !utf8.Valid(msg[from:end]) {
		return from, false
	}
	return end, true
}

type frameHeader struct {
	fin    bool
	op     byte
	length int64
	key    uint32 // masking key, little-endian; frames to the server only
}

// nextDataFrame reads frame headers, handling control frames, until a data
// frame; its payload is then next in br, remaining is its length and rkey
// its masking key. A read that fails at a deadline leaves the frame it was
// reading unconsumed, so the call can be repeated.
func (c *Conn) nextDataFrame() (frameHeader, error) {
	for {
		h, n, err := c.peekHeader()
		if err != nil {
			return h, err
		}
		switch h.op {
		case OpText, OpBinary:
			if c.inMessage {
				return h, c.protocolError("new message inside a fragmented one")
			}
		case OpContinuation:
			if !c.inMessage {
				return h, c.protocolError("continuation frame without a message")
			}
		case OpPing, OpPong, OpClose:
			if err := c.readControl(h, n); err != nil {
				return h, err
			}
			continue
		default:
			return h, c.protocolError(fmt.Sprintf("unknown opcode %#x", h.op))
		}
		if c.MaxReadFrame > 0 && h.length > int64(c.MaxReadFrame) {
			c.fail(StatusMessageTooBig, "frame too big")
			return h, ErrFrameTooBig
		}
		c.br.Discard(n)
		c.inMessage = !h.fin
		c.remaining = h.length
		c.rkey = h.key
		return h, nil
	}
}

// peekHeader parses and checks the next frame header without consuming
// it; n is its length.
func (c *Conn) peekHeader() (h frameHeader, n int, err error) {
	b, err := c.br.Peek(2)
	if err != nil {
		return h, 0, c.peekErr(b, err)
	}
	h = frameHeader{fin: b[0]&0x80 != 0, op: b[0] & 0x0F}
	if b[0]&0x70 != 0 {
		return h, 0, c.protocolError("reserved bits set")
	}
	// RFC 6455 section 5.1: a client masks every frame, a server none.
	if masked := b[1]&0x80 != 0; masked != c.server {
		if c.server {
			return h, 0, c.protocolError("unmasked frame from the client")
		}
		return h, 0, c.protocolError("masked frame from the server")
	}
	l := b[1] & 0x7F
	n = 2
	switch l {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if c.server {
		n += 4
	}
	if b, err = c.br.Peek(n); err != nil {
		return h, 0, c.peekErr(b, err)
	}
	switch l {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		v := binary.BigEndian.Uint64(b[2:])
		if v>>63 != 0 {
			return h, 0, c.protocolError("frame length overflows")
		}
		h.length = int64(v)
	default:
		h.length = int64(l)
	}
	if c.server {
		h.key = binary.LittleEndian.Uint32(b[n-4:])
	}
	if h.op >= OpClose && (h.length > maxControlPayload || !h.fin) {
		return h, 0, c.protocolError("invalid control frame")
	}
	return h, n, nil
}

// peekErr is readErr for a Peek that returned b: the end of the stream
// inside a frame is unexpected.
func (c *Conn) peekErr(b []byte, err error) error {
	if err == io.EOF && len(b) > 0 {
		err = io.ErrUnexpectedEOF
	}
	return c.readErr(err)
}

// readControl consumes the control frame whose header (of n bytes) is h,
// all at once so that a deadline cannot leave half of it read, and handles
// it.
func (c *Conn) readControl(h frameHeader, n int) error {
	b, err := c.br.Peek(n + int(h.length))
	if err != nil {
		return c.peekErr(b, err)
	}
	p := c.ctrl[:h.length]
	copy(p, b[n:])
	c.br.Discard(len(b))
	if c.server {
		maskCopy(p, p, h.key)
	}
	return c.handleControl(h.op, p)
}

// handleControl answers pings and processes the peer's close frame.
func (c *Conn) handleControl(op byte, p []byte) error {
	switch op {
	case OpPing:
		return c.sendControl(OpPong, p, false)
	case OpPong:
		return nil
	}
	ce := &CloseError{Code: StatusNoStatus}
	if len(p) >= 2 {
		ce.Code = int(binary.BigEndian.Uint16(p))
		ce.Reason = string(p[2:])
		if !validCloseCode(ce.Code) || !utf8.ValidString(ce.Reason) {
			return c.protocolError("invalid close code or reason")
		}
	} else if len(p) == 1 {
		return c.protocolError("close frame with a one-byte payload")
	}
	c.peerOnce.Do(func() { close(c.peerClose) })
	// Echo the close (RFC 6455 section 5.5.1) unless we started it; the
	// connection is over once it is out.
	var b [2]byte
	echo := b[:0]
	if ce.Code != StatusNoStatus {
		echo = binary.BigEndian.AppendUint16(echo, uint16(ce.Code))
	}
	c.sendControl(OpClose, echo, true)
	return ce
}

// validCloseCode reports whether code may appear in a close frame (RFC 6455
// section 7.4): the defined codes that are not reserved for local use, and
// the ranges for libraries and applications.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

func (c *Conn) protocolError(what string) error {
	c.fail(StatusProtocolError, what)
	return fmt.Errorf("%w: %s", ErrProtocol, what)
}

// fail fails the connection (RFC 6455 section 7.1.7): a close frame with
// code and reason, then the connection is closed. If a write is in
// progress, that happens when it is done.
func (c *Conn) fail(code int, reason string) {
	var b [maxControlPayload]byte
	c.sendControl(OpClose, appendClosePayload(b[:0], code, reason), true)
}

// readErr records that reading has ended, so Close does not wait for a
// close frame that can no longer come, and normalizes err. A deadline ends
// nothing: reading may go on once it is moved.
func (c *Conn) readErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	c.peerOnce.Do(func() { close(c.peerClose) })
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Close sends a close frame with code and reason, waits up to wait for the
// peer's close frame (read by whoever is reading), then closes the
// connection. With wait zero it does not wait. If a write is in progress,
// the close frame goes out when it is done; Close does not wait for that
// beyond wait either. A reason longer than a close frame holds is cut at a
// rune boundary.
func (c *Conn) Close(code int, reason string, wait time.Duration) error {
	c.sendClose(code, reason)
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

// CloseAndDrain is Close for a connection nobody else reads: it sends the
// close frame, then reads and discards what the peer still sends until its
// close frame, for at most wait. Reading on lets the peer's last messages
// (and its close) arrive before the connection closes, so that closing does
// not reset a connection whose peer has not yet read what was sent to it.
func (c *Conn) CloseAndDrain(code int, reason string, wait time.Duration) error {
	c.sendClose(code, reason)
	if c.dl != nil {
		c.dl.SetReadDeadline(time.Now().Add(wait))
		for {
			// The rest of the current frame first, if a read stopped in it.
			for c.remaining > 0 {
				n, err := c.br.Discard(int(min(c.remaining, 1<<30)))
				c.remaining -= int64(n)
				if err != nil {
					return c.CloseNow()
				}
			}
			if _, err := c.nextDataFrame(); err != nil {
				break
			}
		}
	}
	return c.CloseNow()
}

func (c *Conn) sendClose(code int, reason string) {
	var b [maxControlPayload]byte
	c.sendControl(OpClose, appendClosePayload(b[:0], code, reason), false)
}

// appendClosePayload appends a close frame's payload: code, then reason,
// made valid UTF-8 and cut at a rune boundary to fit in a control frame,
// since the peer fails the connection on a reason that is not UTF-8.
func appendClosePayload(b []byte, code int, reason string) []byte {
	if !utf8.ValidString(reason) {
		reason = strings.ToValidUTF8(reason, "\uFFFD")
	}
	if room := maxControlPayload - 2; len(reason) > room {
		cut := room
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	return append(b, reason...)
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
// WebSocket frame. Message boundaries mean nothing to it, and a message may
// be of any size: yamux's own flow control bounds what the peer may send.
type Stream struct {
	c *Conn
}

var _ net.Conn = (*Stream)(nil)

// Read reads payload bytes of binary messages. A read that fails at the
// read deadline can be repeated: it loses nothing.
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
			// protocol/spec.md: unsupported data, not a broken frame.
			c.fail(StatusUnsupportedData, "text message in a binary stream")
			return 0, fmt.Errorf("%w: text message in a binary stream", ErrProtocol)
		}
	}
	if int64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.br.Read(p)
	c.remaining -= int64(n)
	c.unmask(p[:n])
	if err != nil {
		return n, c.readErr(err)
	}
	return n, nil
}

// ReadIsBuffered reports that reads are buffered here (64 KiB), so that
// the yamux session does not put a buffer of its own in front.
func (s *Stream) ReadIsBuffered() bool { return true }

// Write sends p as one binary frame.
func (s *Stream) Write(p []byte) (int, error) {
	if err := s.c.WriteMessage(OpBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteParts sends parts back to back as one binary frame: the yamux
// session writes a frame's header and body, or several queued frames, with
// one call.
func (s *Stream) WriteParts(parts [][]byte) error {
	c := s.c
	c.lockWriter()
	defer c.unlockWriter()
	if c.closeSent {
		return net.ErrClosed
	}
	return c.writeFrameLocked(OpBinary, true, parts...)
}

// Close closes the connection at once, without the closing handshake: yamux
// calls it when the session is already over (peer gone, keepalive failed,
// or a local Close), so there is nobody to wait for. Graceful closes go
// through Conn.Close before the session is closed.
func (s *Stream) Close() error { return s.c.CloseNow() }

// LocalAddr and RemoteAddr return a placeholder: the HTTP transport does
// not expose the underlying connection's addresses.
func (s *Stream) LocalAddr() net.Addr  { return wsAddr{} }
func (s *Stream) RemoteAddr() net.Addr { return wsAddr{} }

// SetDeadline sets both deadlines; see SetReadDeadline and
// SetWriteDeadline.
func (s *Stream) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline of the connection under the
// WebSocket, as net.Conn describes: a Read blocked at t returns an error
// that is a net.Error whose Timeout is true and that wraps
// os.ErrDeadlineExceeded, and a zero t means no deadline. Nothing read is
// lost: reading goes on once the deadline is moved. The deadline bounds
// Conn.ReadMessage too. It returns ErrDeadlineUnsupported if that
// connection has no deadlines.
func (s *Stream) SetReadDeadline(t time.Time) error {
	if s.c.dl == nil {
		return ErrDeadlineUnsupported
	}
	return s.c.dl.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline of the connection under the
// WebSocket, for Write, WriteParts and Conn.WriteMessage, as net.Conn
// describes. A write that fails at the deadline may have sent part of a
// frame, which the peer would take the next frame's bytes to complete: the
// connection sends nothing more, and later writes return the same error.
// It returns ErrDeadlineUnsupported if that connection has no deadlines.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	c := s.c
	if c.dl == nil {
		return ErrDeadlineUnsupported
	}
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.wdl = t
	return c.dl.SetWriteDeadline(t)
}

type wsAddr struct{}

func (wsAddr) Network() string { return "websocket" }
func (wsAddr) String() string  { return "websocket" }
