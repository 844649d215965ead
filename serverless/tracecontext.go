package serverless

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// xrayTraceHeader is the header in which API Gateway and Lambda pass X-Ray
// trace context.
const xrayTraceHeader = "X-Amzn-Trace-Id"

// lambdaTraceKey is the context key under which
// github.com/aws/aws-lambda-go puts the invocation's trace header; it also
// sets lambdaTraceEnv, in a process that runs one invocation at a time.
const (
	lambdaTraceKey = "x-amzn-trace-id"
	lambdaTraceEnv = "_X_AMZN_TRACE_ID"
)

// traceContext returns ctx carrying the span context that a public
// request continues when its own headers carry none the Server's
// propagator accepts (a valid traceparent, or with NewPropagator a
// complete X-Amzn-Trace-Id, still wins: the Server extracts them over
// ctx). It applies only with a TracerProvider, that is with tracing on,
// and picks, in this order:
//
//  1. a complete X-Amzn-Trace-Id of the request (Root and Parent);
//  2. the invocation's own trace context, from Lambda's active tracing:
//     the context value aws-lambda-go sets, or _X_AMZN_TRACE_ID; the
//     request's span is then a child of the function's segment;
//  3. a Root-only X-Amzn-Trace-Id, as an HTTP API sends it: its trace,
//     under a parent span ID of its own, since the header names none.
//
// Without any of them ctx is returned as it is, and the request starts a
// new trace.
func (h *Handler) traceContext(ctx context.Context, requestHeader string) context.Context {
	if h.Server.TracerProvider == nil {
		return ctx
	}
	req, reqOK := parseXRayHeader(requestHeader)
	if reqOK && req.HasSpanID() {
		return trace.ContextWithRemoteSpanContext(ctx, req)
	}
	inv, _ := ctx.Value(lambdaTraceKey).(string)
	if inv == "" {
		inv = os.Getenv(lambdaTraceEnv)
	}
	if sc, ok := parseXRayHeader(inv); ok && sc.HasSpanID() {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	if reqOK {
		var span trace.SpanID
		for !span.IsValid() {
			rand.Read(span[:])
		}
		return trace.ContextWithRemoteSpanContext(ctx, req.WithSpanID(span))
	}
	return ctx
}

// parseXRayHeader reads an X-Amzn-Trace-Id value: Root (version 1) is
// required, Parent and Sampled are optional, other fields are ignored.
// The span context it returns has no span ID without a Parent; it is
// sampled unless Sampled is 0 (a missing or deferred decision is taken
// here, as for a new trace).
func parseXRayHeader(v string) (trace.SpanContext, bool) {
	var cfg trace.SpanContextConfig
	sampled, root := true, false
	for field := range strings.SplitSeq(v, ";") {
		key, val, _ := strings.Cut(strings.TrimSpace(field), "=")
		switch key {
		case "Root":
			// 1-<8 hex digits of epoch seconds>-<24 hex digits>
			parts := strings.Split(val, "-")
			if len(parts) != 3 || parts[0] != "1" || len(parts[1]) != 8 || len(parts[2]) != 24 {
				return trace.SpanContext{}, false
			}
			b, err := hex.DecodeString(parts[1] + parts[2])
			if err != nil {
				return trace.SpanContext{}, false
			}
			copy(cfg.TraceID[:], b)
			root = true
		case "Parent":
			b, err := hex.DecodeString(val)
			if err != nil || len(b) != 8 {
				return trace.SpanContext{}, false
			}
			copy(cfg.SpanID[:], b)
		case "Sampled":
			sampled = val != "0"
		}
	}
	if !root || !cfg.TraceID.IsValid() {
		return trace.SpanContext{}, false
	}
	if sampled {
		cfg.TraceFlags = trace.FlagsSampled
	}
	cfg.Remote = true
	return trace.NewSpanContext(cfg), true
}
