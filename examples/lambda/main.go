package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/observability"
	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/ratelimit/dynamolimit"
	"github.com/http-tunnel/tunnel/store/dynamostore"
)

// The limits applied when TUNNEL_RATELIMIT_TABLE is set.
var (
	// requestLimit is per tunnel: 100 public requests a second.
	requestLimit = ratelimit.Limit{Events: 100, Period: time.Second, Burst: 200}
	// agentLimit is per source IP: 10 agent connections a minute.
	agentLimit = ratelimit.Limit{Events: 10, Period: time.Minute}
)

func main() {
	// Logs and metrics share stdout, which Lambda sends to CloudWatch
	// Logs: JSON log lines, and EMF lines from which CloudWatch extracts
	// the metrics.
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	h, err := handlerFromEnv(os.Getenv, log)
	if err != nil {
		log.Error("configuration", slog.Any("err", err))
		os.Exit(1)
	}
	mp := newMeterProvider(os.Stdout)
	h.Server.MeterProvider = mp
	flush := mp.ForceFlush
	tp, err := tracerProviderFromEnv(context.Background(), os.Getenv)
	if err != nil {
		log.Error("configuration", slog.Any("err", err))
		os.Exit(1)
	}
	if tp != nil {
		h.Server.TracerProvider = tp
		// The library extracts and injects with observability.Propagator;
		// other instrumentation uses the global one.
		observability.Propagator = xrayPropagator
		otel.SetTextMapPropagator(xrayPropagator)
		flush = func(ctx context.Context) error {
			return errors.Join(mp.ForceFlush(ctx), tp.ForceFlush(ctx))
		}
	}
	lambda.Start(flushAfter(h.Invoke, flush, log))
}

// xrayPropagator reads and writes X-Amzn-Trace-Id, W3C trace context and
// baggage. On extraction a traceparent header, when present, wins over
// X-Amzn-Trace-Id.
var xrayPropagator = propagation.NewCompositeTextMapPropagator(
	XRayPropagator{}, propagation.TraceContext{}, propagation.Baggage{})

// tracerProviderFromEnv returns the X-Ray-compatible tracer provider when
// TUNNEL_XRAY is 1, nil otherwise. Its trace IDs are XRayIDGenerator's.
// Spans are exported with OTLP over HTTP when OTEL_EXPORTER_OTLP_ENDPOINT
// or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (the ADOT Lambda layer's
// collector listens on localhost:4318 and forwards to X-Ray); the exporter
// reads its other settings from the OTEL_EXPORTER_OTLP_* variables.
// Without an endpoint spans are not exported, but the trace context still
// reaches agents and services behind them. ctx bounds the exporter's
// construction.
func tracerProviderFromEnv(ctx context.Context, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	if getenv("TUNNEL_XRAY") != "1" {
		return nil, nil
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithIDGenerator(XRayIDGenerator{})}
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

// newMeterProvider returns the function's meter provider: its metrics go
// to w as EMF (see EMFExporter) when the provider is flushed, at the end of
// every invocation. The periodic export is a fallback, hourly, since an
// instance is frozen between invocations and its timer cannot be relied
// on.
func newMeterProvider(w io.Writer) *sdkmetric.MeterProvider {
	return sdkmetric.NewMeterProvider(sdkmetric.WithReader(
		sdkmetric.NewPeriodicReader(NewEMFExporter(w), sdkmetric.WithInterval(time.Hour))))
}

// flushAfter wraps invoke so that flush runs after every invocation,
// before Lambda may freeze the instance. The flush is not bounded by the
// invocation's context, which may be about to expire; it writes to stdout
// and takes no time to speak of.
func flushAfter(invoke func(context.Context, json.RawMessage) (any, error), flush func(context.Context) error, log *slog.Logger) func(context.Context, json.RawMessage) (any, error) {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		resp, err := invoke(ctx, raw)
		if ferr := flush(context.WithoutCancel(ctx)); ferr != nil {
			log.Warn("flush telemetry", slog.Any("err", ferr))
		}
		return resp, err
	}
}

// handlerFromEnv builds the Handler from the environment variables listed
// in the package doc.
func handlerFromEnv(getenv func(string) string, log *slog.Logger) (*Handler, error) {
	region := getenv("AWS_REGION")
	mgmtEndpoint := getenv("TUNNEL_MANAGEMENT_ENDPOINT")
	base := getenv("TUNNEL_BASE_URL")
	if region == "" || mgmtEndpoint == "" || base == "" {
		return nil, errors.New("AWS_REGION, TUNNEL_MANAGEMENT_ENDPOINT and TUNNEL_BASE_URL are required")
	}
	creds := credentials.NewStaticCredentialsProvider(getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"), getenv("AWS_SESSION_TOKEN"))
	ddbOpts := dynamodb.Options{Region: region, Credentials: creds}
	if ep := getenv("TUNNEL_DYNAMODB_ENDPOINT"); ep != "" {
		ddbOpts.BaseEndpoint = aws.String(ep)
	}
	st := dynamostore.New(dynamodb.New(ddbOpts), dynamostore.Options{
		ConnectionsTable: getenv("TUNNEL_CONNECTIONS_TABLE"),
		PendingTable:     getenv("TUNNEL_PENDING_TABLE"),
		TunnelIndex:      getenv("TUNNEL_TUNNEL_INDEX"),
	})
	mgmt := apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		Region:       region,
		Credentials:  creds,
		BaseEndpoint: aws.String(mgmtEndpoint),
	})
	srv := &tunnel.Server{
		BaseURL: base,
		Domain:  getenv("TUNNEL_DOMAIN"),
		Store:   st,
		Cache:   NoCache{},
		Logger:  log,
		Relay:   &Relay{Store: st, Mgmt: mgmt},
	}
	if tokens := getenv("TUNNEL_TOKENS"); tokens != "" {
		srv.Authenticator = tunnel.NewStaticTokens(strings.Split(tokens, ",")...)
	}
	if table := getenv("TUNNEL_RATELIMIT_TABLE"); table != "" {
		client := dynamodb.New(ddbOpts)
		srv.RequestLimiter = dynamolimit.New(client, table, requestLimit, &dynamolimit.Options{Prefix: "request:"})
		agents := dynamolimit.New(client, table, agentLimit, &dynamolimit.Options{Prefix: "connect:"})
		return &Handler{Server: srv, Store: st, Mgmt: mgmt, Limiter: agents, Logger: log}, nil
	}
	return &Handler{Server: srv, Store: st, Mgmt: mgmt, Logger: log}, nil
}

// eventProbe holds the members that tell the kinds of events apart.
type eventProbe struct {
	Version        string `json:"version"`
	HTTPMethod     string `json:"httpMethod"`
	Source         string `json:"source"`
	RequestContext struct {
		ConnectionID string `json:"connectionId"`
		RouteKey     string `json:"routeKey"`
	} `json:"requestContext"`
}

// Invoke is the function's one entry point: it recognises the event by its
// shape and calls the matching handler.
func (h *Handler) Invoke(ctx context.Context, raw json.RawMessage) (any, error) {
	var p eventProbe
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("unrecognised event: %w", err)
	}
	switch {
	case p.RequestContext.ConnectionID != "" && p.RequestContext.RouteKey != "":
		var ev events.APIGatewayWebsocketProxyRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		return h.WebSocket(ctx, ev)
	case p.Version == "2.0":
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		return h.HTTP(ctx, ev)
	case p.HTTPMethod != "":
		var ev events.APIGatewayProxyRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		return h.HTTPV1(ctx, ev)
	case p.Source == "aws.events":
		return nil, h.Cleanup(ctx)
	default:
		return nil, errors.New("unrecognised event")
	}
}
