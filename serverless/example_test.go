package serverless_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/observability"
	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/serverless"
	"github.com/http-tunnel/tunnel/store/dynamostore"
)

// A function configured from its environment, as examples/lambda is. It
// makes no network call until it is invoked.
func ExampleFromEnv() {
	env := map[string]string{
		"AWS_REGION":                 "eu-west-1",
		"TUNNEL_MANAGEMENT_ENDPOINT": "https://abc123.execute-api.eu-west-1.amazonaws.com/prod",
		"TUNNEL_BASE_URL":            "https://def456.execute-api.eu-west-1.amazonaws.com",
		"TUNNEL_TOKENS":              "s3cret",
	}
	h, err := serverless.FromEnv(func(k string) string { return env[k] }, slog.New(slog.NewJSONHandler(os.Stdout, nil)))
	if err != nil {
		fmt.Println(err)
		return
	}
	// In a function: lambda.Start(h.Invoke)
	fmt.Println("public base URL:", h.Server.BaseURL)
	fmt.Println("agents authenticated:", h.Server.Authenticator != nil)
	fmt.Println("rate limited:", h.Server.RequestLimiter != nil)
	// Output:
	// public base URL: https://def456.execute-api.eu-west-1.amazonaws.com
	// agents authenticated: true
	// rate limited: false
}

// A function assembled field by field, with the program's own
// authenticator, limiters, logger and metrics.
func ExampleHandler() {
	ctx := context.Background()
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		logger.Error("AWS configuration", slog.Any("err", err))
		os.Exit(1)
	}
	ddb := dynamodb.NewFromConfig(cfg)
	st := dynamostore.New(ddb, dynamostore.Options{})
	mgmt := apigatewaymanagementapi.NewFromConfig(cfg, func(o *apigatewaymanagementapi.Options) {
		o.BaseEndpoint = aws.String(os.Getenv("MANAGEMENT_ENDPOINT"))
	})
	mp := serverless.NewMeterProvider(os.Stdout)
	h := &serverless.Handler{
		Server: &tunnel.Server{
			BaseURL:        os.Getenv("PUBLIC_BASE_URL"),
			Routing:        tunnel.RoutePath, // no domain of its own
			Store:          st,
			Cache:          serverless.NoCache{},
			Relay:          &serverless.Relay{Store: st, Mgmt: mgmt, ResponseTimeout: 20 * time.Second},
			Authenticator:  tunnel.NewStaticTokens(os.Getenv("AGENT_TOKEN")),
			RequestLimiter: ratelimit.NewLocal(ratelimit.Limit{Events: 50, Period: time.Second}, nil),
			Logger:         logger,
			MeterProvider:  mp,
		},
		Store: st,
		Mgmt:  mgmt,
		// The agents' identities, from $connect to their ready messages,
		// in the connections table.
		Identities: &serverless.IdentityTable{Client: ddb, Table: dynamostore.DefaultConnectionsTable},
		Logger:     logger,
	}
	lambda.Start(serverless.FlushAfter(h.Invoke, mp.ForceFlush, logger))
}

// The propagator of a function with X-Ray tracing: a request that carries
// both X-Amzn-Trace-Id and W3C trace context continues the W3C trace.
func ExampleNewPropagator() {
	// A function installs it with
	//	observability.Propagator = p
	//	otel.SetTextMapPropagator(p)
	// as examples/lambda does with TUNNEL_XRAY=1.
	p := serverless.NewPropagator()

	h := http.Header{}
	h.Set("X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
	fmt.Println("x-ray only:", trace.SpanContextFromContext(p.Extract(context.Background(), propagation.HeaderCarrier(h))).TraceID())
	h.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	fmt.Println("both:      ", trace.SpanContextFromContext(p.Extract(context.Background(), propagation.HeaderCarrier(h))).TraceID())
	// Output:
	// x-ray only: 5759e988bd862e3fe1be46a994272793
	// both:       0af7651916cd43dd8448eb211c80319c
}

// The library's metrics as CloudWatch embedded metric format: one JSON line
// per flush, which CloudWatch Logs turns into metrics.
func ExampleNewMeterProvider() {
	var out bytes.Buffer
	mp := serverless.NewMeterProvider(&out)
	defer mp.Shutdown(context.Background())
	in, err := observability.NewInstruments(mp)
	if err != nil {
		fmt.Println(err)
		return
	}
	in.RequestForwarded.Add(context.Background(), 2)
	// What FlushAfter does at the end of every invocation.
	if err := mp.ForceFlush(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var doc map[string]any
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			fmt.Println(err)
			return
		}
		delete(doc["_aws"].(map[string]any), "Timestamp") // the flush time
		b, _ := json.Marshal(doc)
		fmt.Println(string(b))
	}
	// Output:
	// {"RequestForwarded":2,"_aws":{"CloudWatchMetrics":[{"Dimensions":[[]],"Metrics":[{"Name":"RequestForwarded","Unit":"Count"}],"Namespace":"HttpTunnel"}]}}
}
