// Package observability holds the gateway's and agent's OpenTelemetry
// wiring: the metric and span names (stable, documented in
// docs/observability.md), the instruments, and the attributes they carry.
//
// The library only uses the OpenTelemetry API. Providers are passed in
// (tunnel.Server.TracerProvider and MeterProvider, tunnel.WithTracerProvider)
// or taken from the otel globals, which are no-ops until a program installs
// an SDK. Exporters are chosen by the program: cmd/tunnel serves
// Prometheus metrics and exports OTLP traces.
package observability

import (
	"reflect"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of every span and metric.
const ScopeName = "github.com/http-tunnel/tunnel"

// Metric names. The first five are the original system's CloudWatch
// metrics; names never change.
const (
	MetricConnectionEstablished = "ConnectionEstablished" // counter: agent connections established
	MetricConnectionClosed      = "ConnectionClosed"      // counter: agent connections closed
	MetricRequestForwarded      = "RequestForwarded"      // counter: public requests forwarded, by method and status code
	MetricRequestLatency        = "RequestLatency"        // histogram, ms: public request duration, by method and status code
	MetricErrorOccurred         = "ErrorOccurred"         // counter: public and agent errors, by error.code
	MetricActiveTunnels         = "ActiveTunnels"         // up-down counter: tunnels connected to this node
	MetricCacheHits             = "CacheHits"             // counter: tunnel lookups answered by the cache
	MetricCacheMisses           = "CacheMisses"           // counter: tunnel lookups that went to the store
	MetricStoreLatency          = "StoreOperationLatency" // histogram, ms: store calls, by db.operation.name
	MetricRateLimited           = "RateLimitRejections"   // counter: requests refused by a limiter, by tunnel.limiter
	MetricBytesIn               = "BytesIn"               // counter, bytes: public request bodies forwarded to agents
	MetricBytesOut              = "BytesOut"              // counter, bytes: response bodies sent to public clients (the gateway's error bodies included)
)

// Span names.
const (
	SpanRequest = "tunnel.request" // gateway: one public request (server)
	SpanCache   = "tunnel.cache"   // gateway: cache lookup
	SpanStore   = "tunnel.store"   // gateway: one store operation (db.* attributes)
	SpanForward = "tunnel.forward" // gateway: forwarding to the agent or owner node, waiting for the response (client)
	SpanDeliver = "tunnel.deliver" // agent: a request delivered through the tunnel (server)
	SpanLocal   = "tunnel.local"   // agent under Forward: the call to the local service (client)
)

// Attribute keys beyond OpenTelemetry's semantic conventions.
const (
	AttrTunnelID = attribute.Key("tunnel.id")
	AttrRouting  = attribute.Key("tunnel.routing") // "subdomain" or "path"
	AttrNode     = attribute.Key("tunnel.node")    // the node a request was forwarded to
	AttrLimiter  = attribute.Key("tunnel.limiter") // "agent" or "request"
	AttrCacheHit = attribute.Key("tunnel.cache.hit")
	AttrErrorID  = attribute.Key("tunnel.error.id")
	AttrCode     = attribute.Key("error.code")
)

// Propagator is the trace context propagation used across the tunnel: W3C
// trace context and baggage.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{}, propagation.Baggage{})

// The types of the otel global providers before a program installs one:
// they hand out delegates that record nothing until then. Captured by type,
// not value, so that a provider installed by another package's init is not
// mistaken for the default.
var (
	defaultTracerProviderType = globalDefaultType(otel.GetTracerProvider())
	defaultMeterProviderType  = globalDefaultType(otel.GetMeterProvider())
)

func globalDefaultType(v any) reflect.Type {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer && t.Elem().PkgPath() == "go.opentelemetry.io/otel/internal/global" {
		return t
	}
	return nil
}

// Tracing reports whether spans started through tp may be recorded: tp is
// set, or a program has installed a global tracer provider. While it is
// false, the gateway skips building spans and their attributes, which
// would cost every request a few allocations for nothing. It is cheap
// enough to call per request, and turns true when a provider is installed
// later.
func Tracing(tp trace.TracerProvider) bool {
	return tp != nil || installed(otel.GetTracerProvider(), defaultTracerProviderType)
}

// Metering is Tracing for metrics: whether instruments made from mp (nil:
// the global provider) may record.
func Metering(mp metric.MeterProvider) bool {
	return mp != nil || installed(otel.GetMeterProvider(), defaultMeterProviderType)
}

// installed reports whether the global provider current is not the
// default one, of type def (nil if the default was never seen).
func installed(current any, def reflect.Type) bool {
	return def == nil || reflect.TypeOf(current) != def
}

// Tracer returns the library's tracer from tp, or from the global provider
// when tp is nil.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(ScopeName)
}

// Instruments are the gateway's metric instruments. Make them with
// NewInstruments, which sets every field; the zero Instruments has nil
// fields and must not be used. To record nothing, make them on a no-op
// provider (go.opentelemetry.io/otel/metric/noop).
type Instruments struct {
	ConnectionEstablished metric.Int64Counter
	ConnectionClosed      metric.Int64Counter
	RequestForwarded      metric.Int64Counter
	RequestLatency        metric.Float64Histogram
	ErrorOccurred         metric.Int64Counter
	ActiveTunnels         metric.Int64UpDownCounter
	CacheHits             metric.Int64Counter
	CacheMisses           metric.Int64Counter
	StoreLatency          metric.Float64Histogram
	RateLimited           metric.Int64Counter
	BytesIn               metric.Int64Counter
	BytesOut              metric.Int64Counter
}

// NewInstruments creates the instruments on mp, or on the global provider
// when mp is nil.
func NewInstruments(mp metric.MeterProvider) (*Instruments, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName)
	var in Instruments
	var err error
	c := func(name, desc, unit string) metric.Int64Counter {
		if err != nil {
			return nil
		}
		var x metric.Int64Counter
		x, err = m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		return x
	}
	h := func(name, desc string) metric.Float64Histogram {
		if err != nil {
			return nil
		}
		var x metric.Float64Histogram
		x, err = m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("ms"),
			metric.WithExplicitBucketBoundaries(0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000))
		return x
	}
	in.ConnectionEstablished = c(MetricConnectionEstablished, "Agent connections established.", "{connection}")
	in.ConnectionClosed = c(MetricConnectionClosed, "Agent connections closed.", "{connection}")
	in.RequestForwarded = c(MetricRequestForwarded, "Public requests forwarded to an agent.", "{request}")
	in.RequestLatency = h(MetricRequestLatency, "Duration of public requests, from arrival to the end of the response.")
	in.ErrorOccurred = c(MetricErrorOccurred, "Errors answered to public clients and agents, by code.", "{error}")
	in.CacheHits = c(MetricCacheHits, "Tunnel lookups answered by the cache.", "{lookup}")
	in.CacheMisses = c(MetricCacheMisses, "Tunnel lookups that read the store.", "{lookup}")
	in.StoreLatency = h(MetricStoreLatency, "Duration of store operations.")
	in.RateLimited = c(MetricRateLimited, "Requests and agent connections refused by a rate limiter.", "{request}")
	in.BytesIn = c(MetricBytesIn, "Public request body bytes forwarded to agents.", "By")
	in.BytesOut = c(MetricBytesOut, "Response body bytes sent to public clients, error bodies included.", "By")
	if err == nil {
		in.ActiveTunnels, err = m.Int64UpDownCounter(MetricActiveTunnels, metric.WithDescription("Tunnels connected to this node."), metric.WithUnit("{tunnel}"))
	}
	if err != nil {
		return nil, err
	}
	return &in, nil
}
