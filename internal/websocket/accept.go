package websocket

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
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
	if !r.ProtoAtLeast(1, 1) || !HeaderHasToken(r.Header, "Connection", "upgrade") || !HeaderHasToken(r.Header, "Upgrade", "websocket") {
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

	head := "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acceptKey(key) + "\r\n"
	if proto != "" {
		head += "Sec-WebSocket-Protocol: " + proto + "\r\n"
	}
	netConn, r0, err := SwitchProtocols(w, head, "Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions")
	if err != nil {
		if errors.Is(err, ErrNotHijackable) {
			return nil, err
		}
		return nil, fmt.Errorf("websocket accept: %w", err)
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
