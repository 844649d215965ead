package tunnel

import (
	"bufio"
	"net"
	"net/http"
	"time"
)

// statusWriter records the status and body size of a response. It unwraps
// for http.ResponseController, so flushing and hijacking (WebSocket
// upgrades) reach the real writer.
//
// With stall set (the gateway's public side), every write must make
// progress within stall (Server.StallTimeout): a client that stops
// reading is given up on, instead of holding the response's buffers
// forever. The deadline is armed before each write, so an idle stream with
// nothing to send is not cut, and a connection taken over (a WebSocket)
// keeps the rule through publicConn.
type statusWriter struct {
	http.ResponseWriter
	status  int
	written int64
	stall   time.Duration
	rc      http.ResponseController // set with stall
	// srv is set for a WebSocket upgrade: the hijacked connection is then
	// tracked, so that a shutdown can close it with 1001.
	srv *Server
}

// arm moves the write deadline stall from now, if there is one.
func (w *statusWriter) arm() {
	if w.stall > 0 {
		w.rc.SetWriteDeadline(time.Now().Add(w.stall))
	}
}

// disarm clears the deadlines the request armed, so that the connection's
// next request starts with none of them (http.Server sets its own).
func (w *statusWriter) disarm() {
	if w.stall > 0 {
		w.rc.SetWriteDeadline(time.Time{})
		w.rc.SetReadDeadline(time.Time{})
	}
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.arm()
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	return n, err
}

// Unwrap returns the underlying ResponseWriter.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack takes the connection over for a WebSocket (an agent's, or one
// passing through a tunnel), which records the exchange as 101: the
// upgrade's answer is written on the hijacked connection, not through
// WriteHeader.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	if err == nil && (w.stall > 0 || w.srv != nil) {
		pc := &publicConn{Conn: c, stall: w.stall, srv: w.srv}
		if w.srv != nil {
			w.srv.mu.Lock()
			w.srv.upgrades[pc] = struct{}{}
			w.srv.mu.Unlock()
		}
		c = pc
	}
	return c, brw, err
}

// Flush flushes the underlying writer; ReverseProxy flushes streaming
// responses (SSE) through it.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.arm()
	http.NewResponseController(w.ResponseWriter).Flush()
}
