package tunnel

import (
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// publicConn is a public client's connection taken over by a WebSocket
// upgrade through a tunnel (statusWriter.Hijack). Each write must make
// progress within stall (Server.StallTimeout; reads are not bounded: a
// WebSocket may be quiet for as long as it likes). For a WebSocket, it
// follows the frames the agent's side writes, so that a gateway shutting
// down can end the connection cleanly: a close frame with 1001 (going
// away) between two frames, never inside one.
type publicConn struct {
	net.Conn
	stall time.Duration
	srv   *Server // set for a WebSocket: the Server that tracks it

	mu        sync.Mutex
	hdr       [14]byte // a frame header being written, so far
	nhdr      int
	remaining uint64      // payload bytes of the current frame still to come
	goAway    atomic.Bool // close with 1001 at the next frame boundary
	closed    bool        // the close frame was sent: nothing more may be
}

var errGoingAway = errors.New("gateway shutting down: the WebSocket was closed with 1001")

func (c *publicConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, errGoingAway
	}
	if c.stall > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.stall))
	}
	n, err := c.Conn.Write(p)
	if c.srv != nil {
		c.follow(p[:n])
		if err == nil && c.goAway.Load() && c.atBoundary() {
			c.sendGoingAway()
		}
	}
	return n, err
}

// follow advances the frame parser over bytes written to the client
// (server frames: RFC 6455 section 5.2, unmasked).
func (c *publicConn) follow(p []byte) {
	for len(p) > 0 {
		if c.remaining > 0 {
			k := min(uint64(len(p)), c.remaining)
			c.remaining -= k
			p = p[k:]
			continue
		}
		c.hdr[c.nhdr] = p[0]
		c.nhdr++
		p = p[1:]
		if need := headerLen(c.hdr[:c.nhdr]); c.nhdr == need {
			c.remaining = payloadLen(c.hdr[:c.nhdr])
			c.nhdr = 0
		}
	}
}

// headerLen returns the length of the frame header that starts with b, as
// far as b tells (2 until the length byte is known).
func headerLen(b []byte) int {
	if len(b) < 2 {
		return 2
	}
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		n += 4 // a mask key, which a server never sends
	}
	return n
}

func payloadLen(h []byte) uint64 {
	switch l := h[1] & 0x7f; l {
	case 126:
		return uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		return binary.BigEndian.Uint64(h[2:])
	default:
		return uint64(l)
	}
}

func (c *publicConn) atBoundary() bool { return c.remaining == 0 && c.nhdr == 0 }

// sendGoingAway writes the close frame; c.mu is held.
func (c *publicConn) sendGoingAway() {
	const reason = "gateway shutting down"
	frame := append([]byte{0x88, byte(2 + len(reason)), 0x03, 0xe9}, reason...)
	c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.Conn.Write(frame)
	c.closed = true
}

// goingAway closes the WebSocket with 1001 now if no frame is being
// written, or else as soon as the frame being written ends (the write in
// progress does it, so that a client that reads slowly cannot hold the
// shutdown up).
func (c *publicConn) goingAway() {
	c.goAway.Store(true)
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	if !c.closed && c.atBoundary() {
		c.sendGoingAway()
	}
}

func (c *publicConn) Close() error {
	if c.srv != nil {
		c.srv.mu.Lock()
		delete(c.srv.upgrades, c)
		c.srv.mu.Unlock()
	}
	return c.Conn.Close()
}

// isWebSocketUpgrade reports whether r asks for a WebSocket upgrade.
func isWebSocketUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}
