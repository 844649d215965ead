package serverless

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.opentelemetry.io/contrib/propagators/aws/xray"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The X-Ray propagator and ID generator come from
// go.opentelemetry.io/contrib/propagators/aws/xray. Upstream marks that
// module deprecated for want of an owner; it is pinned, and uses only the
// stable trace API, so a release that stays on the module proxy keeps
// working. Its parser differs from AWS SDKs' in that spaces around a
// field other than the last are not trimmed, and an empty field makes
// the header invalid; API Gateway and Lambda send neither.

// NewPropagator returns the propagator of a function that traces with
// X-Ray: it reads and writes X-Amzn-Trace-Id (Root, Parent and Sampled;
// other fields are ignored, and Sampled other than 1 reads as not
// sampled), W3C trace context and baggage. On extraction a valid
// traceparent header wins over X-Amzn-Trace-Id: the propagators run in
// that order and the last valid span context stays. A program installs it
// as observability.Propagator (the library extracts and injects with it)
// and as the global propagator (otel.SetTextMapPropagator, for other
// instrumentation).
func NewPropagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(
		xray.Propagator{}, propagation.TraceContext{}, propagation.Baggage{})
}

// TracerProviderFromEnv returns an X-Ray-compatible tracer provider when
// getenv("TUNNEL_XRAY") is "1", and nil, nil otherwise. Its trace IDs are
// those X-Ray accepts: their first 4 bytes are the Unix time in seconds
// (xray.IDGenerator). Spans are exported with OTLP over HTTP when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set
// (the ADOT Lambda layer's collector listens on localhost:4318 and
// forwards to X-Ray); the exporter reads its other settings from the
// OTEL_EXPORTER_OTLP_* variables of the process environment. Without an
// endpoint spans are not exported, but the trace context still reaches
// agents and services behind them. ctx bounds the exporter's
// construction. The caller shuts the provider down.
func TracerProviderFromEnv(ctx context.Context, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	if getenv("TUNNEL_XRAY") != "1" {
		return nil, nil
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithIDGenerator(xray.NewIDGenerator())}
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		// Batched, and flushed at the end of every invocation.
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

// NewMeterProvider returns a meter provider whose metrics go to w as EMF
// (see EMFExporter) when the provider is flushed, which FlushAfter does at
// the end of every invocation; w is stdout in a function. The periodic
// export is a fallback, hourly, since an instance is frozen between
// invocations and its timer cannot be relied on. The caller shuts the
// provider down.
func NewMeterProvider(w io.Writer) *sdkmetric.MeterProvider {
	return sdkmetric.NewMeterProvider(sdkmetric.WithReader(
		sdkmetric.NewPeriodicReader(NewEMFExporter(w), sdkmetric.WithInterval(time.Hour))))
}

// FlushAfter wraps the Lambda handler h (Handler.Invoke, or one of
// Handler's route methods) so that flush runs after every invocation,
// before Lambda may freeze the instance: typically the ForceFlush of the
// meter and tracer providers. The flush is not bounded by the
// invocation's context, which may be about to expire; a flush error is
// logged as a warning to logger (nil: slog.Default()) and does not change
// the invocation's result.
func FlushAfter[Req, Resp any](h func(context.Context, Req) (Resp, error), flush func(context.Context) error, logger *slog.Logger) func(context.Context, Req) (Resp, error) {
	if logger == nil {
		logger = slog.Default()
	}
	return func(ctx context.Context, req Req) (Resp, error) {
		resp, err := h(ctx, req)
		if ferr := flush(context.WithoutCancel(ctx)); ferr != nil {
			logger.Warn("flush telemetry", slog.Any("err", ferr))
		}
		return resp, err
	}
}
