package h1relay

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// upstream is a connection to the upstream server, with its buffers.
type upstream struct {
	c         net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	reused    bool      // it served an exchange before this one
	idleSince time.Time // while in the pool
}

// bufSize is the size of the read and write buffers of an upstream
// connection, and of the write buffer of a connection being served, where
// an answer's head and body are joined. clientBufSize is its read
// buffer's: such a connection may be one of hundreds a gateway keeps open
// (idle streams), a request's head and small body fit, and a large body is
// read into Buffers' instead (measured: no slower).
const (
	bufSize       = 16 << 10
	clientBufSize = 4 << 10
)

// probeAfter is how long a connection must have been idle before the
// relay checks, before sending it a request, that the upstream has not
// closed it or written to it meanwhile (a server's 408 before it closes an
// idle connection would otherwise pass for the next request's answer).
// A connection the upstream closes as a request goes out is still met:
// a request that may be sent twice is then retried on a new one.
const probeAfter = time.Second

// get returns an idle upstream connection, or dials one with the context
// dial gives (the exchange's: a peer that leaves ends it).
func (r *Relay) get(dial func() (context.Context, func())) (*upstream, error) {
	now := time.Now()
	for {
		r.mu.Lock()
		n := len(r.idle)
		if n == 0 {
			r.mu.Unlock()
			break
		}
		u := r.idle[n-1]
		r.idle[n-1] = nil
		r.idle = r.idle[:n-1]
		r.mu.Unlock()
		if now.Sub(u.idleSince) > r.idleTimeout() || (now.Sub(u.idleSince) > probeAfter && !alive(u)) {
			u.c.Close()
			continue
		}
		u.reused = true
		return u, nil
	}
	ctx, done := dial()
	c, err := r.Dial(ctx)
	done()
	if err != nil {
		return nil, err
	}
	return &upstream{c: c, br: bufio.NewReaderSize(c, bufSize), bw: bufio.NewWriterSize(c, bufSize)}, nil
}

// alive reports whether an idle connection is still open and silent:
// anything to read (a server's 408, or its close) means the connection is
// not one to send a request on.
func alive(u *upstream) bool {
	if u.br.Buffered() > 0 {
		return false
	}
	if dead, ok := peekIdle(u.c); ok {
		return !dead
	}
	// Not a socket: a read that waits a moment. (A deadline already past
	// would not do: Go fails such a read without looking.)
	u.c.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := u.br.Peek(1)
	u.c.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// put returns a connection to the pool, or closes it when the pool is full
// or closed.
func (r *Relay) put(u *upstream) {
	u.idleSince = time.Now()
	r.mu.Lock()
	if r.closed || len(r.idle) >= r.maxIdle() {
		r.mu.Unlock()
		u.c.Close()
		return
	}
	r.idle = append(r.idle, u)
	if r.sweep == nil {
		r.sweep = time.AfterFunc(r.idleTimeout(), r.sweepIdle)
	}
	r.mu.Unlock()
}

// sweepIdle closes the connections idle for longer than the idle timeout,
// and comes back while any are left.
func (r *Relay) sweepIdle() {
	now := time.Now()
	var stale []*upstream
	r.mu.Lock()
	keep := r.idle[:0]
	for _, u := range r.idle {
		if now.Sub(u.idleSince) >= r.idleTimeout() {
			stale = append(stale, u)
		} else {
			keep = append(keep, u)
		}
	}
	clear(r.idle[len(keep):])
	r.idle = keep
	r.sweep = nil
	if len(keep) > 0 && !r.closed {
		r.sweep = time.AfterFunc(r.idleTimeout()-now.Sub(keep[0].idleSince), r.sweepIdle)
	}
	r.mu.Unlock()
	for _, u := range stale {
		u.c.Close()
	}
}

// CloseIdle closes the upstream connections that are idle.
func (r *Relay) CloseIdle() {
	r.mu.Lock()
	idle := r.idle
	r.idle = nil
	if r.sweep != nil {
		r.sweep.Stop()
		r.sweep = nil
	}
	r.mu.Unlock()
	for _, u := range idle {
		u.c.Close()
	}
}

func (r *Relay) idleTimeout() time.Duration {
	if r.IdleTimeout > 0 {
		return r.IdleTimeout
	}
	return 90 * time.Second
}

func (r *Relay) maxIdle() int {
	if r.MaxIdle > 0 {
		return r.MaxIdle
	}
	return 256
}
