package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/http-tunnel/tunnel/observability"
	"github.com/http-tunnel/tunnel/store"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// lookup finds where tunnel id is served: a session of this node, or the
// node named by its record. It reads through the cache unless fresh is
// set; a cached record whose connection is not here any more costs one
// more store read, not a failed request. So does, for a request hopped
// here by another node (hop), a cached record naming another node: the
// sender read the store more recently than this node's cache may have.
func (s *Server) lookup(ctx context.Context, id string, fresh, hop bool) (store.Record, *session, string, error) {
	rec, cached, err := s.record(ctx, id, fresh)
	for attempt := 0; err == nil && attempt < 2; attempt++ {
		if rec.Pool {
			t, perr := s.poolTarget(ctx, id, fresh || !cached, hop)
			switch {
			case perr != nil:
				return rec, nil, "", &Error{Code: CodeInternal, Message: ErrInternal.Message, Err: fmt.Errorf("store members: %w", perr)}
			case t.sess != nil || t.node != "":
				return t.rec, t.sess, t.node, nil
			case hop && s.node != "":
				// No member here takes requests: the sender's member list
				// is stale, and it picks another.
				return rec, nil, "another node", nil
			case cached:
				s.cache.Remove(ctx, id)
				rec, cached, err = s.record(ctx, id, true)
				fresh = true
				continue
			}
			break
		}
		if rec.Node != s.node {
			// For a request from another node, whose record is stale, this
			// node answers 421 even while it still holds the agent's
			// previous connection (the agent moved away while this node
			// shuts down): the sender sends it to where the tunnel is now
			// (its body unsent: rewriteHop), and stops sending here.
			if !hop || !cached {
				return rec, nil, rec.Node, nil
			}
			s.cache.Remove(ctx, id)
			rec, cached, err = s.record(ctx, id, true)
			continue
		}
		if sess := s.awaitSession(ctx, rec.ConnectionID); sess != nil && !sess.draining.Load() {
			// A session told to go away serves on only while the store
			// says its agent has not moved: a cached record is checked,
			// so that requests (and other nodes, told 421) follow the
			// agent to its new node before this one stops.
			if !sess.goingAway.Load() || !cached {
				return rec, sess, "", nil
			}
		}
		if !cached {
			break
		}
		s.cache.Remove(ctx, id)
		rec, cached, err = s.record(ctx, id, true)
	}
	if err != nil {
		return rec, nil, "", err
	}
	return rec, nil, "", &Error{Code: CodeAgentUnavailable, Message: ErrAgentUnavailable.Message}
}

// admitClient checks a public request against its tunnel's access policy,
// once per request (a request routed again after a failed hop has been
// checked, and its credentials removed, already), and not for a request
// from another node, which checked it. It answers the refusal itself and
// reports false.
func (s *Server) admitClient(w http.ResponseWriter, r *http.Request, rec store.Record, hop bool) bool {
	st := stateOf(r.Context())
	if hop || st.accessChecked {
		return true
	}
	st.accessChecked = true
	if e := checkAccess(w, r, rec.Access, st.client); e != nil {
		s.fail(r.Context(), w, e, slog.String("client", st.client.String()))
		return false
	}
	return true
}

// record returns tunnel id's record, from the cache unless fresh is set or
// it has none, else from the store (caching it); cached says which.
func (s *Server) record(ctx context.Context, id string, fresh bool) (rec store.Record, cached bool, err error) {
	if !fresh {
		if s.tracing() {
			cctx, span := s.tracer.Start(ctx, observability.SpanCache)
			rec, cached = s.cache.Get(cctx, id)
			span.SetAttributes(observability.AttrCacheHit.Bool(cached))
			span.End()
		} else {
			rec, cached = s.cache.Get(ctx, id)
		}
		if cached {
			s.inst.CacheHits.Add(ctx, 1)
			return rec, true, nil
		}
		s.inst.CacheMisses.Add(ctx, 1)
	}
	err = s.storeOp(ctx, "Get", func(ctx context.Context) (err error) {
		rec, err = s.store.Get(ctx, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		// A tunnel this node serves that the store has lost: write its
		// record again now rather than answer 404 until the next renewal.
		if sess := s.tunnelSession(id); sess != nil {
			s.reassert(sess, orDefault(s.LeaseTTL, DefaultLeaseTTL))
			if !sess.lost.Load() {
				return sess.rec, false, nil
			}
		}
		return rec, false, &Error{Code: CodeTunnelNotFound, Message: ErrTunnelNotFound.Message}
	}
	if err != nil {
		return rec, false, &Error{Code: CodeInternal, Message: ErrInternal.Message, Err: fmt.Errorf("store get: %w", err)}
	}
	s.cache.Add(ctx, rec)
	return rec, false, nil
}

// tracing reports whether spans may be recorded; see observability.Tracing.
func (s *Server) tracing() bool { return observability.Tracing(s.TracerProvider) }

// metering reports whether metrics may be recorded; see
// observability.Metering.
func (s *Server) metering() bool { return observability.Metering(s.MeterProvider) }

// storeOp runs one store operation in a span, timing it.
func (s *Server) storeOp(ctx context.Context, op string, f func(context.Context) error) error {
	ctx, span := s.tracer.Start(ctx, observability.SpanStore, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.operation.name", op)))
	start := time.Now()
	err := f(ctx)
	s.inst.StoreLatency.Record(ctx, float64(time.Since(start))/float64(time.Millisecond),
		metric.WithAttributes(attribute.String("db.operation.name", op)))
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return err
}
