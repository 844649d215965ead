package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

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

// tooLarge reports whether r's body was cut off at MaxBodyBytes.
func tooLarge(r *http.Request) bool {
	b := stateOf(r.Context()).body
	return b != nil && b.exceeded.Load()
}

// countedBody counts a request body as the agent reads it, and cuts it off
// past a limit (left < 0: none), so that the agent never gets more than
// the limit; exceeded tells the error handler to answer 413.
type countedBody struct {
	io.ReadCloser
	left     int64
	n        atomic.Int64
	exceeded atomic.Bool
}

var errBodyTooLarge = errors.New("request body over the limit")

func (b *countedBody) Read(p []byte) (int, error) {
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
