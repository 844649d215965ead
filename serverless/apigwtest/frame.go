package apigwtest

import (
	"encoding/binary"
	"errors"
	"io"
	"unicode/utf8"
)

// The server side of RFC 6455 framing, written here rather than taken from
// a WebSocket library because the emulator must see what a library hides:
// the size of every frame (API Gateway closes a connection whose client
// sends a frame over 32 KiB, whatever the message size), the moment a
// message completes (idle timer, one invocation per message), and the
// order of the opening handshake against the $connect invocation.

// Opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close status codes (RFC 6455 section 7.4.1) the emulator sends or records.
const (
	statusNormalClosure   = 1000
	statusGoingAway       = 1001
	statusProtocolError   = 1002
	statusNoStatus        = 1005 // recorded when a close frame carries no code; never sent
	statusAbnormalClosure = 1006 // recorded when the TCP connection ends without a close frame; never sent
	statusInvalidPayload  = 1007
	statusMessageTooBig   = 1009
)

// maxControlPayload is the largest payload of a control frame.
const maxControlPayload = 125

var (
	errFrameLength = errors.New("apigw: frame length has its most significant bit set")
	errCloseFrame  = errors.New("apigw: malformed close frame payload")
)

// frameHeader is one decoded frame header.
type frameHeader struct {
	fin    bool
	rsv    byte // RSV1-3 in the low three bits; no extension is negotiated, so they must be zero
	opcode byte
	masked bool
	length int64
	key    [4]byte
}

// isControl reports whether the opcode is a control opcode (close, ping,
// pong or a reserved one).
func (h frameHeader) isControl() bool { return h.opcode&0x8 != 0 }

// readFrameHeader reads one frame header from r. It fails on a short read
// and on a 64-bit length with the top bit set; every other check (masking,
// opcodes, sizes) belongs to the caller, which knows the connection state.
func readFrameHeader(r io.Reader) (frameHeader, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return frameHeader{}, err
	}
	h := frameHeader{
		fin:    b[0]&0x80 != 0,
		rsv:    (b[0] >> 4) & 0x7,
		opcode: b[0] & 0xF,
		masked: b[1]&0x80 != 0,
	}
	switch n := b[1] & 0x7F; n {
	case 126:
		if _, err := io.ReadFull(r, b[:2]); err != nil {
			return frameHeader{}, noEOF(err)
		}
		h.length = int64(binary.BigEndian.Uint16(b[:2]))
	case 127:
		if _, err := io.ReadFull(r, b[:8]); err != nil {
			return frameHeader{}, noEOF(err)
		}
		v := binary.BigEndian.Uint64(b[:8])
		if v>>63 != 0 {
			return frameHeader{}, errFrameLength
		}
		h.length = int64(v)
	default:
		h.length = int64(n)
	}
	if h.masked {
		if _, err := io.ReadFull(r, h.key[:]); err != nil {
			return frameHeader{}, noEOF(err)
		}
	}
	return h, nil
}

// noEOF turns an EOF inside a header into io.ErrUnexpectedEOF: only an EOF
// before the first byte is a clean end of stream.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendFrameHeader appends the encoding of h to dst, using the shortest
// length form. The emulator writes unmasked frames (it is the server);
// masked headers exist for tests and the fuzz target.
func appendFrameHeader(dst []byte, h frameHeader) []byte {
	b0 := h.opcode&0xF | (h.rsv&0x7)<<4
	if h.fin {
		b0 |= 0x80
	}
	var b1 byte
	if h.masked {
		b1 = 0x80
	}
	switch {
	case h.length <= 125:
		dst = append(dst, b0, b1|byte(h.length))
	case h.length <= 0xFFFF:
		dst = append(dst, b0, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(h.length))
	default:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(h.length))
	}
	if h.masked {
		dst = append(dst, h.key[:]...)
	}
	return dst
}

// appendFrame appends one unmasked frame carrying payload to dst.
func appendFrame(dst []byte, fin bool, opcode byte, payload []byte) []byte {
	dst = appendFrameHeader(dst, frameHeader{fin: fin, opcode: opcode, length: int64(len(payload))})
	return append(dst, payload...)
}

// appendMessage appends message p as frames of at most maxFrame payload
// bytes: the first with opcode, the rest as continuations. An empty
// message is one empty frame.
func appendMessage(dst []byte, opcode byte, p []byte, maxFrame int) []byte {
	op := opcode
	for {
		n := min(len(p), maxFrame)
		dst = appendFrame(dst, n == len(p), op, p[:n])
		p = p[n:]
		if len(p) == 0 {
			return dst
		}
		op = opContinuation
	}
}

// unmask XORs b with key, starting at key position pos, and returns the
// position after b, so a payload can be unmasked in pieces.
func unmask(key [4]byte, pos int, b []byte) int {
	for i := range b {
		b[i] ^= key[pos&3]
		pos++
	}
	return pos & 3
}

// closePayload encodes a close frame payload. statusNoStatus encodes as
// the empty payload the RFC asks for.
func closePayload(code int, reason string) []byte {
	if code == statusNoStatus {
		return nil
	}
	if len(reason) > maxControlPayload-2 {
		// Cut on a rune boundary: the peer fails a close whose reason is
		// not UTF-8.
		n := maxControlPayload - 2
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n--
		}
		reason = reason[:n]
	}
	p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	return append(p, reason...)
}

// parseClosePayload decodes a close frame payload. An empty payload is
// statusNoStatus; a one-byte payload, a code the RFC forbids on the wire
// and a reason that is not UTF-8 are errors (close with 1002).
func parseClosePayload(p []byte) (code int, reason string, err error) {
	switch {
	case len(p) == 0:
		return statusNoStatus, "", nil
	case len(p) == 1:
		return 0, "", errCloseFrame
	}
	code = int(binary.BigEndian.Uint16(p))
	if !validWireCloseCode(code) || !utf8.Valid(p[2:]) {
		return 0, "", errCloseFrame
	}
	return code, string(p[2:]), nil
}

// validWireCloseCode reports whether a peer may send code (RFC 6455
// section 7.4: 1000-1003, 1007-1014 and the registered or private range
// 3000-4999; 1004-1006 and 1015 are reserved).
func validWireCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
