package serverless

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// XRayHeader is the header AWS X-Ray propagates its trace context in:
//
//	X-Amzn-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1
//
// Root is the trace ID: version 1, the trace's start in Unix seconds as 8
// hex digits, and 24 hex digits of randomness; its 32 hex digits are the
// OpenTelemetry trace ID. Parent is the span ID of the caller, Sampled its
// sampling decision.
const XRayHeader = "X-Amzn-Trace-Id"

// XRayPropagator is a propagation.TextMapPropagator for XRayHeader. Its
// zero value is ready to use; it is safe for concurrent use.
//
// Extract ignores a header without a valid Root and Parent (what API
// Gateway and Lambda send always has both) and reads Sampled=1 as sampled,
// anything else (0, ?, absent) as not. Other fields, such as Lineage or
// Self, are ignored; Inject writes Root, Parent and Sampled only.
type XRayPropagator struct{}

var _ propagation.TextMapPropagator = XRayPropagator{}

// Inject implements propagation.TextMapPropagator: it sets XRayHeader from
// ctx's span context, if valid.
func (XRayPropagator) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	tid := sc.TraceID().String()
	sampled := "0"
	if sc.IsSampled() {
		sampled = "1"
	}
	carrier.Set(XRayHeader, "Root=1-"+tid[:8]+"-"+tid[8:]+";Parent="+sc.SpanID().String()+";Sampled="+sampled)
}

// Extract implements propagation.TextMapPropagator: it returns ctx with the
// remote span context of carrier's XRayHeader, or ctx as it is when the
// header is absent or invalid.
func (XRayPropagator) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	sc, ok := parseXRayHeader(carrier.Get(XRayHeader))
	if !ok {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// Fields implements propagation.TextMapPropagator.
func (XRayPropagator) Fields() []string { return []string{XRayHeader} }

func parseXRayHeader(h string) (trace.SpanContext, bool) {
	var cfg trace.SpanContextConfig
	var root, parent bool
	for field := range strings.SplitSeq(h, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(field), "=")
		switch k {
		case "Root":
			// 1-<8 hex>-<24 hex>
			if len(v) != 35 || v[:2] != "1-" || v[10] != '-' {
				return trace.SpanContext{}, false
			}
			b, err := hex.DecodeString(v[2:10] + v[11:])
			if err != nil {
				return trace.SpanContext{}, false
			}
			copy(cfg.TraceID[:], b)
			root = true
		case "Parent":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != len(cfg.SpanID) {
				return trace.SpanContext{}, false
			}
			copy(cfg.SpanID[:], b)
			parent = true
		case "Sampled":
			if v == "1" {
				cfg.TraceFlags = trace.FlagsSampled
			}
		}
	}
	cfg.Remote = true
	sc := trace.NewSpanContext(cfg)
	return sc, root && parent && sc.IsValid()
}

// XRayIDGenerator is an sdktrace.IDGenerator whose trace IDs X-Ray
// accepts: the first 4 bytes are the Unix time in seconds, big-endian, the
// other 12 random. Span IDs are 8 random bytes. Its zero value is ready to
// use; it is safe for concurrent use. Randomness comes from math/rand/v2's
// ChaCha8-seeded generator, as the SDK's default generator's does from
// math/rand: IDs need to be unique, not secret.
type XRayIDGenerator struct {
	// now is the clock of the trace IDs; nil means time.Now. A seam for
	// tests.
	now func() time.Time
}

var _ sdktrace.IDGenerator = XRayIDGenerator{}

// NewIDs implements sdktrace.IDGenerator.
func (g XRayIDGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	now := time.Now
	if g.now != nil {
		now = g.now
	}
	var tid trace.TraceID
	binary.BigEndian.PutUint32(tid[:4], uint32(now().Unix()))
	for {
		binary.BigEndian.PutUint32(tid[4:8], rand.Uint32())
		binary.BigEndian.PutUint64(tid[8:], rand.Uint64())
		if tid.IsValid() {
			break
		}
	}
	return tid, g.NewSpanID(ctx, tid)
}

// NewSpanID implements sdktrace.IDGenerator.
func (XRayIDGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.BigEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}
