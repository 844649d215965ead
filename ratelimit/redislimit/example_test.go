package redislimit_test

import (
	"context"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/ratelimit/redislimit"
)

// This example needs a Redis server, so it is compiled but not run.
func Example() {
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}})
	defer client.Close()

	// 100 requests a minute per tunnel, shared by every gateway node.
	lim := redislimit.New(client, ratelimit.Limit{Events: 100, Period: time.Minute},
		&redislimit.Options{Prefix: "ratelimit:request:"})

	d, err := lim.Allow(context.Background(), "tunnel:abc123def456")
	if err != nil {
		log.Printf("rate limiter unavailable, failing open: %v", err)
		return
	}
	if !d.Allowed {
		log.Printf("rate limited; retry in %v", d.RetryAfter)
	}
}
