package websocket

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// SwitchProtocols answers an HTTP/1.1 upgrade request with 101 and takes
// its connection over from w's server. head is what follows the status
// line before the handler's headers, as "Name: value\r\n" lines (the
// Upgrade and Connection of the protocol switched to, say). The headers
// set on w are sent too, except Upgrade, Connection, Content-Length,
// Transfer-Encoding and those named in skip (canonical names), and any
// with a line break. The connection has no deadlines. Reading r returns
// what the client sent behind its request (bytes the server had already
// buffered come first). If w cannot hand its connection over, the error
// wraps ErrNotHijackable and w is still unanswered.
func SwitchProtocols(w http.ResponseWriter, head string, skip ...string) (conn net.Conn, r io.Reader, err error) {
	h := w.Header()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotHijackable, err)
	}
	// The server may have set deadlines for the request; the connection
	// outlives it.
	conn.SetDeadline(time.Time{})
	resp := make([]byte, 0, 256)
	resp = append(resp, "HTTP/1.1 101 Switching Protocols\r\n"...)
	resp = append(resp, head...)
	for k, vs := range h {
		switch ck := http.CanonicalHeaderKey(k); ck {
		case "Upgrade", "Connection", "Content-Length", "Transfer-Encoding":
			continue
		default:
			if slices.Contains(skip, ck) {
				continue
			}
		}
		for _, v := range vs {
			// net/http has already refused values with line breaks from
			// clients; these come from the handler, so check anyway.
			if strings.ContainsAny(k+v, "\r\n") {
				continue
			}
			resp = append(resp, k+": "+v+"\r\n"...)
		}
	}
	resp = append(resp, "\r\n"...)
	if _, err := conn.Write(resp); err != nil {
		conn.Close()
		return nil, nil, err
	}
	r = conn
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		r = &prefixReader{early: append([]byte(nil), early...), r: conn}
	}
	return conn, r, nil
}

// HeaderHasToken reports whether the comma-separated header name of h
// holds token, ignoring case (Connection: keep-alive, Upgrade, say).
func HeaderHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// prefixReader reads early, then r.
type prefixReader struct {
	early []byte
	r     io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.early) > 0 {
		n := copy(b, p.early)
		p.early = p.early[n:]
		return n, nil
	}
	return p.r.Read(b)
}
