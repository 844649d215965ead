package h1relay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// head is a message's head as read: its bytes, from the start line to the
// blank line that ends it, and what the relay must know of it.
type head struct {
	raw []byte // the bytes as read; reused from message to message

	// Of a request: the method and request-target, spans of raw.
	method, target span
	// Of a response: the status code.
	status int

	http10        bool  // HTTP/1.0: the connection closes after the message unless it says keep-alive
	contentLength int64 // -1: none given
	chunked       bool  // Transfer-Encoding ends in chunked
	otherCoding   bool  // a Transfer-Encoding that is not chunked
	close         bool  // Connection: close (or HTTP/1.0 without keep-alive)
	keepAlive     bool  // Connection: keep-alive
	upgrade       bool  // Connection: upgrade
	expect        bool  // Expect: 100-continue
	host, accept  span  // header values
	hostLine      span  // the whole Host line, to replace
}

// span is a part of a head's raw bytes: [start, end).
type span struct{ start, end int }

func (s span) in(b []byte) []byte { return b[s.start:s.end] }
func (s span) set() bool          { return s.end > s.start }

// errHeadTooLarge is a head longer than the relay's limit.
var errHeadTooLarge = errors.New("h1relay: message head too large")

// readHead reads a message's head from br into h, at most limit bytes.
// io.EOF means the connection ended cleanly before a message began.
func readHead(br *bufio.Reader, h *head, limit int, request bool) error {
	*h = head{raw: h.raw[:0], contentLength: -1}
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if len(h.raw)+len(line) > limit {
			// Kept, so that the caller does not take a head too large in
			// its first read for a connection that ended before a message.
			h.raw = append(h.raw, line...)
			return errHeadTooLarge
		}
		if err != nil {
			if err == bufio.ErrBufferFull {
				// A line longer than the buffer: keep what came and read on.
				h.raw = append(h.raw, line...)
				continue
			}
			if len(h.raw) == 0 && len(line) == 0 {
				return err // io.EOF between messages
			}
			return fmt.Errorf("h1relay: message head cut short: %w", err)
		}
		start := len(h.raw)
		h.raw = append(h.raw, line...)
		// The whole line, which may have started in an earlier read.
		lineStart := bytes.LastIndexByte(h.raw[:len(h.raw)-1], '\n') + 1
		if lineStart < start {
			start = lineStart
		}
		text := trimEOL(h.raw[start:])
		if first {
			if len(text) == 0 {
				// RFC 9112 section 2.2: ignore empty lines before a request.
				h.raw = h.raw[:0]
				continue
			}
			first = false
			if err := h.parseStart(text, start, request); err != nil {
				return err
			}
			continue
		}
		if len(text) == 0 {
			return h.settle(request)
		}
		if err := h.parseField(text, start); err != nil {
			return err
		}
	}
}

// trimEOL drops a line's CRLF or LF.
func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// parseStart reads a request line (method, target, version) or a status
// line (version, code, reason), which starts at raw[at].
func (h *head) parseStart(line []byte, at int, request bool) error {
	if request {
		m := bytes.IndexByte(line, ' ')
		t := bytes.LastIndexByte(line, ' ')
		if m <= 0 || t <= m+1 {
			return fmt.Errorf("h1relay: malformed request line %q", line)
		}
		h.method = span{at, at + m}
		h.target = span{at + m + 1, at + t}
		return h.version(line[t+1:])
	}
	v, rest, _ := bytes.Cut(line, []byte(" "))
	if err := h.version(v); err != nil {
		return err
	}
	if len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ') {
		return fmt.Errorf("h1relay: malformed status line %q", line)
	}
	code, err := strconv.Atoi(string(rest[:3]))
	if err != nil || code < 100 {
		return fmt.Errorf("h1relay: malformed status line %q", line)
	}
	h.status = code
	return nil
}

func (h *head) version(v []byte) error {
	switch string(v) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		h.http10 = true
	default:
		return fmt.Errorf("h1relay: unsupported protocol version %q", v)
	}
	return nil
}

// parseField reads one header field line, which starts at raw[at], and
// notes what the relay needs of it.
func (h *head) parseField(line []byte, at int) error {
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok || len(name) == 0 || name[0] == ' ' || name[0] == '\t' || bytes.ContainsAny(name, " \t") {
		// Obsolete line folding, or no field name: nothing net/http
		// accepts either.
		return fmt.Errorf("h1relay: malformed header line %q", line)
	}
	value = bytes.Trim(value, " \t")
	vstart := at + len(line) - len(bytes.TrimLeft(line[len(name)+1:], " \t"))
	val := span{vstart, vstart + len(value)}
	switch {
	case equalFold(name, "content-length"):
		n, err := strconv.ParseInt(string(value), 10, 64)
		if err != nil || n < 0 || value[0] == '+' {
			return fmt.Errorf("h1relay: bad Content-Length %q", value)
		}
		if h.contentLength >= 0 && h.contentLength != n {
			return errors.New("h1relay: conflicting Content-Length headers")
		}
		h.contentLength = n
	case equalFold(name, "transfer-encoding"):
		// The last coding decides (RFC 9112 section 6.3).
		last := value
		if i := bytes.LastIndexByte(value, ','); i >= 0 {
			last = bytes.Trim(value[i+1:], " \t")
		}
		if equalFold(last, "chunked") {
			h.chunked, h.otherCoding = true, false
		} else {
			h.chunked, h.otherCoding = false, true
		}
	case equalFold(name, "connection"):
		for tok := range bytes.SplitSeq(value, []byte(",")) {
			tok = bytes.Trim(tok, " \t")
			switch {
			case equalFold(tok, "close"):
				h.close = true
			case equalFold(tok, "keep-alive"):
				h.keepAlive = true
			case equalFold(tok, "upgrade"):
				h.upgrade = true
			}
		}
	case equalFold(name, "host"):
		h.host = val
		h.hostLine = span{at, at + len(line)}
	case equalFold(name, "accept"):
		h.accept = val
	case equalFold(name, "expect"):
		h.expect = equalFold(value, "100-continue")
	}
	return nil
}

// settle checks the head's framing once it has been read.
func (h *head) settle(request bool) error {
	if h.http10 && !h.keepAlive {
		h.close = true
	}
	if h.chunked || h.otherCoding {
		// Transfer-Encoding overrides Content-Length (RFC 9112 section 6.3).
		h.contentLength = -1
	}
	if request && h.otherCoding {
		return errors.New("h1relay: request with a transfer coding other than chunked")
	}
	return nil
}

// equalFold is ASCII case-insensitive comparison with a lower-case s.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// bodyless reports whether a response with status to a request with
// method has no body whatever its head says (RFC 9112 section 6.3).
func bodyless(method []byte, status int) bool {
	return string(method) == "HEAD" || status == 204 || status == 304 || (status >= 100 && status < 200)
}
