// Package redistest gives tests a client of the test Redis server and key
// prefixes of their own whose keys are deleted when the test ends. It is
// what every test of this repository that needs Redis builds on: the tests
// of redisstore and redislimit, the gateway's cluster tests and the
// examples' end-to-end tests.
//
// The server is found through internal/backendtest: the address in
// TUNNEL_TEST_REDIS_ADDR (default 127.0.0.1:6390) must answer PING with
// +PONG, or the test is skipped (failed when CI=true) with a message that
// says what answered instead.
package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/http-tunnel/tunnel/internal/backendtest"
	"github.com/http-tunnel/tunnel/internal/randid"
)

// cleanupTimeout bounds deleting a prefix's keys.
const cleanupTimeout = 30 * time.Second

// Client returns a client of the test Redis, or skips t (fails it when
// CI=true) if there is none; see the package doc. t.Cleanup closes the
// client. Its address, for a process under test, is client.Options().Addr.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	addr := backendtest.RedisAddr(t)
	if addr == "" {
		return nil // only a testing.TB whose Skip returns gets here
	}
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { client.Close() })
	return client
}

// Prefix returns a key prefix of t's own, "test:" + 16 random hex digits
// + ":", for the Prefix option of redisstore or redislimit, so that tests
// sharing the server never see each other's keys. t.Cleanup deletes the
// keys that begin with it, whether bare (redislimit's prefix + key) or in
// a hash tag (redisstore's "{" + prefix + "}..."), through client.
//
// Call it after Client, with a client that outlives t: cleanups run last
// registered first, so the keys are deleted before the client is closed.
func Prefix(t testing.TB, client redis.UniversalClient) string {
	t.Helper()
	prefix := "test:" + randid.Hex(8) + ":"
	t.Cleanup(func() {
		// t's own context is canceled by the time cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		// The prefix holds no glob metacharacters, so it matches itself.
		for _, pattern := range []string{prefix + "*", "{" + prefix + "}*"} {
			if err := deleteMatching(ctx, client, pattern); err != nil {
				t.Errorf("redistest: delete keys matching %s: %v", pattern, err)
			}
		}
	})
	return prefix
}

// deleteMatching deletes every key matching pattern, a batch per SCAN
// page. On Redis Cluster, SCAN sees one node only; the tests use a single
// server.
func deleteMatching(ctx context.Context, client redis.UniversalClient, pattern string) error {
	var cursor uint64
	for {
		keys, next, err := client.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := client.Del(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}
