package websocket

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// UpgradeError is Accept's refusal of a request that is not a valid
// WebSocket opening handshake. The response is left to the caller, with
// the headers RFC 6455 asks for already set on it.
type UpgradeError struct {
	// Status is the HTTP status RFC 6455 suggests: 426 for a request that
	// is not an upgrade or asks for another version, 405 for a method
	// other than GET, 400 for a malformed key.
	Status int
	Reason string
}

func (e *UpgradeError) Error() string { return "websocket upgrade refused: " + e.Reason }

// ErrNotHijackable is returned (wrapped) by Accept when the ResponseWriter
// cannot hand its connection over, as with HTTP/2. w is then still
// unanswered.
var ErrNotHijackable = errors.New("websocket: the connection cannot be taken over from the HTTP server")

// Accept completes the opening handshake of r as the server (RFC 6455
// section 4.2) and takes the connection over. It selects the first
// subprotocol the client offers that is in subprotocols; with no match it
// selects none, and the caller decides whether to go on. Extensions are
// not negotiated: no compression.
//
// A request that is not a valid upgrade gets an *UpgradeError, and a
// ResponseWriter that cannot hand over its connection ErrNotHijackable; in
// both cases w is left for the caller to answer. Headers set on w before
// Accept are sent with the 101 response. The connection has no deadlines
// once accepted.
func Accept(w http.ResponseWriter, r *http.Request, subprotocols []string) (*Conn, error) {
	h := w.Header()
	refuse := func(status int, reason string) (*Conn, error) {
		return nil, &UpgradeError{Status: status, Reason: reason}
	}
	if !r.ProtoAtLeast(1, 1) || !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
		return refuse(http.StatusUpgradeRequired, "not a WebSocket upgrade request")
	}
	if r.Method != http.MethodGet {
		h.Set("Allow", http.MethodGet)
		return refuse(http.StatusMethodNotAllowed, "the upgrade request must be a GET, not "+r.Method)
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		h.Set("Sec-WebSocket-Version", "13")
		return refuse(http.StatusUpgradeRequired, "only WebSocket version 13 is supported")
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return refuse(http.StatusBadRequest, "the request needs exactly one Sec-WebSocket-Key")
	}
	key := strings.TrimSpace(keys[0])
	if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != 16 {
		return refuse(http.StatusBadRequest, "Sec-WebSocket-Key is not 16 bytes in base64")
	}
	proto := selectSubprotocol(r.Header, subprotocols)

	netConn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotHijackable, err)
	}
	// The server may have set deadlines for the request; the connection
	// outlives it.
	netConn.SetDeadline(time.Time{})

	resp := make([]byte, 0, 256)
	resp = append(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	resp = append(resp, acceptKey(key)...)
	resp = append(resp, "\r\n"...)
	if proto != "" {
		resp = append(resp, "Sec-WebSocket-Protocol: "+proto+"\r\n"...)
	}
	for k, vs := range h {
		switch http.CanonicalHeaderKey(k) {
		case "Upgrade", "Connection", "Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions", "Content-Length", "Transfer-Encoding":
			continue
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
	if _, err := netConn.Write(resp); err != nil {
		netConn.Close()
		return nil, fmt.Errorf("websocket accept: %w", err)
	}

	// Frames the client sent right behind its request may already be in
	// the server's read buffer: read those first.
	var r0 io.Reader = netConn
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		r0 = &prefixReader{early: append([]byte(nil), early...), r: netConn}
	}
	return newConn(netConn, r0, proto, true), nil
}

// selectSubprotocol returns the first subprotocol the client offers that
// the server supports, or "".
func selectSubprotocol(h http.Header, supported []string) string {
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); slices.Contains(supported, p) {
				return p
			}
		}
	}
	return ""
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
