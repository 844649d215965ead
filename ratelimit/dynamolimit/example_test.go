package dynamolimit_test

import (
	"context"
	"log"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/ratelimit/dynamolimit"
)

// exampleClient stands for the application's client, typically
// dynamodb.NewFromConfig(cfg) with cfg from the SDK's config.LoadDefaultConfig.
var exampleClient *dynamodb.Client

// This example needs AWS credentials and a table, so it is compiled but
// not run.
func Example() {
	ctx := context.Background()
	client := exampleClient

	// 100 agent connections per hour per source IP, as in the original.
	lim := dynamolimit.New(client, "prod-http-tunnel-rate-limits",
		ratelimit.Limit{Events: 100, Period: time.Hour},
		&dynamolimit.Options{Prefix: "connect:"})

	d, err := lim.Allow(ctx, "203.0.113.7")
	if err != nil {
		log.Printf("rate limiter unavailable, failing open: %v", err)
		return
	}
	if !d.Allowed {
		log.Printf("too many connections; retry in %v", d.RetryAfter)
	}
}
