package tunnel

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/http-tunnel/tunnel/observability"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Node-to-node forwarding.
const (
	// nodeSecretHeader carries NodeSecret on requests between nodes.
	nodeSecretHeader = "X-Tunnel-Node-Secret"
	// notHereHeader marks a 421 answer from a node that does not hold the
	// tunnel any more: the sender's record was stale.
	notHereHeader = "X-Tunnel-Not-Here"
	// hopExpectHeader marks a request with a body that the sending node
	// sent with "Expect: 100-continue" of its own (the client's request
	// had none), so that the body stays unread until the other node
	// takes the request: a 421, or a connection that breaks first,
	// leaves it to send elsewhere.
	hopExpectHeader = "X-Tunnel-Hop-Expect"
)

var errNotHere = errors.New("the node named by the record does not hold the tunnel")

type hopKey struct{}

// hopState travels in the context of a request sent to another node.
type hopState struct {
	id, node string
	retried  bool
	req      *http.Request // as routed, for the retry
}

// rewriteHop addresses a request to the node holding its tunnel. The
// request goes as it arrived (path prefix restored), with the client's
// X-Forwarded-* and the node secret; the owner trusts them because of it.
func (s *Server) rewriteHop(pr *httputil.ProxyRequest) {
	h := pr.In.Context().Value(hopKey{}).(*hopState)
	u, _ := url.Parse(h.node)
	pr.Out.URL.Scheme, pr.Out.URL.Host = u.Scheme, u.Host
	if p := stateOf(pr.In.Context()).prefix; p != "" {
		pr.Out.URL.Path = p + pr.In.URL.Path
		if pr.In.URL.RawPath != "" {
			pr.Out.URL.RawPath = p + pr.In.URL.RawPath
		}
	}
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	s.ownHeaders(pr, false, u.Host)
	// The prefix is in the path again: the owner resolves it itself.
	pr.Out.Header.Del("X-Forwarded-Prefix")
	pr.Out.Header.Set(nodeSecretHeader, s.NodeSecret)
	if hasBody(pr.In) && pr.Out.Header.Get("Expect") == "" {
		pr.Out.Header.Set("Expect", "100-continue")
		pr.Out.Header.Set(hopExpectHeader, "1")
	}
	if c := stateOf(pr.In.Context()).client; c.IsValid() {
		pr.Out.Header.Set(clientHeader, c.String())
	}
}

// injectTrace sends the forwarding span's context on with the request,
// when there is one being recorded; otherwise any traceparent the public
// client sent passes through untouched.
func injectTrace(pr *httputil.ProxyRequest) {
	ctx := pr.In.Context()
	if trace.SpanFromContext(ctx).IsRecording() {
		observability.Propagator.Inject(ctx, propagation.HeaderCarrier(pr.Out.Header))
	}
}

// hopError handles a failed hop. A client's fault (its body) is answered
// as such. Otherwise the node is gone or no longer holds the tunnel: the
// cached record is dropped, and a request that provably never reached an
// agent (undelivered) and whose body nothing has read yet (a bodyless one,
// or one whose node could not be dialed) is routed once more from a fresh
// store read. A node's "not here" for a request whose body was sent is
// answered 503: it ran nowhere, and the client may send it again.
// Anything else is answered 502: it may have run (docs/errors.md).
func (s *Server) hopError(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	if clientGone(r, err) {
		return
	}
	h := r.Context().Value(hopKey{}).(*hopState)
	e := forwardError(r, err)
	if e.Code == CodePayloadTooLarge || e.Code == CodeInvalidRequest {
		s.fail(ctx, w, e)
		return
	}
	s.cache.Remove(ctx, h.id)
	s.members.remove(h.id)
	// A body that nothing read proves the request never reached an agent:
	// the other node reads it (asking with 100-continue) only as it
	// forwards the request. A bodyless request has no such proof; it is
	// sent again only when the failure shows it was not delivered.
	if !h.retried && untouched(r) && (hasBody(r) || undelivered(err)) {
		s.log.DebugContext(ctx, "stale tunnel record; routing again", slog.String("tunnel_id", h.id), slog.String("node", h.node), slog.Any("err", err))
		s.route(w, h.req, h.id, false, true)
		return
	}
	if errors.Is(err, errNotHere) {
		e = &Error{Code: CodeUnavailable, Message: "the tunnel moved while the request was on its way; it did not run, and may be sent again", Err: err}
	}
	s.fail(ctx, w, e, slog.String("node", h.node))
}

// undelivered reports whether a failed hop provably never reached an agent:
// the node could not be dialed, it answered that it does not hold the
// tunnel (421), or it had closed the kept-alive connection before the
// request was written (net/http's "server closed idle connection", which
// it does not export). Any other failure may have come after the agent got
// the request, so retrying it could run it twice.
func undelivered(err error) bool {
	if errors.Is(err, errNotHere) || strings.Contains(err.Error(), "server closed idle connection") {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// hasBody reports whether r has a request body.
func hasBody(r *http.Request) bool { return r.Body != nil && r.Body != http.NoBody }
