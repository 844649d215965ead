package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/http-tunnel/tunnel/observability"
)

// The library records spans and metrics through the OpenTelemetry API
// only; this file is where the binary chooses the exporters: Prometheus
// for the gateway's metrics, OTLP over HTTP for traces.

// Default service.name of each subcommand's telemetry, when
// $OTEL_SERVICE_NAME does not set one.
const (
	gatewayService = "http-tunnel-gateway"
	agentService   = "http-tunnel-agent"
)

// telemetryShutdownTimeout bounds the flush of buffered spans at exit, so
// that an unreachable collector cannot hold the process up.
const telemetryShutdownTimeout = 5 * time.Second

// newResource describes this process to the exporters: service.name from
// $OTEL_SERVICE_NAME (default service), plus what the SDK reads itself from
// $OTEL_RESOURCE_ATTRIBUTES and knows of its own version.
func newResource(ctx context.Context, getenv func(string) string, service string) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		// Last, so that it wins over the same key from the environment.
		resource.WithAttributes(semconv.ServiceName(envOr(getenv, "OTEL_SERVICE_NAME", service))),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	return res, nil
}

// newPrometheusExporter returns a metric reader whose metrics are read by
// scrapes of the returned registry; give it to a MeterProvider. The
// registry is the gateway's own, not prometheus.DefaultRegisterer, so that
// several gateways in one process (tests) each have theirs; it also holds
// the Go runtime and process collectors.
func newPrometheusExporter() (*otelprom.Exporter, *prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, err
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	return exp, reg, nil
}

// tracesWanted reports whether the standard OpenTelemetry variables ask
// for traces: $OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint set while
// $OTEL_TRACES_EXPORTER is unset. $OTEL_SDK_DISABLED=true and
// $OTEL_TRACES_EXPORTER=none turn traces off; any other exporter is an
// error, since this binary only has OTLP.
func tracesWanted(getenv func(string) string) (bool, error) {
	if getenv("OTEL_SDK_DISABLED") == "true" {
		return false, nil
	}
	switch exporter := getenv("OTEL_TRACES_EXPORTER"); exporter {
	case "otlp":
		return true, nil
	case "none":
		return false, nil
	case "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: this binary exports traces with otlp only (or none)", exporter)
	}
}

// newTracerProvider returns a TracerProvider exporting spans over OTLP/HTTP
// in batches, or nil when the environment does not ask for traces (see
// tracesWanted). When it returns one, it has also installed the W3C trace
// context and baggage propagator globally; the caller must Shut it down
// to flush the last spans.
//
// getenv decides whether traces are on and supplies the endpoint
// ($OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is, else
// $OTEL_EXPORTER_OTLP_ENDPOINT with /v1/traces appended) and the service
// name. The exporter and the SDK read the other standard variables from the
// process environment themselves: $OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
// _COMPRESSION, _PROTOCOL (http/protobuf or http/json), the certificate
// variables and their _TRACES_ forms; $OTEL_TRACES_SAMPLER and
// $OTEL_TRACES_SAMPLER_ARG (default parentbased_always_on); $OTEL_BSP_*.
func newTracerProvider(ctx context.Context, getenv func(string) string, service string) (*sdktrace.TracerProvider, error) {
	on, err := tracesWanted(getenv)
	if err != nil || !on {
		return nil, err
	}
	// The HTTP exporter would quietly send http/protobuf to a collector's
	// gRPC port.
	if envOr(getenv, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", getenv("OTEL_EXPORTER_OTLP_PROTOCOL")) == "grpc" {
		return nil, errors.New("OTEL_EXPORTER_OTLP_PROTOCOL=grpc: this binary exports traces over HTTP; use http/protobuf and the collector's HTTP port (4318)")
	}
	res, err := newResource(ctx, getenv, service)
	if err != nil {
		return nil, err
	}
	var opts []otlptracehttp.Option
	for _, v := range []struct{ name, path string }{
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""},
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "/v1/traces"},
	} {
		if u := getenv(v.name); u != "" {
			// The exporter would fall back to localhost on a bad URL. The
			// error does not repeat the URL, which may hold credentials.
			if !httpURL(u) {
				return nil, fmt.Errorf("%s: want an http or https URL, such as http://127.0.0.1:4318", v.name)
			}
			if v.path != "" {
				u = strings.TrimSuffix(u, "/") + v.path
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(u))
			break
		}
	}
	// New does not connect: the first batch does.
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTextMapPropagator(observability.Propagator)
	return tp, nil
}

// shutdownTelemetry flushes and stops a provider at exit, waiting at most
// telemetryShutdownTimeout even when ctx has already ended. It reports
// whether all went out.
func shutdownTelemetry(ctx context.Context, shutdown func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), telemetryShutdownTimeout)
	defer cancel()
	return shutdown(ctx)
}
