package redistest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
	"github.com/http-tunnel/tunnel/store/redisstore/redistest"
)

// TestMain fails the package if a client outlives its test.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// TestPrefix checks that prefixes differ and that a test's keys under its
// prefix, bare or in a hash tag, are gone when it ends, while others stay.
func TestPrefix(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t)
	ctx := context.Background()
	other := redistest.Prefix(t, client) + "kept"
	if err := client.Set(ctx, other, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}

	var keys []string
	t.Run("Test", func(t *testing.T) {
		p, q := redistest.Prefix(t, client), redistest.Prefix(t, client)
		if p == q {
			t.Fatalf("two prefixes are both %q", p)
		}
		keys = []string{p + "k", "{" + p + "}t:x", q + "k", "{" + q + "}c:y"}
		for _, k := range keys {
			if err := client.Set(ctx, k, "1", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	if n, err := client.Exists(ctx, keys...).Result(); err != nil || n != 0 {
		t.Errorf("after the test, EXISTS %q = %d, %v; want 0", keys, n, err)
	}
	if n, err := client.Exists(ctx, other).Result(); err != nil || n != 1 {
		t.Errorf("EXISTS %q of another test = %d, %v; want 1", other, n, err)
	}
}

// TestClientClosedAtCleanup checks that the client is closed when its
// test ends.
func TestClientClosedAtCleanup(t *testing.T) {
	t.Parallel()
	var client *redis.Client
	t.Run("Test", func(t *testing.T) {
		client = redistest.Client(t)
		if err := client.Ping(t.Context()).Err(); err != nil {
			t.Fatalf("PING: %v", err)
		}
	})
	if client == nil {
		t.Skip("no Redis")
	}
	if err := client.Ping(context.Background()).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("PING after the test = %v, want redis.ErrClosed", err)
	}
}
