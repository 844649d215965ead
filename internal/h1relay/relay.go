// Package h1relay relays HTTP/1.1 exchanges from one connection to an
// upstream server without taking them apart: it reads each message's head
// for what it must know (where the body ends, whether the connection
// stays open, whether the protocol changes) and copies the rest, framing
// and trailers included, as bytes. An upgrade (101 Switching Protocols)
// becomes a byte copy both ways.
//
// It is what a reverse proxy does with far less work per request, for a
// proxy that changes nothing of a message but, optionally, its Host
// header: no header map is built, no goroutine runs per exchange but for
// a request body that must stream while the response is read, and a small
// message leaves in one write. It trusts the connection it serves to
// speak well-formed HTTP/1.1 (net/http's output) and checks only the
// framing of what the upstream sends, leaving the rest to the peer that
// parses the response in full.
package h1relay

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"
)

// Relay relays the exchanges of connections handed to Serve to an upstream
// server, over connections it keeps open between exchanges. Set its fields
// before the first Serve.
type Relay struct {
	// Dial opens a connection to the upstream server.
	Dial func(ctx context.Context) (net.Conn, error)
	// Host, when not empty, replaces each request's Host header.
	Host string
	// MaxHeaderBytes bounds a request's and a response's head; 0 means
	// 1 MiB. A request over it is answered 431, a response over it is a
	// failure (Fail).
	MaxHeaderBytes int
	// Buffers lends the buffers of large copies.
	Buffers httputil.BufferPool
	// Fail writes the answer to a request the upstream did not answer: it
	// could not be reached, closed the connection first, sent what is not
	// an HTTP/1.1 response head, or switched protocols unasked. r has the
	// request's method, URL, Host and Accept header only. Nil: a plain
	// 502.
	Fail func(w http.ResponseWriter, r *http.Request, err error)
	// Done, when set, is called as each exchange ends, with the request's
	// method and target, the final status sent (0 if none) and how long
	// the exchange took.
	Done func(method, target string, status int, d time.Duration)
	// MaxIdle bounds the upstream connections kept open while idle; 0
	// means 256.
	MaxIdle int
	// IdleTimeout closes an upstream connection idle for longer; 0 means
	// 90 s.
	IdleTimeout time.Duration

	mu     sync.Mutex
	idle   []*upstream // LIFO: the last one in is the first out
	sweep  *time.Timer
	closed bool
	active map[*conn]struct{}
}

// PeerCloser is a connection that can say when its peer has closed it,
// without a read waiting on it: a multiplexed stream's. NotifyPeerClose
// arranges for f to be called then, reporting false if that has happened
// already; StopNotifyPeerClose takes f back, reporting whether it had not
// been called.
type PeerCloser interface {
	NotifyPeerClose(f func()) bool
	StopNotifyPeerClose() bool
}

// ErrClosed is Serve's error once Close has been called.
var ErrClosed = errors.New("h1relay: relay closed")

// conn is a connection being served.
type conn struct {
	r       *Relay
	c       net.Conn
	pc      PeerCloser // nil: a peer's close is seen only by reading
	br      *bufio.Reader
	bw      *bufio.Writer
	abortFn func() // conn.abort, made once
	req     head
	resp    head
	out     []byte // the request head as sent

	mu      sync.Mutex
	up      *upstream          // the upstream connection of the exchange in progress
	dialing context.CancelFunc // ends the dial of the exchange in progress
	aborted bool
}

// Serve relays the exchanges that arrive on c until it closes or a
// message cannot be relayed, and closes c. When c is a PeerCloser, a peer
// that closes c while an exchange waits for the upstream (a client that
// left) ends that exchange and its upstream connection at once;
// otherwise pc may say so for c (nil: nothing does).
func (r *Relay) Serve(c net.Conn, pc PeerCloser) error {
	if pc == nil {
		pc, _ = c.(PeerCloser)
	}
	cn := &conn{r: r, c: c, pc: pc, br: bufio.NewReaderSize(c, clientBufSize), bw: bufio.NewWriterSize(c, bufSize)}
	cn.abortFn = cn.abort
	if !r.track(cn, true) {
		c.Close()
		return ErrClosed
	}
	defer r.track(cn, false)
	defer c.Close()
	for {
		if err := readHead(cn.br, &cn.req, r.maxHeader(), true); err != nil {
			if len(cn.req.raw) == 0 {
				return nil // the peer closed between requests
			}
			status := "400 Bad Request"
			if err == errHeadTooLarge {
				status = "431 Request Header Fields Too Large"
			}
			cn.bw.WriteString("HTTP/1.1 " + status + "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			cn.bw.Flush()
			return err
		}
		keep, err := cn.exchange()
		if !keep {
			return err
		}
	}
}

// track adds cn to the connections Close ends, or removes it; adding
// reports false once the relay is closed.
func (r *Relay) track(cn *conn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !add {
		delete(r.active, cn)
		return true
	}
	if r.closed {
		return false
	}
	if r.active == nil {
		r.active = make(map[*conn]struct{})
	}
	r.active[cn] = struct{}{}
	return true
}

// Close ends the relay: it closes the idle upstream connections and every
// connection being served, with its upstream connection, and makes Serve
// refuse new ones.
func (r *Relay) Close() {
	r.mu.Lock()
	r.closed = true
	active := make([]*conn, 0, len(r.active))
	for cn := range r.active {
		active = append(active, cn)
	}
	r.mu.Unlock()
	r.CloseIdle()
	for _, cn := range active {
		cn.c.Close()
		cn.abort()
	}
}

// abort ends the exchange in progress: its peer has gone, or the relay is
// closing. Closing the upstream connection makes whatever waits on it
// return.
func (cn *conn) abort() {
	cn.mu.Lock()
	cn.aborted = true
	up, dialing := cn.up, cn.dialing
	cn.mu.Unlock()
	if up != nil {
		up.c.Close()
	}
	if dialing != nil {
		dialing()
	}
}

// dialContext returns the context of the exchange's dial, which abort
// ends, and its release.
func (cn *conn) dialContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	cn.mu.Lock()
	if cn.aborted {
		cancel()
	}
	cn.dialing = cancel
	cn.mu.Unlock()
	return ctx, func() {
		cn.mu.Lock()
		cn.dialing = nil
		cn.mu.Unlock()
		cancel()
	}
}

// use makes up the exchange's upstream connection; it reports false,
// having closed up, if the exchange was aborted meanwhile.
func (cn *conn) use(up *upstream) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.aborted {
		up.c.Close()
		return false
	}
	cn.up = up
	return true
}

func (r *Relay) maxHeader() int {
	if r.MaxHeaderBytes > 0 {
		return r.MaxHeaderBytes
	}
	return 1 << 20
}

// requestHead returns the head to send upstream: the one read, with the
// Host header replaced when the relay says so.
func (cn *conn) requestHead() []byte {
	h := &cn.req
	host := cn.r.Host
	if host == "" {
		return h.raw
	}
	out := cn.out[:0]
	if h.hostLine.set() {
		out = append(out, h.raw[:h.hostLine.start]...)
		out = append(out, "Host: "...)
		out = append(out, host...)
		out = append(out, h.raw[h.hostLine.end:]...)
	} else {
		eol := h.target.end // the request line ends after the version
		for eol < len(h.raw) && h.raw[eol] != '\n' {
			eol++
		}
		out = append(out, h.raw[:eol+1]...)
		out = append(out, "Host: "...)
		out = append(out, host...)
		out = append(out, "\r\n"...)
		out = append(out, h.raw[eol+1:]...)
	}
	cn.out = out
	return out
}

// errPeerGone is an exchange ended because its peer closed the connection.
var errPeerGone = errors.New("h1relay: the peer closed the connection")

// watch starts or stops watching for the peer's close.
func (cn *conn) watch(on bool) bool {
	if cn.pc == nil {
		return true
	}
	if on {
		return cn.pc.NotifyPeerClose(cn.abortFn)
	}
	cn.pc.StopNotifyPeerClose()
	return true
}

// isAborted reports whether abort has been called: the peer left, or the
// relay is closing. It stays so for the rest of the connection.
func (cn *conn) isAborted() bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.aborted
}

// release ends the exchange's use of up: back to the pool when keep,
// closed otherwise.
func (cn *conn) release(up *upstream, keep bool) {
	cn.mu.Lock()
	cn.up = nil
	aborted := cn.aborted
	cn.mu.Unlock()
	if keep && !aborted {
		cn.r.put(up)
	} else {
		up.c.Close()
	}
}

// bodyCopy is a request body being copied upstream on a goroutine of its
// own while the response is read.
type bodyCopy struct {
	read atomic.Bool // all of the body has been read from the client
	done chan error
}
