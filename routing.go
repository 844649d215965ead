package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
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
	rec, sess, node, err := s.lookup(ctx, id, retried, hop)
	if err == nil && (sess != nil || node != "") && !s.admitClient(w, r, rec, hop) {
		return
	}
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
		load := s.hopLoad(node)
		load.Add(1)
		defer load.Add(-1)
		s.hop.ServeHTTP(w, r.WithContext(context.WithValue(ctx, hopKey{}, &hopState{id: id, node: node, retried: retried, req: r})))
	}
}

// normalizeHost returns the host name of a Host header or URL host, as
// routing compares it: without its port, in lower case, and without the
// trailing dot of a fully qualified name.
func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// subdomainOf reports whether host names a subdomain of the gateway's
// domain, and which label: "abc" for abc.<domain>. A host under the domain
// whose label is not a valid tunnel ID, or that is nested deeper
// (a.b.<domain>), reports ok with an empty label: it is routed by nothing,
// never by its path.
func (s *Server) subdomainOf(host string) (label string, ok bool) {
	if s.dom == "" || s.Routing == RoutePath {
		return "", false
	}
	rest, found := strings.CutSuffix(normalizeHost(host), "."+s.dom)
	if !found || rest == "" {
		return "", false
	}
	if strings.Contains(rest, ".") || !claim.ValidID(rest) {
		return "", true
	}
	return rest, true
}

// resolve finds the tunnel ID a public request names and returns the
// request to forward: r itself, or for path routing a shallow copy with
// the ID's segment stripped from the path (raw path included, so the rest
// reaches the agent byte for byte) and the prefix recorded in st. A host
// under the gateway's domain is routed by its subdomain or not at all.
func (s *Server) resolve(r *http.Request, st *reqState) (string, *http.Request, bool) {
	if label, ok := s.subdomainOf(r.Host); ok {
		st.routing = "subdomain"
		return label, r, label != ""
	}
	if s.Routing == RouteSubdomain {
		return "", nil, false
	}
	escaped := r.URL.EscapedPath()
	if len(escaped) < 2 || escaped[0] != '/' {
		return "", nil, false
	}
	id, rest, _ := strings.Cut(escaped[1:], "/")
	if !claim.ValidID(id) {
		return "", nil, false
	}
	prefix := escaped[:1+len(id)] // "/<id>", without a new string
	// The copies of the request and of its URL, in one allocation.
	c := &struct {
		req http.Request
		url url.URL
	}{req: *r, url: *r.URL}
	u, out := &c.url, &c.req
	u.Path = strings.TrimPrefix(u.Path, prefix)
	u.RawPath = strings.TrimPrefix(u.RawPath, prefix)
	if u.Path == "" {
		u.Path = "/"
	}
	if u.RawPath == "" && r.URL.RawPath != "" {
		u.RawPath = "/"
	}
	out.URL = u
	st.routing, st.prefix = "path", prefix
	st.bare = rest == "" && !strings.HasSuffix(escaped, "/")
	return id, out, true
}
