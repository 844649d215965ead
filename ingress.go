package tunnel

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/observability"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// reqState is what the gateway knows about one public request as it goes
// through validation, routing and forwarding. It travels in the request's
// context, where the proxies' rewrite and error hooks (which see copies of
// the request) find it.
type reqState struct {
	id            string         // request ID: X-Request-Id, or generated
	tunnelID      string         // once resolved
	routing       string         // "subdomain" or "path"
	prefix        string         // path routing: the stripped "/<id>"
	bare          bool           // path routing: the path was "/<id>" alone
	html          bool           // the client is a browser: errors as a page
	accessChecked bool           // admitClient ran
	client        netip.AddrPort // the public client, as the gateway determined it
	body          *countedBody   // the request body, counted and limited, if any
	forwarded     bool           // reached an agent or another node
	reroutes      int            // times it found its agent leaving (maxReroutes)
}

type reqStateKey struct{}

// publicRequest is what servePublic keeps of a request, in one
// allocation.
type publicRequest struct {
	st reqState
	sw statusWriter
}

// stateOf returns r's reqState, or an empty one for requests that did not
// come through servePublic.
func stateOf(ctx context.Context) *reqState {
	if st, ok := ctx.Value(reqStateKey{}).(*reqState); ok {
		return st
	}
	return &reqState{}
}

// requestIDHeader carries the request ID to the agent and back in logs.
const requestIDHeader = "X-Request-Id"

// servePublic validates a public request, routes it to its tunnel and
// forwards it: to the agent if this node holds it, else to the node that
// does. It records the request's span and metrics.
func (s *Server) servePublic(w http.ResponseWriter, r *http.Request) {
	if !s.inflight.enter() {
		s.fail(r.Context(), w, &Error{Code: CodeUnavailable, Message: ErrUnavailable.Message})
		return
	}
	defer s.inflight.leave()

	start := time.Now()
	pr := &publicRequest{st: reqState{id: r.Header.Get(requestIDHeader), html: wantsHTML(r)}}
	st, sw := &pr.st, &pr.sw
	if st.id == "" || len(st.id) > 128 {
		st.id = randid.Hex(8)
		r.Header.Set(requestIDHeader, st.id)
	}
	ctx := context.WithValue(r.Context(), reqStateKey{}, st)
	tracing, metering := s.tracing(), s.metering()
	var span trace.Span
	if tracing {
		ctx, span = s.tracer.Start(observability.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header)), observability.SpanRequest,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
	}
	r = r.WithContext(ctx)
	sw.ResponseWriter, sw.stall = w, s.stallTimeout()
	if isWebSocketUpgrade(r) {
		sw.srv = s
	}
	if sw.stall > 0 {
		sw.rc = *http.NewResponseController(w)
		defer sw.disarm()
	}
	defer func() {
		status := sw.status
		if status == 0 && sw.written == 0 {
			status = 499 // the client went away before an answer
		}
		if metering {
			attrs := []attribute.KeyValue{attribute.String("http.request.method", r.Method), attribute.Int("http.response.status_code", status)}
			// Only tunnels that exist get a series: a label from any
			// requested ID would let random URLs create unbounded series.
			if s.MetricsPerTunnel && st.forwarded {
				attrs = append(attrs, observability.AttrTunnelID.String(st.tunnelID))
			}
			set := metric.WithAttributes(attrs...)
			s.inst.RequestLatency.Record(ctx, float64(time.Since(start))/float64(time.Millisecond), set)
			if st.forwarded {
				s.inst.RequestForwarded.Add(ctx, 1, set)
			}
			if st.body != nil {
				s.inst.BytesIn.Add(ctx, st.body.n.Load())
			}
			s.inst.BytesOut.Add(ctx, sw.written)
		}
		if tracing {
			span.SetAttributes(attribute.Int("http.response.status_code", status),
				observability.AttrTunnelID.String(st.tunnelID), observability.AttrRouting.String(st.routing))
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
			span.End()
		}
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.LogAttrs(ctx, slog.LevelDebug, "public request",
				slog.String("request_id", st.id), slog.String("tunnel_id", st.tunnelID),
				slog.String("method", r.Method), slog.Int("status", status),
				slog.Float64("duration_ms", float64(time.Since(start))/float64(time.Millisecond)),
				slog.Int64("bytes_out", sw.written))
		}
	}()
	s.servePublicRouted(sw, r, st)
}

// servePublicRouted is servePublic after the bookkeeping.
func (s *Server) servePublicRouted(w http.ResponseWriter, r *http.Request, st *reqState) {
	ctx := r.Context()
	hop := false
	if secret, ok := r.Header[nodeSecretHeader]; ok {
		if len(secret) != 1 || !s.nodeSecretOK(secret[0]) {
			s.fail(ctx, w, &Error{Code: CodeForbidden, Message: "node-to-node request refused"}, slog.String("remote_addr", r.RemoteAddr))
			return
		}
		hop = true
	}
	st.client = s.clientAddr(r)
	if hop {
		if a, ok := parseAddr(r.Header.Get(clientHeader)); ok {
			st.client = a
		}
	}
	if e := s.validate(r); e != nil {
		s.fail(ctx, w, e, slog.String("host", r.Host))
		return
	}
	id, out, ok := s.resolve(r, st)
	if !ok {
		s.fail(ctx, w, &Error{Code: CodeTunnelNotFound, Message: ErrTunnelNotFound.Message},
			slog.String("host", r.Host), slog.String("path", r.URL.Path))
		return
	}
	st.tunnelID = id
	if st.bare && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		// A page at /<id> would resolve its relative links (scripts,
		// fetch, EventSource, WebSocket) outside the tunnel.
		loc := st.prefix + "/"
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, loc, http.StatusPermanentRedirect)
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		n := s.MaxBodyBytes
		if n > 0 && r.ContentLength > n {
			s.fail(ctx, w, &Error{Code: CodePayloadTooLarge, Message: fmt.Sprintf("request body over the limit of %d bytes", n)})
			return
		}
		if n <= 0 || r.ContentLength >= 0 {
			n = -1 // nothing to enforce while streaming: the length is known
		}
		st.body = &countedBody{ReadCloser: r.Body, left: n, stall: s.stallTimeout(), rc: http.NewResponseController(w)}
		if out == r {
			out = new(http.Request)
			*out = *r
		}
		out.Body = st.body
	}
	if !hop && s.RequestLimiter != nil {
		if !s.allow(ctx, w, s.RequestLimiter, "tunnel:"+id, "request") {
			return
		}
	}
	s.route(w, out, id, hop, false)
}

// fail answers a public request or an agent with e, logs it with the
// request's IDs, and counts it.
func (s *Server) fail(ctx context.Context, w http.ResponseWriter, e *Error, attrs ...slog.Attr) {
	st := stateOf(ctx)
	if st.id != "" {
		attrs = append(attrs, slog.String("request_id", st.id))
	}
	if st.tunnelID != "" {
		attrs = append(attrs, slog.String("tunnel_id", st.tunnelID))
	}
	if st.body != nil && (st.body.readErr.Load() != nil || st.body.stalled.Load()) {
		// Where the next request would begin is unknown, and the server
		// must not try to read the rest of a body that stalled before it
		// answers: close the connection after this answer.
		w.Header().Set("Connection", "close")
	}
	s.inst.ErrorOccurred.Add(ctx, 1, metric.WithAttributes(observability.AttrCode.String(string(e.Code))))
	if e.ID == "" {
		// Never write into a sentinel or an error the caller keeps.
		c := *e
		c.ID = randid.Hex(8)
		e = &c
	}
	trace.SpanFromContext(ctx).SetAttributes(observability.AttrCode.String(string(e.Code)), observability.AttrErrorID.String(e.ID))
	writeError(ctx, w, st.html, s.log, e, attrs...)
}

// nodeSecretOK reports whether secret, from a request that says it comes
// from another node, is NodeSecret or one of AcceptNodeSecrets. Without a
// NodeSecret nothing is. Every candidate is compared in constant time.
func (s *Server) nodeSecretOK(secret string) bool {
	if s.NodeSecret == "" {
		return false
	}
	ok := subtle.ConstantTimeCompare([]byte(secret), []byte(s.NodeSecret))
	for _, a := range s.AcceptNodeSecrets {
		ok |= subtle.ConstantTimeCompare([]byte(secret), []byte(a))
	}
	return ok == 1
}
