// Package backendtest finds the real servers that backend tests run
// against (Redis, and DynamoDB through dynalite), and decides what their
// absence means: a skipped test on a developer's machine, a failed test in
// CI (CI=true), where .ci/run has started every server.
package backendtest

import (
	"net"
	"net/url"
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

// RedisAddr returns the address of the test Redis server; see Addr.
func RedisAddr(t testing.TB) string {
	t.Helper()
	return Addr(t, RedisAddrEnv, DefaultRedisAddr)
}

// DynamoEndpoint returns the endpoint URL of the test DynamoDB (dynalite);
// see Addr.
func DynamoEndpoint(t testing.TB) string {
	t.Helper()
	return Addr(t, DynamoEndpointEnv, DefaultDynamoEndpoint)
}

// dialTimeout bounds the reachability probe; loopback servers answer in
// microseconds, so a second only matters when nothing listens.
const dialTimeout = time.Second

// Addr returns the server address from the environment variable envVar, or
// fallback when it is unset or empty, after checking that something accepts
// TCP connections there. The value may be host:port or a URL such as
// http://127.0.0.1:8000, which is returned unchanged.
//
// When nothing answers, Addr calls Unavailable, which skips the test or, in
// CI, fails it; Addr returns "" if Unavailable returns (only a non-standard
// testing.TB lets it).
func Addr(t testing.TB, envVar, fallback string) string {
	t.Helper()
	addr := os.Getenv(envVar)
	if addr == "" {
		addr = fallback
	}
	hostport := addr
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		port := u.Port()
		if port == "" {
			port = "80"
			if u.Scheme == "https" {
				port = "443"
			}
		}
		hostport = net.JoinHostPort(u.Hostname(), port)
	}
	conn, err := net.DialTimeout("tcp", hostport, dialTimeout)
	if err != nil {
		Unavailable(t, "server at %s (set %s) unreachable: %v", addr, envVar, err)
		return ""
	}
	conn.Close()
	return addr
}

// Unavailable reports that a server a test needs is absent: it skips the
// test, unless the environment variable CI is "true", where it fails it,
// because in CI a skipped backend test would pass without testing anything.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
		return
	}
	t.Skipf(format, args...)
}
