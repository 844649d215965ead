// Command lambda is the serverless gateway as one AWS Lambda function: the
// adapter of package github.com/http-tunnel/tunnel/serverless configured
// from the environment (see that package's doc for the variables), with
// its agent tokens read from AWS Secrets Manager or Parameter Store, its
// metrics written to stdout as CloudWatch EMF and, with TUNNEL_XRAY=1,
// X-Ray tracing. template.yaml deploys it with AWS SAM, the tokens in a
// secret; docs/serverless.md says how.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"go.opentelemetry.io/otel"

	"github.com/http-tunnel/tunnel/observability"
	"github.com/http-tunnel/tunnel/serverless"
)

func main() {
	// Logs and metrics share stdout, which Lambda sends to CloudWatch
	// Logs: JSON log lines, and EMF lines from which CloudWatch extracts
	// the metrics.
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	h, err := serverless.FromEnv(os.Getenv, log)
	if err != nil {
		log.Error("configuration", slog.Any("err", err))
		os.Exit(1)
	}
	mp := serverless.NewMeterProvider(os.Stdout)
	h.Server.MeterProvider = mp
	flush := mp.ForceFlush
	tp, err := serverless.TracerProviderFromEnv(context.Background(), os.Getenv)
	if err != nil {
		log.Error("configuration", slog.Any("err", err))
		os.Exit(1)
	}
	if tp != nil {
		h.Server.TracerProvider = tp
		// The library extracts and injects with observability.Propagator;
		// other instrumentation uses the global one.
		p := serverless.NewPropagator()
		observability.Propagator = p
		otel.SetTextMapPropagator(p)
		flush = func(ctx context.Context) error {
			return errors.Join(mp.ForceFlush(ctx), tp.ForceFlush(ctx))
		}
	}
	lambda.Start(serverless.FlushAfter(h.Invoke, flush, log))
}
