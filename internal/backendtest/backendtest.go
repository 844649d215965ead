// Package backendtest finds the real servers that backend tests run
// against (Redis, and DynamoDB through dynalite) and applies the project's
// rule for absent ones: a test skips on a developer machine without the
// server, and fails under CI (CI=true), where .ci/run must have started it.
package backendtest

import (
	"net"
	"os"
	"testing"
	"time"
)

// Environment variables naming the servers, and their defaults (the
// addresses .ci/run starts them on).
const (
	RedisAddrEnv          = "TUNNEL_TEST_REDIS_ADDR"
	DefaultRedisAddr      = "127.0.0.1:6390"
	DynamoEndpointEnv     = "TUNNEL_TEST_DYNAMODB_ENDPOINT"
	DefaultDynamoEndpoint = "http://127.0.0.1:8000"
)

// RedisAddr returns the address of the test Redis server, after checking
// that it accepts connections.
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := env(RedisAddrEnv, DefaultRedisAddr)
	require(t, "Redis", addr, addr)
	return addr
}

// DynamoEndpoint returns the endpoint URL of the test DynamoDB (dynalite),
// after checking that it accepts connections.
func DynamoEndpoint(t testing.TB) string {
	t.Helper()
	ep := env(DynamoEndpointEnv, DefaultDynamoEndpoint)
	host := ep
	for _, p := range []string{"http://", "https://"} {
		if len(host) > len(p) && host[:len(p)] == p {
			host = host[len(p):]
		}
	}
	require(t, "DynamoDB", host, ep)
	return ep
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// require skips or fails t when nothing accepts TCP connections at hostport.
func require(t testing.TB, what, hostport, shown string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", hostport, 2*time.Second)
	if err == nil {
		c.Close()
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s test server at %s is not reachable (CI=true requires it; .ci/run starts it): %v", what, shown, err)
	}
	t.Skipf("%s test server at %s is not reachable: %v (start it, or set the address in the environment)", what, shown, err)
}
