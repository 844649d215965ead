package tunnel

import (
	"net/http"

	"github.com/http-tunnel/tunnel/observability"
	"github.com/http-tunnel/tunnel/store"
	"go.opentelemetry.io/otel/trace"
)

// Relay delivers public requests to agents that no gateway process holds a
// session for: agents connected to an API Gateway WebSocket API and reached
// through its Management API, as in the serverless adapter. A Server with
// a Relay uses it for every tunnel, after its own routing, validation and
// rate limiting, instead of local sessions and other nodes.
type Relay interface {
	// Forward sends r to the agent connection named by rec and writes the
	// agent's response to w. If it returns an error, it has written
	// nothing, and the Server answers with the error: an *Error's code
	// (ErrAgentUnavailable when the connection is gone, which also drops
	// the cached record; ErrGatewayTimeout), or 500 internal for others.
	Forward(w http.ResponseWriter, r *http.Request, rec store.Record) error
}

// relay routes r through the Relay.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, id string) {
	ctx := r.Context()
	rec, _, err := s.record(ctx, id, false)
	if err != nil {
		s.fail(ctx, w, asError(err))
		return
	}
	if !s.admitClient(w, r, rec, false) {
		return
	}
	stateOf(ctx).forwarded = true
	ctx, span := s.tracer.Start(ctx, observability.SpanForward, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(observability.AttrTunnelID.String(id)))
	defer span.End()
	if span.IsRecording() {
		r = r.WithContext(ctx)
	}
	if err := s.Relay.Forward(w, r, rec); err != nil {
		e := asError(err)
		if e.Code == CodeAgentUnavailable {
			s.cache.Remove(ctx, id)
		}
		s.fail(ctx, w, e)
	}
}
