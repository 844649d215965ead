package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/http-tunnel/tunnel/internal/claim"
	"github.com/http-tunnel/tunnel/observability"
	"go.opentelemetry.io/otel/trace"
)

// route forwards r to the session holding tunnel id, here or on another
// node. hop says r came from another node, which must not be sent on
// again; retried says this is the one retry after a stale record.
func (s *Server) route(w http.ResponseWriter, r *http.Request, id string, hop, retried bool) {
	ctx := r.Context()
	if s.Relay != nil {
		s.relay(w, r, id)
		return
	}
	sess, node, err := s.lookup(ctx, id, retried, hop)
	if err == nil && (sess != nil || (!hop && s.node != "")) {
		stateOf(ctx).forwarded = true
		if s.tracing() {
			var span trace.Span
			ctx, span = s.tracer.Start(ctx, observability.SpanForward, trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(observability.AttrTunnelID.String(id), observability.AttrNode.String(node)))
			defer span.End()
			if span.IsRecording() {
				r = r.WithContext(ctx)
			}
		}
	}
	switch {
	case err != nil:
		s.fail(ctx, w, asError(err))
	case sess != nil:
		sess.forward(w, r)
	case hop || s.node == "":
		// The record names another node, but this request came from one
		// (or this gateway runs alone): tell the sender its record is stale.
		if hop {
			w.Header().Set(notHereHeader, "1")
			w.WriteHeader(http.StatusMisdirectedRequest)
			return
		}
		s.fail(ctx, w, &Error{Code: CodeAgentUnavailable, Message: ErrAgentUnavailable.Message, Err: fmt.Errorf("record names node %q", node)})
	default:
		s.hop.ServeHTTP(w, r.WithContext(context.WithValue(ctx, hopKey{}, &hopState{id: id, node: node, retried: retried, req: r})))
	}
}

// resolve finds the tunnel ID a public request names and returns the
// request to forward: r itself, or for path routing a shallow copy with
// the ID's segment stripped from the path (raw path included, so the rest
// reaches the agent byte for byte) and the prefix recorded in st.
func (s *Server) resolve(r *http.Request, st *reqState) (string, *http.Request, bool) {
	if s.Routing != RoutePath {
		if d := s.domain(); d != "" {
			host := r.Host
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			if label, rest, ok := strings.Cut(host, "."); ok && strings.EqualFold(rest, d) {
				label = strings.ToLower(label)
				st.routing = "subdomain"
				return label, r, claim.ValidID(label)
			}
		}
		if s.Routing == RouteSubdomain {
			return "", nil, false
		}
	}
	escaped := r.URL.EscapedPath()
	if len(escaped) < 2 || escaped[0] != '/' {
		return "", nil, false
	}
	id, _, _ := strings.Cut(escaped[1:], "/")
	if !claim.ValidID(id) {
		return "", nil, false
	}
	prefix := "/" + id
	u := *r.URL
	u.Path = strings.TrimPrefix(u.Path, prefix)
	u.RawPath = strings.TrimPrefix(u.RawPath, prefix)
	if u.Path == "" {
		u.Path = "/"
	}
	if u.RawPath == "" && r.URL.RawPath != "" {
		u.RawPath = "/"
	}
	out := new(http.Request)
	*out = *r
	out.URL = &u
	st.routing, st.prefix = "path", prefix
	return id, out, true
}
