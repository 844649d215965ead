package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/http-tunnel/tunnel/internal/yamux"
	"github.com/http-tunnel/tunnel/observability"
	"github.com/http-tunnel/tunnel/ratelimit"
	"go.opentelemetry.io/otel/metric"
)

// validate checks a public request against the size limits and refuses
// path traversal.
func (s *Server) validate(r *http.Request) *Error {
	if len(r.RequestURI) > orDefault(s.MaxURIBytes, DefaultMaxURIBytes) {
		return &Error{Code: CodeURITooLong, Message: ErrURITooLong.Message}
	}
	if len(r.Header) > orDefault(s.MaxHeaderCount, DefaultMaxHeaderCount) || headerBytes(r) > orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes) {
		return &Error{Code: CodeHeadersTooLarge, Message: ErrHeadersTooLarge.Message}
	}
	// r.URL.Path is decoded, so this also catches %2e%2e and %2f.
	for seg := range strings.SplitSeq(r.URL.Path, "/") {
		if seg == ".." {
			return &Error{Code: CodeInvalidRequest, Message: "path traversal is not allowed"}
		}
	}
	return nil
}

// allow asks lim about key and answers 429 (or 503 when the limiter failed
// and LimiterFailClosed is set) if the request may not proceed.
func (s *Server) allow(ctx context.Context, w http.ResponseWriter, lim ratelimit.Limiter, key, kind string, attrs ...slog.Attr) bool {
	attrs = append(attrs, slog.String("limiter", kind))
	d, err := lim.Allow(ctx, key)
	if err != nil {
		if s.LimiterFailClosed {
			s.fail(ctx, w, &Error{Code: CodeUnavailable, Message: "rate limiter unavailable", Err: err}, attrs...)
			return false
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "rate limiter failed; allowing", append(attrs, slog.Any("err", err))...)
		return true
	}
	if d.Allowed {
		return true
	}
	s.inst.RateLimited.Add(ctx, 1, metric.WithAttributes(observability.AttrLimiter.String(kind)))
	secs := int64((d.RetryAfter + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", fmt.Sprint(max(secs, 1)))
	s.fail(ctx, w, &Error{Code: CodeRateLimited, Message: ErrRateLimited.Message}, attrs...)
	return false
}

// countedBody counts a request body as the agent reads it, and cuts it off
// past a limit (left < 0: none), so that the agent never gets more than
// the limit. It records why reading stopped early, so that a failed
// forward is answered by whose fault it was (forwardError): exceeded for
// 413, stalled or readErr for a body the client stalled or sent broken
// (400).
type countedBody struct {
	io.ReadCloser
	// rc and stall bound each read of the body: a client that stops
	// sending it is given up on (Server.StallTimeout). Zero stall: none.
	rc       *http.ResponseController
	stall    time.Duration
	timer    *time.Timer // fires when a read has waited stall
	left     int64
	n        atomic.Int64
	exceeded atomic.Bool
	stalled  atomic.Bool           // set before the stalled read is cut
	readErr  atomic.Pointer[error] // the first read error other than EOF
	// touched is set by the first Read: until then the request can go
	// to another agent or node, and Close (which a transport calls when
	// it could not connect) leaves the body open for it.
	touched atomic.Bool
}

var errBodyTooLarge = errors.New("request body over the limit")

// untouched reports whether nothing has read the request body: the request
// has no body, or no transport has begun sending it.
func untouched(r *http.Request) bool {
	b := stateOf(r.Context()).body
	return b == nil || !b.touched.Load()
}

// Close closes the body once a transport has begun reading it; before, the
// body stays for another attempt (the server closes it when the handler
// returns).
func (b *countedBody) Close() error {
	if !b.touched.Load() {
		return nil
	}
	return b.ReadCloser.Close()
}

func (b *countedBody) Read(p []byte) (int, error) {
	b.touched.Store(true)
	if b.stall > 0 {
		if b.timer == nil {
			b.timer = time.AfterFunc(b.stall, b.cut)
		} else {
			b.timer.Reset(b.stall)
		}
	}
	n, err := b.read(p)
	if b.timer != nil {
		b.timer.Stop()
	}
	// A read after the server closed the body comes from a transport that
	// checks for bytes past Content-Length once the exchange is over: it
	// says nothing about the client, whose connection may carry its next
	// request by now, and must not cut that connection.
	if err != nil && err != io.EOF && err != errBodyTooLarge && !errors.Is(err, http.ErrBodyReadAfterClose) {
		b.readErr.CompareAndSwap(nil, &err)
		// The client broke or stalled its body: where its next request
		// would begin is unknown. Make every later read fail at once, so
		// that the server does not wait to discard the rest of the body
		// before it answers, and closes the connection after answering.
		b.rc.SetReadDeadline(time.Unix(1, 0))
	}
	return n, err
}

// cut ends a read that has waited stall for the client: the mark comes
// first, so that whoever sees the read fail (or the request's context,
// which the server cancels when the connection's read fails) knows why.
func (b *countedBody) cut() {
	b.stalled.Store(true)
	b.rc.SetReadDeadline(time.Unix(1, 0))
}

func (b *countedBody) read(p []byte) (int, error) {
	if b.left < 0 {
		n, err := b.ReadCloser.Read(p)
		b.n.Add(int64(n))
		return n, err
	}
	if b.left == 0 {
		// One more byte tells a body of exactly the limit from a longer one.
		var one [1]byte
		n, err := b.ReadCloser.Read(one[:])
		if n > 0 {
			b.exceeded.Store(true)
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	b.n.Add(int64(n))
	return n, err
}

// clientGone reports whether a forward of r failed because the public
// client went away, so that nobody is left to answer. A client that
// stalled its body is still there, though the server has canceled r's
// context when the read timed out: it is told why (forwardError).
func clientGone(r *http.Request, err error) bool {
	if r.Context().Err() == nil || !errors.Is(err, context.Canceled) {
		return false
	}
	b := stateOf(r.Context()).body
	return b == nil || !b.stalled.Load()
}

// forwardError says whose fault a failed forward of r was, to an agent or
// to another node, and returns the error to answer: the client's (a body
// over the limit, 413; a body it sent broken, 400 invalid_request), the
// wait's (504 gateway_timeout), or the agent's (502 agent_unavailable; the
// agent answers local_service_unavailable itself when its local service
// fails). err is the transport's error.
func forwardError(r *http.Request, err error) *Error {
	b := stateOf(r.Context()).body
	var ne net.Error
	switch {
	case b != nil && b.exceeded.Load():
		return &Error{Code: CodePayloadTooLarge, Message: ErrPayloadTooLarge.Message, Err: err}
	case b != nil && b.stalled.Load():
		return &Error{Code: CodeInvalidRequest, Message: "the client stopped sending the request body", Err: err}
	case b != nil && b.readErr.Load() != nil:
		return &Error{Code: CodeInvalidRequest, Message: "the request body could not be read", Err: *b.readErr.Load()}
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeGatewayTimeout, Message: ErrGatewayTimeout.Message, Err: err}
	case errors.Is(err, yamux.ErrStreamLimit):
		// The agent's connection carries as many requests as it may.
		return &Error{Code: CodeUnavailable, Message: "the tunnel has too many requests in flight", Err: err}
	}
	return &Error{Code: CodeAgentUnavailable, Message: ErrAgentUnavailable.Message, Err: err}
}

// headerBytes approximates the size of r's header block as it was read.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + len(r.Host) + 4
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}
